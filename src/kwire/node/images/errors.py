"""Errors of the image store, split by what the node agent reports for them."""
from __future__ import annotations


class ImageError(Exception):
    """Anything the image store cannot do; the message is meant for the user."""


class InvalidReference(ImageError, ValueError):
    """The image name does not parse (kubelet's InvalidImageName)."""


class ImageNotFound(ImageError):
    """No image by that reference in the store (kubelet's ErrImageNeverPull / pull)."""


class MissingPackages(ImageError):
    """The Debian packages a built-in image is made from are not installed."""

    def __init__(self, packages: list[str]):
        self.packages = packages
        super().__init__("missing Debian packages for the built-in images: "
                         f"apt-get install {' '.join(packages)}")
