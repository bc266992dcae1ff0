"""The node's network features (DESIGN: net/): each a pure module that computes the
desired state from API objects and an applier that makes the kernel match it."""
