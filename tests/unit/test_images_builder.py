"""What the built-in image builder needs from the host, without building (the
build itself is tests/integration/test_images_builtin.py)."""
import tempfile
from pathlib import Path

import pytest

from kwire.node.images import ImageStore, MissingPackages, build_builtin_images, builtin


@pytest.fixture
def tmp_path():
    """A temporary directory removed after the test, pass or fail (pytest keeps its own)."""
    with tempfile.TemporaryDirectory(prefix="kwire-images-") as d:
        yield Path(d)


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "_dpkg_version",
                        lambda pkg: None if pkg == "nginx" else "1:1.35.0-4")
    with pytest.raises(MissingPackages, match="apt-get install nginx-light$") as err:
        build_builtin_images(ImageStore(tmp_path / "store"))
    assert err.value.packages == ["nginx-light"]


def test_no_dpkg_means_nothing_installed(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert builtin._dpkg_version("busybox-static") is None


@pytest.mark.parametrize("debian, upstream", [("1.22.1-9+deb12u11", "1.22.1"),
                                              ("1:1.35.0-4+deb12u1+b1", "1.35.0"),
                                              ("1.26.0", "1.26.0")])
def test_upstream_version(debian, upstream):
    assert builtin._upstream_version(debian) == upstream


def test_entrypoint_hook_knows_the_shipped_default_conf():
    """The IPv6 hook edits default.conf only while it is the file the image shipped:
    the checksum is filled in at build time, and its sed finds the listen line."""
    assert "@DEFAULT_CONF_SHA256@" in builtin.IPV6_HOOK
    assert "    listen       80;\n" in builtin.DEFAULT_CONF
    assert "access_log  /var/log/nginx/access.log" in builtin.NGINX_CONF
