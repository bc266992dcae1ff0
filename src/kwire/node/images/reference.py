"""Image references, normalised the way Docker and containerd do it.

Pods name images as users type them (``busybox``, ``nginx:alpine``,
``localhost:5000/team/app@sha256:...``); the store keys images by the fully
qualified form (``docker.io/library/busybox:latest``) so that every spelling of
one image finds the same entry. The grammar is distribution's reference grammar
(github.com/distribution/reference), which is what kubelet, containerd and the
docker CLI accept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kwire.node.images.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_ANONYMOUS_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``.

    A name with neither tag nor digest gets the tag ``latest``, as `docker pull`
    does; ``name:tag@digest`` keeps both and the digest decides.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository with its registry: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as `docker images` shows it: ``busybox``, ``user/app``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
            return path[len(OFFICIAL_REPO_PREFIX):]
        return path

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str) -> Reference:
    """Parse and normalise a reference; raises InvalidReference with Docker's wording."""
    if not text:
        raise InvalidReference("invalid reference format: empty reference")
    if _ANONYMOUS_ID.fullmatch(text):
        raise InvalidReference(f"invalid repository name ({text}), "
                               "cannot specify 64-byte hexadecimal strings")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidReference(f"invalid reference format: bad digest {digest!r} "
                                   "(want sha256:<64 lowercase hex digits>)")
    tag = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        if not TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid reference format: bad tag {tag!r}")
    domain, path = _split_domain(rest)
    if not DOMAIN_RE.fullmatch(domain):
        raise InvalidReference(f"invalid reference format: bad registry {domain!r}")
    if path.lower() != path:
        raise InvalidReference(f"invalid reference format: repository name ({path}) "
                               "must be lowercase")
    if not PATH_RE.fullmatch(path):
        raise InvalidReference(f"invalid reference format: bad repository name {path!r}")
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidReference(f"invalid reference format: repository name must not be "
                               f"more than {NAME_MAX} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: the first component is a registry only when it looks like a
    host (has a dot or a port, is localhost, or has capitals), else it is Docker Hub."""
    first, sep, remainder = name.partition("/")
    if not sep or not (any(c in first for c in ".:") or first == "localhost"
                       or first.lower() != first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain = first
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder
