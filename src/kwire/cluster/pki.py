"""The cluster's certificates and bearer tokens, made once at the first `kwire up`.

- A cluster CA (EC P-256, 10 years) signs everything.
- The serving certificate carries every name a client may dial: 127.0.0.1, localhost,
  the in-cluster `kubernetes` Service names and IP, and the underlay host address the
  node agents use. Go (kubectl) ignores the CN, so the SANs are what make it trusted.
- The admin client certificate is CN=kwire-admin, O=system:masters (Kubernetes reads the
  user from CN and the groups from O).
- Tokens live in kube-apiserver's --token-auth-file format: ``token,user,uid,"groups"``.

Existing files are reused, so restarting a cluster keeps every credential valid.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kwire.cluster.config import ClusterConfig, ClusterError, write_private_file

ADMIN_USER = "kwire-admin"
ADMIN_GROUPS = ("system:masters",)
NODE_AGENT_USER = "kwire-node-agent"
NODE_AGENT_GROUPS = ("system:nodes",)

VALIDITY = dt.timedelta(days=3650)
# Certificates start a little in the past so a machine with a slightly late clock
# (an agent on another host) does not see them as not yet valid.
BACKDATE = dt.timedelta(minutes=5)


def serving_names(config: ClusterConfig) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the serving certificate must hold."""
    domain = config.cluster_domain
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{domain}"]
    ips = ["127.0.0.1", config.api_host, config.api_service_ip, config.underlay_host_address]
    return dns, list(dict.fromkeys(ips))


def ensure_pki(config: ClusterConfig) -> None:
    """Create the CA, serving and admin certificates that are missing.

    A freshly made CA invalidates any old leaf certificate, so both leaves are then
    issued again.
    """
    ca_cert, ca_key, ca_is_new = _ensure_ca(config)
    dns, ips = serving_names(config)
    if ca_is_new or not (config.server_cert.exists() and config.server_key.exists()):
        _issue(ca_cert, ca_key, config.server_cert, config.server_key,
               subject=_name("kube-apiserver"), usage=ExtendedKeyUsageOID.SERVER_AUTH,
               san=x509.SubjectAlternativeName(
                   [x509.DNSName(d) for d in dns]
                   + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]))
    if ca_is_new or not (config.admin_cert.exists() and config.admin_key.exists()):
        _issue(ca_cert, ca_key, config.admin_cert, config.admin_key,
               subject=_name(ADMIN_USER, ADMIN_GROUPS), usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ensure_ca(config: ClusterConfig) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    if config.ca_cert.exists() and config.ca_key.exists():
        cert = x509.load_pem_x509_certificate(config.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(config.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ClusterError(f"{config.ca_key}: expected an EC private key")
        return cert, key, False
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = _name(f"kwire-ca-{config.name}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_pair(config.ca_cert, config.ca_key, cert, key)
    return cert, key, True


def _issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cert_path: Path,
           key_path: Path, *, subject: x509.Name, usage: x509.ObjectIdentifier,
           san: x509.SubjectAlternativeName | None = None) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(min(now + VALIDITY, ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(aki, critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    _write_pair(cert_path, key_path, builder.sign(ca_key, hashes.SHA256()), key)


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> None:
    # Key first: a certificate on disk always has its key beside it.
    write_private_file(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


# -- TLS contexts ----------------------------------------------------------------------


def server_ssl_context(config: ClusterConfig) -> ssl.SSLContext:
    """TLS for the API server: serving certificate, optional client certificates checked
    against the cluster CA (tokens are the other way in), and HTTP/1.1 only in ALPN
    (kubectl offers h2 and breaks if the server picks it without speaking HTTP/2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.server_cert, config.server_key)
    ctx.load_verify_locations(cafile=config.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def admin_ssl_context(config: ClusterConfig) -> ssl.SSLContext:
    """TLS for an admin client: trusts only the cluster CA and presents the admin cert."""
    ctx = ssl.create_default_context(cafile=config.ca_cert)
    ctx.load_cert_chain(config.admin_cert, config.admin_key)
    return ctx


# -- tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenUser:
    """Who a bearer token authenticates as."""

    name: str
    uid: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Tokens:
    admin: str
    node_agent: str


def ensure_tokens(config: ClusterConfig) -> Tokens:
    """Create the tokens file (admin and node-agent tokens) unless it exists; return both."""
    if not config.tokens_file.exists():
        rows = [(secrets.token_hex(32), ADMIN_USER, ADMIN_GROUPS),
                (secrets.token_hex(32), NODE_AGENT_USER, NODE_AGENT_GROUPS)]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for token, user, groups in rows:
            writer.writerow([token, user, user, ",".join(groups)])
        write_private_file(config.tokens_file, out.getvalue().encode())
    return load_tokens(config)


def read_token_file(path: Path) -> dict[str, TokenUser]:
    """Parse a --token-auth-file style CSV: token -> user (what the server authenticates)."""
    users = {}
    for row in csv.reader(path.read_text().splitlines()):
        if len(row) < 3 or row[0].startswith("#"):
            continue
        groups = tuple(g for g in row[3].split(",") if g) if len(row) > 3 else ()
        users[row[0]] = TokenUser(name=row[1], uid=row[2], groups=groups)
    return users


def load_tokens(config: ClusterConfig) -> Tokens:
    by_user = {u.name: token for token, u in read_token_file(config.tokens_file).items()}
    try:
        return Tokens(admin=by_user[ADMIN_USER], node_agent=by_user[NODE_AGENT_USER])
    except KeyError as e:
        raise ClusterError(f"{config.tokens_file} has no token for {e.args[0]}") from None
