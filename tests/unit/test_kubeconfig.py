"""Kubeconfig: the cluster's own file, merging into and removal from the user's file.

HOME and KUBECONFIG always point into tmp_path: the real ~/.kube/config is never touched.
"""
import base64
import os
import stat

import pytest
import yaml

from kwire.cluster import kubeconfig, pki
from kwire.cluster.config import ClusterConfig

OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://prod.example:6443"}}],
    "users": [{"name": "prod-admin", "user": {"token": "secret"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod-admin",
                                               "namespace": "web"}}],
    "current-context": "prod",
    "preferences": {"colors": True},
    "extensions": [{"name": "x", "extension": {"a": 1}}],
}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ClusterConfig(name="kc", state_dir=tmp_path_factory.mktemp("state") / "kc",
                      api_port=40123)
    pki.ensure_pki(c)
    return c


def names(cfg, section):
    return [e["name"] for e in cfg.get(section) or []]


def test_cluster_kubeconfig_holds_server_ca_token_and_client_cert(cluster):
    ours = kubeconfig.write_cluster_kubeconfig(cluster, "tok")
    assert yaml.safe_load(cluster.kubeconfig_path.read_text()) == ours
    assert stat.S_IMODE(cluster.kubeconfig_path.stat().st_mode) == 0o600
    assert ours["current-context"] == "kwire-kc"
    assert ours["contexts"] == [{"name": "kwire-kc",
                                 "context": {"cluster": "kwire-kc", "user": "kwire-kc"}}]
    c = ours["clusters"][0]["cluster"]
    assert c["server"] == "https://127.0.0.1:40123"
    assert base64.b64decode(c["certificate-authority-data"]) == cluster.ca_cert.read_bytes()
    user = ours["users"][0]["user"]
    assert user["token"] == "tok"
    assert base64.b64decode(user["client-certificate-data"]) == cluster.admin_cert.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == cluster.admin_key.read_bytes()


def test_merge_creates_dot_kube_and_the_file(cluster, isolated_home):
    path = kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok"))
    assert path == isolated_home / ".kube" / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["current-context"] == "kwire-kc"
    assert (cfg["apiVersion"], cfg["kind"]) == ("v1", "Config")


def test_merge_preserves_other_entries_and_replaces_ours(cluster, isolated_home):
    path = isolated_home / ".kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(OTHER))
    kubeconfig.merge_into_user(kubeconfig.build(cluster, "old"))
    kubeconfig.merge_into_user(kubeconfig.build(cluster, "new"))
    cfg = yaml.safe_load(path.read_text())
    assert names(cfg, "clusters") == ["prod", "kwire-kc"]
    assert names(cfg, "users") == ["prod-admin", "kwire-kc"]
    assert names(cfg, "contexts") == ["prod", "kwire-kc"]
    assert cfg["users"][1]["user"]["token"] == "new"
    assert cfg["current-context"] == "kwire-kc"
    for key in ("preferences", "extensions"):
        assert cfg[key] == OTHER[key]
    assert cfg["contexts"][0] == OTHER["contexts"][0]


def test_remove_restores_the_other_entries(cluster, isolated_home):
    path = isolated_home / ".kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(OTHER))
    kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok"))
    assert kubeconfig.remove_from_user("kwire-kc") == path
    cfg = yaml.safe_load(path.read_text())
    assert cfg == {**OTHER, "current-context": ""}
    assert kubeconfig.remove_from_user("kwire-kc") is None


def test_remove_keeps_current_context_that_points_elsewhere(cluster, isolated_home):
    path = isolated_home / ".kube" / "config"
    kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok"))
    kubeconfig.merge_into_user(OTHER)  # "prod" becomes current
    kubeconfig.remove_from_user("kwire-kc")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["current-context"] == "prod"
    assert "kwire-kc" not in names(cfg, "contexts")


def test_remove_without_a_file_does_nothing(isolated_home):
    assert kubeconfig.remove_from_user("kwire-kc") is None
    assert not (isolated_home / ".kube").exists()


def test_kubeconfig_env_first_path_is_used(cluster, tmp_path, monkeypatch, isolated_home):
    first, second = tmp_path / "a" / "first", tmp_path / "second"
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(["", str(first), str(second)]))
    assert kubeconfig.user_kubeconfig_path() == first
    assert kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok")) == first
    assert names(yaml.safe_load(first.read_text()), "contexts") == ["kwire-kc"]
    assert not second.exists()
    assert not (isolated_home / ".kube").exists()
    kubeconfig.remove_from_user("kwire-kc")
    assert names(yaml.safe_load(first.read_text()), "contexts") == []


def test_symlinked_kubeconfig_keeps_its_link(cluster, tmp_path, monkeypatch):
    real = tmp_path / "real-config"
    real.write_text(yaml.safe_dump(OTHER))
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv("KUBECONFIG", str(link))
    kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok"))
    assert link.is_symlink()
    assert "kwire-kc" in names(yaml.safe_load(real.read_text()), "contexts")


def test_unreadable_kubeconfig_is_not_overwritten(cluster, isolated_home):
    path = isolated_home / ".kube" / "config"
    path.parent.mkdir()
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(kubeconfig.KubeconfigError, match="cannot read kubeconfig"):
        kubeconfig.merge_into_user(kubeconfig.build(cluster, "tok"))
    assert path.read_text() == "clusters: [unclosed\n"


def test_merge_and_remove_are_pure():
    existing = {"clusters": None, "current-context": "kwire-x"}
    ours = {"clusters": [{"name": "kwire-x"}], "users": [{"name": "kwire-x"}],
            "contexts": [{"name": "kwire-x"}], "current-context": "kwire-x"}
    merged = kubeconfig.merge(existing, ours)
    assert existing == {"clusters": None, "current-context": "kwire-x"}
    assert kubeconfig.remove(merged, "kwire-x") == {
        "clusters": [], "users": [], "contexts": [], "current-context": "",
        "apiVersion": "v1", "kind": "Config"}
