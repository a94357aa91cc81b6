"""Certificates for the local control plane: a cluster CA, serving and client certs, SA keys.

Go's TLS stack wants SANs and a CA:true root; these are made with ``cryptography`` once per
cluster directory, the way kubeadm lays them out (``ca.crt``, ``apiserver.crt``, ...).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = dt.timedelta(days=365)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(directory: Path, stem: str, cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.crt", cert)
    return key, cert


def _leaf(directory: Path, stem: str, ca, *, cn: str, org: str | None = None,
          server: bool = False, client: bool = False, ips=(), dns=()) -> None:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))


def make_pki(directory: Path, *, service_ip: str = "10.0.0.1") -> Path:
    """Write every certificate and key the control plane needs into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca", "ocrfleet-local-ca")
    _leaf(directory, "apiserver", ca, cn="kube-apiserver", server=True,
          ips=("127.0.0.1", service_ip), dns=("localhost", "kubernetes", "kubernetes.default",
                                              "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
    _leaf(directory, "admin", ca, cn="ocrfleet-admin", org="system:masters", client=True)
    front = _ca(directory, "front-proxy-ca", "ocrfleet-front-proxy-ca")
    _leaf(directory, "front-proxy-client", front, cn="front-proxy-client", client=True)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa)
    (directory / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory


def make_serving_cert(directory: Path, cn: str = "localhost", *, client: bool = False) -> tuple[Path, Path, Path]:
    """A CA and a serving cert for ``localhost``/127.0.0.1 (with ``client``, good for client
    authentication too, as mutual TLS between two copies of one program needs): returns
    (ca.crt, tls.crt, tls.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "serving-ca", f"{cn}-ca")
    _leaf(directory, "tls", ca, cn=cn, server=True, client=client, ips=("127.0.0.1",), dns=("localhost", cn))
    return directory / "serving-ca.crt", directory / "tls.crt", directory / "tls.key"


def make_client_cert(directory: Path, stem: str, cn: str) -> tuple[Path, Path, Path]:
    """A CA of its own and a client cert ``cn`` it signed: returns (ca.crt, client.crt, client.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, f"{stem}-ca", f"{stem}-ca")
    _leaf(directory, stem, ca, cn=cn, client=True)
    return directory / f"{stem}-ca.crt", directory / f"{stem}.crt", directory / f"{stem}.key"
