"""The node's image store: an OCI image layout on disk, plus unpacked layers.

Layout under ``root`` (the first three are the OCI image-layout spec, so
``skopeo copy oci:ROOT:...`` and other OCI tools can read the store)::

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one manifest descriptor per reference, named by the
                                    org.opencontainers.image.ref.name annotation
    blobs/sha256/<hex>              manifests, configs and layers, content-addressed
    layers/sha256/<chain id hex>/   each layer unpacked once, in overlayfs form
    tmp/                            work space for writes that end in a rename

Blobs are written to tmp/ and renamed into place, index.json is rewritten under an
exclusive lock and renamed, and an unpacked layer appears only once complete, so
the agent, `kwire images import` and a concurrent build can share one store.

Unpacked layers are keyed by the OCI ChainID, not the DiffID alone: an applied
layer depends on the layers under it (symlinked parents, hardlinks to lower files,
directory modes), so two images share a layer dir exactly when they share the
whole stack up to it, as containerd's snapshots do.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kwire.node.images.errors import ImageError, ImageNotFound, InvalidReference
from kwire.node.images.layers import CHUNK, apply_layer, write_layer_tar
from kwire.node.images.reference import DIGEST_RE, Reference, parse_reference

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
EPOCH = "1970-01-01T00:00:00Z"
GC_MIN_AGE = 3600
"""Seconds gc() leaves new content alone: an import or build in another process may
have stored blobs that it has not named yet."""
GZIP_LEVEL = 6
"""What `gzip` uses by default: level 9 takes twice as long for 2% less."""

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI terms, for choosing from multi-platform images."""
    machine = platform.machine()
    return "linux", GOARCH.get(machine, machine)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces: the same object always gives the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Descriptor:
        digest = obj.get("digest", "")
        if not DIGEST_RE.fullmatch(digest):
            raise ImageError(f"unsupported or malformed digest {digest!r}")
        return cls(obj.get("mediaType", ""), digest, int(obj["size"]))


@dataclass(frozen=True)
class Layer:
    """A layer blob in the store and the digest of its uncompressed tar."""

    descriptor: Descriptor
    diff_id: str


@dataclass(frozen=True)
class Image:
    """A resolved image: its manifest, its config and the run settings in it."""

    reference: Reference
    digest: str
    """The manifest digest: what `name@digest` pins and a pod's imageID shows."""
    config_digest: str
    """The image ID, as `docker images` and crictl show it."""
    config_size: int
    config: dict[str, Any]
    layers: tuple[Layer, ...]

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def size(self) -> int:
        """Bytes the image takes in the store: config plus compressed layers."""
        return sum(layer.descriptor.size for layer in self.layers) + self.config_size

    @property
    def run_config(self) -> dict[str, Any]:
        return self.config.get("config") or {}

    @property
    def entrypoint(self) -> list[str]:
        return list(self.run_config.get("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self.run_config.get("Cmd") or [])

    @property
    def env(self) -> list[str]:
        return list(self.run_config.get("Env") or [])

    @property
    def working_dir(self) -> str:
        return self.run_config.get("WorkingDir") or ""

    @property
    def user(self) -> str:
        return self.run_config.get("User") or ""

    @property
    def exposed_ports(self) -> list[str]:
        return sorted(self.run_config.get("ExposedPorts") or {})

    @property
    def stop_signal(self) -> str:
        return self.run_config.get("StopSignal") or ""

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids([layer.diff_id for layer in self.layers])


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if out:
            diff_id = "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        out.append(diff_id)
    return out


@dataclass(frozen=True)
class ImageInfo:
    """One line of `kwire images ls`, as crictl lists images."""

    reference: Reference
    digest: str
    image_id: str
    size: int

    @property
    def repository(self) -> str:
        return self.reference.name

    @property
    def tag(self) -> str:
        return self.reference.tag or "<none>"


class ImageStore:
    """Images by reference over a content-addressed OCI image layout (see module doc)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for sub in ("blobs/sha256", "layers/sha256", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_atomic(layout, canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        if not (self.root / "index.json").exists():
            with self._locked():
                if not (self.root / "index.json").exists():
                    self._write_index([])

    # ------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.fullmatch(digest):
            raise ImageError(f"unsupported or malformed digest {digest!r}")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def claim_blob(self, digest: str) -> bool:
        """Whether the blob is stored; if so it counts as new for gc(), so that a
        writer reusing it can still name it before gc() takes it away."""
        try:
            os.utime(self.blob_path(digest))
        except FileNotFoundError:
            return False
        return True

    def put_blob(self, data: bytes | BinaryIO, expected: str | None = None) -> tuple[str, int]:
        """Store content and return (digest, size); with ``expected`` it must match."""
        h = hashlib.sha256()
        size = 0
        with self._tmp_file() as (tmp, out):
            chunks = [data] if isinstance(data, bytes) else iter(lambda: data.read(CHUNK), b"")
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.close()
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise ImageError(f"content digest {digest} does not match {expected}")
            self._commit_blob(tmp, digest)
        return digest, size

    def read_json(self, digest: str) -> dict[str, Any]:
        try:
            return json.loads(self.blob_path(digest).read_bytes())
        except FileNotFoundError:
            raise ImageNotFound(f"blob {digest} is missing from the image store") from None

    def _commit_blob(self, tmp: Path, digest: str) -> None:
        final = self.blob_path(digest)
        if self.claim_blob(digest):
            tmp.unlink()
        else:
            os.chmod(tmp, 0o644)
            os.rename(tmp, final)

    # ------------------------------------------------------------ references

    def tag(self, ref: Reference | str, manifest_digest: str) -> bool:
        """Point ``ref`` at a stored manifest; returns False when it already did."""
        ref = _as_ref(ref)
        _, _, layers = self._read_image(manifest_digest)
        missing = [la.descriptor.digest for la in layers if not self.has_blob(la.descriptor.digest)]
        if missing:
            raise ImageError(f"manifest {manifest_digest} lacks layers {', '.join(missing)}")
        media_type = self.read_json(manifest_digest).get("mediaType") or OCI_MANIFEST
        if ref.digest and ref.digest != manifest_digest:
            raise ImageError(f"{ref} cannot name manifest {manifest_digest}")
        size = self.blob_path(manifest_digest).stat().st_size
        entry = {**Descriptor(media_type, manifest_digest, size).to_json(),
                 "annotations": {REF_NAME: str(ref)}}
        with self._locked():
            entries = self._read_index()
            kept = [e for e in entries if _entry_ref(e) != str(ref)]
            if len(kept) < len(entries) and entry in entries:
                return False
            self._write_index(kept + [entry])
        return True

    def remove(self, ref: Reference | str) -> bool:
        """Forget a reference; its blobs stay until gc(). False if it was not there."""
        ref = _as_ref(ref)
        with self._locked():
            entries = self._read_index()
            kept = [e for e in entries if _entry_ref(e) != str(ref)]
            if len(kept) == len(entries):
                return False
            self._write_index(kept)
        return True

    def resolve(self, ref: Reference | str) -> Image:
        """The image a reference names. ``name@digest`` matches any stored entry of
        that name and manifest digest (the tag, if also given, is ignored, as Docker
        does); ``name:tag`` must match exactly. Raises ImageNotFound."""
        ref = _as_ref(ref)
        for stored, digest in self._named_entries():
            if ref.digest:
                if stored.name == ref.name and digest == ref.digest:
                    return self._load(ref, digest)
            elif stored == ref:
                return self._load(ref, digest)
        raise ImageNotFound(f"image {ref} is not in the image store")

    def list(self) -> list[ImageInfo]:
        """Every reference in the store, sorted by repository and tag."""
        out = []
        for ref, digest in self._named_entries():
            image = self._load(ref, digest)
            out.append(ImageInfo(ref, digest, image.id, image.size))
        return sorted(out, key=lambda i: (i.repository, i.tag, i.digest))

    def _named_entries(self) -> Iterator[tuple[Reference, str]]:
        """(reference, manifest digest) of each index entry. Entries another OCI tool
        wrote with a name that is no reference (or none) are kept but not shown."""
        for entry in self._read_index():
            try:
                yield parse_reference(_entry_ref(entry) or ""), entry["digest"]
            except InvalidReference:
                continue

    def _load(self, ref: Reference, digest: str) -> Image:
        config_desc, config, layers = self._read_image(digest)
        return Image(ref, digest, config_desc.digest, config_desc.size, config, layers)

    def _read_image(self, digest: str) -> tuple[Descriptor, dict[str, Any], tuple[Layer, ...]]:
        """A manifest's config descriptor, the config, and its layers with diff ids."""
        manifest = self.read_json(digest)
        media_type = manifest.get("mediaType") or OCI_MANIFEST
        if media_type not in MANIFEST_TYPES or not isinstance(manifest.get("config"), dict):
            raise ImageError(f"{digest} is not an image manifest")
        config_desc = Descriptor.from_json(manifest["config"])
        config = self.read_json(config_desc.digest)
        descs = [Descriptor.from_json(d) for d in manifest.get("layers") or []]
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(descs):
            raise ImageError(f"manifest {digest}: {len(descs)} layers, {len(diff_ids)} diff ids")
        return config_desc, config, tuple(Layer(d, i) for d, i in zip(descs, diff_ids, strict=True))

    # ------------------------------------------------------------ building

    def add_layer(self, src: Path) -> Layer:
        """Store the tree under ``src`` as a reproducible gzip layer (see
        write_layer_tar). A tree whose tar is already a layer of a stored image is
        not compressed again: the same tree always yields the same layer."""
        hashing = _HashSink()
        write_layer_tar(src, hashing)
        diff_id = hashing.digest()
        known = self._layers_by_diff_id().get(diff_id)
        if (known is not None and known.descriptor.media_type == OCI_LAYER_GZIP
                and self.claim_blob(known.descriptor.digest)):
            return known
        with self._tmp_file() as (tmp, out):
            sink = _HashSink(out)
            with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0,
                               compresslevel=GZIP_LEVEL) as gz:
                tee = _HashSink(gz)
                write_layer_tar(src, tee)
            out.close()
            if tee.digest() != diff_id:
                raise ImageError(f"{src} changed while it was being stored")
            digest = sink.digest()
            self._commit_blob(tmp, digest)
        return Layer(Descriptor(OCI_LAYER_GZIP, digest, sink.size), diff_id)

    def write_image(self, ref: Reference | str, layers: Sequence[Layer], config: dict[str, Any],
                    *, history: Sequence[str] = (), labels: dict[str, str] | None = None) -> Image:
        """Write an OCI config and manifest for ``layers`` (base first) and tag ``ref``.

        ``config`` is the run configuration (Entrypoint, Cmd, Env, WorkingDir,
        ExposedPorts, StopSignal, User...); ``history`` says what made each layer.
        Timestamps are the epoch, so equal inputs give equal digests.
        """
        if history and len(history) != len(layers):
            raise ValueError("history needs one entry per layer")
        os_name, arch = host_platform()
        run_config = dict(config)
        if labels:
            run_config["Labels"] = dict(labels)
        image_config = {
            "created": EPOCH, "os": os_name, "architecture": arch, "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": EPOCH, "created_by": h} for h in history],
        }
        config_bytes = canonical_json(image_config)
        config_digest, config_size = self.put_blob(config_bytes)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": Descriptor(OCI_CONFIG, config_digest, config_size).to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
        }
        if labels:
            manifest["annotations"] = dict(labels)
        digest, _ = self.put_blob(canonical_json(manifest))
        ref = _as_ref(ref)
        self.tag(ref, digest)
        return self._load(ref, digest)

    def _layers_by_diff_id(self) -> dict[str, Layer]:
        out: dict[str, Layer] = {}
        for ref, digest in self._named_entries():
            for layer in self._load(ref, digest).layers:
                out.setdefault(layer.diff_id, layer)
        return out

    # ------------------------------------------------------------ importing

    def import_archive(self, path: Path) -> list[Image]:
        """Load a `docker save` tarball or an OCI image-layout archive; see archive.py."""
        from kwire.node.images.archive import import_archive
        return import_archive(self, Path(path))

    # ------------------------------------------------------------ unpacking

    def unpack(self, ref: Reference | str, dest: Path) -> Image:
        """Apply every layer of an image in order into ``dest`` (made if missing),
        whiteouts deleting what lower layers wrote: a plain root file system."""
        image = self.resolve(ref)
        dest.mkdir(parents=True, exist_ok=True)
        for layer in image.layers:
            apply_layer(self.blob_path(layer.descriptor.digest), dest, diff_id=layer.diff_id)
        return image

    def layer_dirs(self, ref: Reference | str) -> list[Path]:
        """One directory per layer, base first, each in overlayfs form and shared by
        every image with the same layers below it. An overlay mount wants them the
        other way round: ``lowerdir=":".join(map(str, reversed(dirs)))``."""
        image = self.resolve(ref)
        dirs: list[Path] = []
        for layer, chain_id in zip(image.layers, image.chain_ids, strict=True):
            final = self.root / "layers" / "sha256" / chain_id.split(":", 1)[1]
            if not final.exists():
                self._unpack_layer(layer, final, lowers=list(reversed(dirs)))
            dirs.append(final)
        return dirs

    def _unpack_layer(self, layer: Layer, final: Path, lowers: list[Path]) -> None:
        work = Path(tempfile.mkdtemp(prefix="layer-", dir=self.root / "tmp"))
        try:
            os.chmod(work, 0o755)
            apply_layer(self.blob_path(layer.descriptor.digest), work, lowers, layer.diff_id)
            try:
                os.rename(work, final)
            except OSError:
                if not final.exists():
                    raise
                # another process unpacked the same layer first; theirs is as good
        finally:
            if work.exists():
                shutil.rmtree(work)

    # ------------------------------------------------------------ garbage

    def gc(self, min_age: float = GC_MIN_AGE) -> list[str]:
        """Delete blobs and unpacked layers no reference needs, and work files left
        by a crash, when older than ``min_age`` seconds; returns the digests of the
        blobs and layer dirs that went. The caller must keep every image a container
        uses tagged: its overlay mount still reads the layer dirs."""
        with self._locked():
            keep: set[str] = set()
            chains: set[str] = set()
            for entry in self._read_index():
                digest = entry["digest"]
                keep.add(digest)
                config_desc, _, layers = self._read_image(digest)
                keep.add(config_desc.digest)
                keep.update(layer.descriptor.digest for layer in layers)
                chains.update(chain_ids([layer.diff_id for layer in layers]))
            cutoff = time.time() - min_age
            removed = []
            for blob in (self.root / "blobs" / "sha256").iterdir():
                if f"sha256:{blob.name}" not in keep and blob.stat().st_mtime <= cutoff:
                    blob.unlink()
                    removed.append(f"sha256:{blob.name}")
            for layer in (self.root / "layers" / "sha256").iterdir():
                if f"sha256:{layer.name}" not in chains and layer.stat().st_mtime <= cutoff:
                    shutil.rmtree(layer)
                    removed.append(f"sha256:{layer.name}")
            for work in (self.root / "tmp").iterdir():
                if work.lstat().st_mtime > cutoff:
                    continue
                if work.is_dir() and not work.is_symlink():
                    shutil.rmtree(work)
                else:
                    work.unlink()
            return removed

    # ------------------------------------------------------------ files

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_index(self) -> list[dict[str, Any]]:
        index = json.loads((self.root / "index.json").read_bytes())
        return list(index.get("manifests") or [])

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        entries = sorted(entries, key=lambda e: (_entry_ref(e) or "", e["digest"]))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        self._write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode())

    def _write_atomic(self, path: Path, data: bytes) -> None:
        with self._tmp_file() as (tmp, out):
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)

    @contextmanager
    def _tmp_file(self) -> Iterator[tuple[Path, BinaryIO]]:
        """A new file in tmp/ that the body renames away; removed if it does not."""
        fd, name = tempfile.mkstemp(dir=self.root / "tmp")
        tmp = Path(name)
        out = os.fdopen(fd, "wb")
        try:
            yield tmp, out
        finally:
            out.close()
            if tmp.exists():
                tmp.unlink()


class _HashSink:
    """A write-only stream that hashes and counts what passes, then forwards it."""

    def __init__(self, out: BinaryIO | None = None):
        self.out = out
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _as_ref(ref: Reference | str) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


def _entry_ref(entry: dict[str, Any]) -> str | None:
    return (entry.get("annotations") or {}).get(REF_NAME)
