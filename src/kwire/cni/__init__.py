"""Pod networking through the CNI standard: the invoker the agent calls and the
network configuration it writes for its node."""
