"""`kwire images import|ls|rm` on a store in a temporary $KWIRE_IMAGE_ROOT, with a
`docker save` archive made here."""
import hashlib
import io
import json
import re
import tarfile
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from kwire.cli.images import human_size
from kwire.cli.main import main
from kwire.node.paths import IMAGE_ROOT_ENV


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def docker_save(path: Path, tags: list[str], text: str) -> tuple[bytes, bytes]:
    """Write a one-layer `docker save` archive; returns (layer tar, config)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add(tf, "hello.txt", text.encode())
    layer = buf.getvalue()
    config = json.dumps({"os": "linux", "architecture": "amd64",
                         "config": {"Cmd": ["cat", "/hello.txt"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    config_name = sha(config)[7:] + ".json"
    with tarfile.open(path, "w") as tf:
        add(tf, f"{sha(layer)[7:]}/layer.tar", layer)
        add(tf, config_name, config)
        add(tf, "manifest.json", json.dumps([{
            "Config": config_name, "RepoTags": tags,
            "Layers": [f"{sha(layer)[7:]}/layer.tar"]}]).encode())
    return layer, config


@pytest.fixture
def env():
    with tempfile.TemporaryDirectory(prefix="kwire-images-cli-") as d:
        yield {IMAGE_ROOT_ENV: str(Path(d) / "images")}, Path(d)


def kwire(env, *args):
    return CliRunner().invoke(main, list(args), env=env)


def test_import_ls_rm(env):
    env, work = env
    archive = work / "hello.tar"
    layer, config = docker_save(archive, ["example.com/kwire/hello:1", "hello:latest"], "hi")
    image_id = sha(config)[7:20]

    result = kwire(env, "images", "import", str(archive))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"imported example.com/kwire/hello:1 ({image_id})",
                                          f"imported docker.io/library/hello:latest ({image_id})"]

    listed = kwire(env, "images", "ls")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["IMAGE", "TAG", "IMAGE ID", "SIZE"]
    size = f"{(len(layer) + len(config)) / 1000:.4g}kB"
    assert [line.split() for line in lines[1:]] == [
        ["docker.io/library/hello", "latest", image_id, size],
        ["example.com/kwire/hello", "1", image_id, size],
    ]
    # Columns line up under their headers, as crictl's tabwriter does.
    assert {line.index(image_id) for line in lines[1:]} == {lines[0].index("IMAGE ID")}

    removed = kwire(env, "images", "rm", "hello")
    assert removed.exit_code == 0, removed.output
    assert removed.output == "Deleted: docker.io/library/hello:latest\n"
    assert "docker.io/library/hello" not in kwire(env, "images", "ls").output
    again = kwire(env, "images", "rm", "hello", "example.com/kwire/hello:1")
    assert again.exit_code == 1
    assert "Deleted: example.com/kwire/hello:1" in again.output
    assert "no such image: hello" in again.output


def test_import_refuses_what_is_no_image(env):
    env, work = env
    junk = work / "junk.tar"
    junk.write_bytes(b"not a tar at all")
    result = kwire(env, "images", "import", str(junk))
    assert result.exit_code == 1
    assert "not a readable tar archive" in result.output


def test_ls_creates_no_store(env):
    env, _ = env
    result = kwire(env, "images", "ls")
    assert result.exit_code == 0
    assert result.output.split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert not Path(env[IMAGE_ROOT_ENV]).exists()


@pytest.mark.parametrize("size, shown", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1036627, "1.037MB"), (4_086_157_000, "4.086GB"),
    (2 * 10**18, "2EB"), (10**28, "1e+04YB"),
])
def test_human_size_like_crictl(size, shown):
    assert human_size(size) == shown
