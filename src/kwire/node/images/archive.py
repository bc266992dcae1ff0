"""Loading `docker save` tarballs and OCI image-layout archives into the store.

An archive with a manifest.json is read as `docker save` output: its RepoTags name
the images (Docker 25 and later also write an OCI layout beside it, but without the
tags in it). Otherwise oci-layout and index.json make it an OCI image layout, as
skopeo's oci-archive, buildah and `ctr export` write; an entry is named by its
io.containerd.image.name annotation, else by org.opencontainers.image.ref.name read
as a reference, and a multi-platform index gives the host's platform.

Every blob is checked against its digest and every layer against its config's diff
id before any name points at the image, so a corrupt archive never leaves a broken
image behind a name (its stray blobs go at the next gc).
"""
from __future__ import annotations

import json
import logging
import re
import tarfile
from pathlib import Path
from typing import IO, Any

from kwire.node.images.errors import ImageError
from kwire.node.images.layers import diff_id_of
from kwire.node.images.reference import parse_reference
from kwire.node.images.store import (CONTAINERD_NAME, INDEX_TYPES, MANIFEST_TYPES, OCI_CONFIG,
                                     OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST, REF_NAME,
                                     Descriptor, Image, ImageStore, Layer, canonical_json,
                                     host_platform)

log = logging.getLogger(__name__)

_HEX_NAME = re.compile(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?")


def import_archive(store: ImageStore, path: Path) -> list[Image]:
    """Import every named image in the archive at ``path``; one Image per reference."""
    try:
        tf = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"{path}: not a readable tar archive ({e})") from None
    with tf:
        archive = _Archive(store, tf, path)
        if archive.has("manifest.json"):
            images = archive.import_docker()
        elif archive.has("oci-layout") and archive.has("index.json"):
            images = archive.import_oci()
        else:
            raise ImageError(f"{path}: neither `docker save` output (manifest.json) "
                             "nor an OCI image layout (oci-layout, index.json)")
    if not images:
        raise ImageError(f"{path}: no image in the archive has a name")
    return images


class _Archive:
    def __init__(self, store: ImageStore, tf: tarfile.TarFile, path: Path):
        self.store = store
        self.tf = tf
        self.path = path
        self.members = {_clean(m.name): m for m in tf.getmembers()}

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(_clean(name))
        try:
            f = self.tf.extractfile(member) if member is not None else None
        except KeyError:  # a link to a member that is not there
            f = None
        if f is None:
            raise ImageError(f"{self.path}: {name} is missing from the archive")
        return f

    def json(self, name: str) -> Any:
        with self.open(name) as f:
            try:
                return json.load(f)
            except ValueError as e:
                raise ImageError(f"{self.path}: {name} is not JSON ({e})") from None

    def copy_blob(self, name: str, expected: str | None = None) -> tuple[str, int]:
        """Store an archive member as a blob; a name that is a digest must match."""
        match = _HEX_NAME.fullmatch(_clean(name))
        expected = expected or (f"sha256:{match.group(1)}" if match else None)
        if expected and self.store.claim_blob(expected):
            return expected, self.store.blob_path(expected).stat().st_size
        with self.open(name) as f:
            try:
                return self.store.put_blob(f, expected)
            except ImageError as e:
                raise ImageError(f"{self.path}: {name}: {e}") from None

    def copy_layer(self, name: str, diff_id: str, expected: str | None = None) -> Layer:
        digest, size = self.copy_blob(name, expected)
        blob = self.store.blob_path(digest)
        with open(blob, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        got = diff_id_of(blob) if gzipped or digest != diff_id else digest
        if got != diff_id:
            raise ImageError(f"{self.path}: layer {name} unpacks to {got}, "
                             f"its image config says {diff_id}")
        return Layer(Descriptor(OCI_LAYER_GZIP if gzipped else OCI_LAYER_TAR, digest, size),
                     diff_id)

    # ---- docker save

    def import_docker(self) -> list[Image]:
        images = []
        for entry in self.json("manifest.json"):
            tags = entry.get("RepoTags") or []
            if not tags:
                log.warning("%s: skipping image %s, saved without a name",
                            self.path, entry.get("Config"))
                continue
            refs = [parse_reference(t) for t in tags]
            config_digest, config_size = self.copy_blob(entry["Config"])
            config = self.store.read_json(config_digest)
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            names = entry.get("Layers") or []
            if len(diff_ids) != len(names):
                raise ImageError(f"{self.path}: image {tags[0]} has {len(names)} layers "
                                 f"but {len(diff_ids)} diff ids")
            layers = [self.copy_layer(n, d) for n, d in zip(names, diff_ids, strict=True)]
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": Descriptor(OCI_CONFIG, config_digest, config_size).to_json(),
                        "layers": [layer.descriptor.to_json() for layer in layers]}
            digest, _ = self.store.put_blob(canonical_json(manifest))
            for ref in refs:
                self.store.tag(ref, digest)
                images.append(self.store.resolve(ref))
        return images

    # ---- OCI image layout

    def import_oci(self) -> list[Image]:
        layout = self.json("oci-layout")
        if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
            raise ImageError(f"{self.path}: unsupported OCI layout version "
                             f"{layout.get('imageLayoutVersion')!r}")
        images = []
        for desc in self.json("index.json").get("manifests") or []:
            annotations = desc.get("annotations") or {}
            name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME)
            if not name:
                log.warning("%s: skipping %s, it has no name", self.path, desc.get("digest"))
                continue
            ref = parse_reference(name)
            manifest_desc = self._platform_manifest(Descriptor.from_json(desc))
            manifest_digest, _ = self.copy_blob(_blob_name(manifest_desc.digest))
            manifest = self.store.read_json(manifest_digest)
            config_desc = Descriptor.from_json(manifest["config"])
            config_digest, _ = self.copy_blob(_blob_name(config_desc.digest))
            config = self.store.read_json(config_digest)
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            descs = [Descriptor.from_json(d) for d in manifest.get("layers") or []]
            if len(diff_ids) != len(descs):
                raise ImageError(f"{self.path}: image {ref} has {len(descs)} layers "
                                 f"but {len(diff_ids)} diff ids")
            for d, diff_id in zip(descs, diff_ids, strict=True):
                self.copy_layer(_blob_name(d.digest), diff_id, d.digest)
            self.store.tag(ref, manifest_digest)
            images.append(self.store.resolve(ref))
        return images

    def _platform_manifest(self, desc: Descriptor) -> Descriptor:
        """Descend image indexes to the manifest for the host's platform."""
        want_os, want_arch = host_platform()
        for _ in range(8):  # indexes may nest, but not forever
            body = self.json(_blob_name(desc.digest))
            media_type = desc.media_type or body.get("mediaType") or OCI_MANIFEST
            if media_type in MANIFEST_TYPES:
                return desc
            if media_type not in INDEX_TYPES:
                raise ImageError(f"{self.path}: {desc.digest} is a {media_type}, "
                                 "not an image manifest or index")
            children = body.get("manifests") or []
            fits = [c for c in children
                    if (c.get("platform") or {}).get("os") == want_os
                    and (c.get("platform") or {}).get("architecture") == want_arch
                    or len(children) == 1 and "platform" not in c]
            present = [c for c in fits if self.has(_blob_name(c.get("digest", "")))]
            if not present:
                raise ImageError(f"{self.path}: no {want_os}/{want_arch} image in index "
                                 f"{desc.digest}")
            desc = Descriptor.from_json(present[0])
        raise ImageError(f"{self.path}: image indexes nested too deep")


def _blob_name(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")
