"""Cluster PKI: SANs and usages, chains that verify, idempotency, tokens, real TLS on loopback."""
import ipaddress
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from kwire.cluster import pki
from kwire.cluster.config import ClusterConfig


@pytest.fixture
def config(tmp_path):
    c = ClusterConfig(name="pki", state_dir=tmp_path / "pki", underlay_cidr="172.29.5.0/24")
    pki.ensure_pki(c)
    return c


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def eku(cert):
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_serving_certificate_names_and_usage(config):
    cert = load(config.server_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "10.96.0.1", "172.29.5.1")}
    assert eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_is_a_ten_year_ca(config):
    ca = load(config.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650


def test_admin_certificate_is_a_system_masters_client(config):
    cert = load(config.admin_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kwire-admin"
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_chains_verify_against_the_ca(config):
    store = Store([load(config.ca_cert)])
    server = PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(
        ipaddress.ip_address("127.0.0.1")))
    server.verify(load(config.server_cert), [])
    for name in ("kubernetes.default.svc", "localhost"):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name)).verify(
            load(config.server_cert), [])
    # cryptography's client verifier insists on a SAN that Kubernetes client certificates
    # do not carry; the signature check here and the real handshake below cover them.
    load(config.admin_cert).verify_directly_issued_by(load(config.ca_cert))


def test_ensure_pki_is_idempotent(config):
    files = [config.ca_cert, config.ca_key, config.server_cert, config.server_key,
             config.admin_cert, config.admin_key]
    before = [p.read_bytes() for p in files]
    pki.ensure_pki(config)
    assert [p.read_bytes() for p in files] == before
    for key in (config.ca_key, config.server_key, config.admin_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_missing_leaf_is_reissued_and_a_new_ca_replaces_both_leaves(config):
    ca, admin = config.ca_cert.read_bytes(), config.admin_cert.read_bytes()
    config.server_cert.unlink()
    pki.ensure_pki(config)
    assert config.server_cert.exists()
    assert (config.ca_cert.read_bytes(), config.admin_cert.read_bytes()) == (ca, admin)

    config.ca_key.unlink()
    pki.ensure_pki(config)
    assert config.ca_cert.read_bytes() != ca and config.admin_cert.read_bytes() != admin
    load(config.admin_cert).verify_directly_issued_by(load(config.ca_cert))
    load(config.server_cert).verify_directly_issued_by(load(config.ca_cert))


def test_tokens_are_created_once_in_token_file_format(config):
    tokens = pki.ensure_tokens(config)
    assert stat.S_IMODE(config.tokens_file.stat().st_mode) == 0o600
    assert pki.ensure_tokens(config) == tokens
    assert len({tokens.admin, tokens.node_agent}) == 2 and len(tokens.admin) == 64
    users = pki.read_token_file(config.tokens_file)
    assert users[tokens.admin] == pki.TokenUser("kwire-admin", "kwire-admin", ("system:masters",))
    assert users[tokens.node_agent].groups == ("system:nodes",)
    assert f"{tokens.admin},kwire-admin,kwire-admin,system:masters" in \
        config.tokens_file.read_text()


def test_read_token_file_handles_several_groups_and_comments(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text('# comment\nt1,alice,u1,"devs,ops"\nt2,bob,u2\n')
    assert pki.read_token_file(path) == {
        "t1": pki.TokenUser("alice", "u1", ("devs", "ops")),
        "t2": pki.TokenUser("bob", "u2", ())}


def test_tls_handshake_on_loopback_with_the_admin_certificate(config):
    """The contexts the server and kwire's clients use agree: CA-verified server name,
    client certificate seen by the server, HTTP/1.1 as the only ALPN choice."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    def accept():
        conn, _ = listener.accept()
        with pki.server_ssl_context(config).wrap_socket(conn, server_side=True) as tls:
            seen["subject"] = dict(rdn[0] for rdn in tls.getpeercert()["subject"])
            seen["alpn"] = tls.selected_alpn_protocol()
            tls.sendall(b"ok")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client_ctx = pki.admin_ssl_context(config)
        client_ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
        thread.join(5)
    finally:
        listener.close()
    assert seen == {"subject": {"organizationName": "system:masters", "commonName": "kwire-admin"},
                    "alpn": "http/1.1"}


def test_a_foreign_ca_is_rejected(config, tmp_path):
    other = ClusterConfig(name="other", state_dir=tmp_path / "other")
    pki.ensure_pki(other)
    ctx = ssl.create_default_context(cafile=other.ca_cert)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept():
        conn, _ = listener.accept()
        try:
            pki.server_ssl_context(config).wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        thread.join(5)
    finally:
        listener.close()
