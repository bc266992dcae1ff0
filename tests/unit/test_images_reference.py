"""Image references normalise as Docker's do, so every spelling finds one image."""
import pytest

from kwire.node.images import InvalidReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, normal", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("nginx:alpine", "docker.io/library/nginx:alpine"),
    ("library/nginx:alpine", "docker.io/library/nginx:alpine"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest"),
    ("user/app:1.0", "docker.io/user/app:1.0"),
    ("user/team/app", "docker.io/user/team/app:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v2", "localhost:5000/app:v2"),
    ("registry.example.com/a/b:c", "registry.example.com/a/b:c"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ("Registry/app", "Registry/app:latest"),
    ("my_app.v2__x-y", "docker.io/library/my_app.v2__x-y:latest"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
    ("localhost:5000", "docker.io/library/localhost:5000"),  # as Docker reads it
])
def test_normalisation(text, normal):
    ref = parse_reference(text)
    assert str(ref) == normal
    assert parse_reference(normal) == ref  # normal form is a fixed point


def test_parts_and_familiar_names():
    ref = parse_reference("nginx:alpine")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/nginx",
                                                          "alpine", None)
    assert ref.name == "docker.io/library/nginx"
    assert ref.familiar_name == "nginx"
    assert parse_reference("user/app").familiar_name == "user/app"
    assert parse_reference("library/a/b").familiar_name == "library/a/b"
    assert parse_reference("quay.io/x/y").familiar_name == "quay.io/x/y"
    assert parse_reference(f"busybox@{DIGEST}").tag is None


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("user/App", "lowercase"),
    ("busybox:", "bad tag"),
    ("busybox:-x", "bad tag"),
    ("busybox:" + "t" * 129, "bad tag"),
    ("busybox@sha256:abc", "bad digest"),
    ("busybox@md5:" + "ab" * 16, "bad digest"),
    ("a//b", "bad repository"),
    ("-a/b", "bad repository"),
    ("a..b", "bad repository"),
    ("bad_host:5000:/x", "bad"),
    ("ab" * 32, "64-byte hexadecimal"),
    ("a/" * 130 + "b", "255 characters"),
])
def test_invalid(text, words):
    with pytest.raises(InvalidReference, match=words):
        parse_reference(text)
