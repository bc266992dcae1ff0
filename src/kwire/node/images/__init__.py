"""Container images for the node agent: an OCI image-layout store with shared
layers, `docker save` / OCI archive import, and the built-in busybox and
nginx:alpine images made offline from Debian packages."""
from kwire.node.images.builtin import (BUSYBOX_REF, NGINX_REF, BuiltImage, build_builtin_images,
                                      ensure_builtin_images, is_builtin)
from kwire.node.images.errors import ImageError, ImageNotFound, InvalidReference, MissingPackages
from kwire.node.images.reference import Reference, parse_reference
from kwire.node.images.store import Descriptor, Image, ImageInfo, ImageStore, Layer

__all__ = [
    "BUSYBOX_REF", "NGINX_REF", "BuiltImage", "Descriptor", "Image", "ImageError", "ImageInfo",
    "ImageNotFound", "ImageStore", "InvalidReference", "Layer", "MissingPackages", "Reference",
    "build_builtin_images", "ensure_builtin_images", "is_builtin", "parse_reference",
]
