"""Self-signed TLS material for loopback servers: a CA and serving certs issued by it.

Used by the sandbox API server for its HTTPS endpoint and by the gateway for its webhook
server and the mesh. ``ca.cert_pem`` may be a trust bundle (old and new CA during a
rotation, ``services.gateway.rotation``): the certificate that signs is the one matching
``ca.key_pem`` (``signing_cert``). ECDSA P-256 keys, PEM encoded; serving certs carry SANs
for 127.0.0.1, localhost and any extra DNS names or IPs. Depends only on ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
# Certificates start this long before they are issued, for clocks a little behind.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CertPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def generate_ca(*, common_name: str, validity: datetime.timedelta = _VALIDITY) -> CertPair:
    """A fresh self-signed CA valid for ``validity`` (one year unless told)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ["127.0.0.1", "localhost", *hosts]:
        if host in seen:
            continue
        seen.add(host)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


def issue_serving_cert(
    *, ca: CertPair, hosts: list[str], validity: datetime.timedelta = _VALIDITY
) -> CertPair:
    """A server certificate signed by ``ca`` for 127.0.0.1, localhost and ``hosts``, valid for
    ``validity`` (one year unless told) or until the CA expires, whichever comes first."""
    cn = hosts[0] if hosts else "localhost"
    return _issue(
        ca=ca,
        common_name=cn,
        sans=_san_entries(hosts),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        validity=validity,
    )


def issue_mesh_cert(
    *, ca: CertPair, uri: str, dns_names: list[str], validity: datetime.timedelta
) -> CertPair:
    """A mesh certificate signed by ``ca``, for both ends of a connection (server and client
    auth): the SPIFFE ID ``uri`` says which component holds it, ``dns_names`` are the names
    peers verify it by (``<component>.mesh.kruise-mesh``). Valid for ``validity``, or until
    the CA expires if that comes first."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    sans += [x509.DNSName(name) for name in dns_names]
    return _issue(
        ca=ca,
        common_name=uri,
        sans=sans,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        validity=validity,
    )


def not_after(cert_pem: bytes) -> datetime.datetime:
    """When the (first) certificate in ``cert_pem`` expires."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """When the (first) certificate in ``cert_pem`` starts and stops being valid."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _issue(
    *,
    ca: CertPair,
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    validity: datetime.timedelta,
) -> CertPair:
    # ca.cert_pem may be a trust bundle: the signing certificate is the one matching the key.
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("CA key must be an EC private key")
    ca_cert = signing_cert(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    # A certificate outliving its CA is no use: it ends when the CA does.
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def signing_cert(ca: CertPair) -> x509.Certificate:
    """The certificate in ``ca.cert_pem`` (one, or a bundle during a CA rotation) whose public
    key matches ``ca.key_pem``; ValueError when none does."""
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for cert in x509.load_pem_x509_certificates(ca.cert_pem):
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki == public:
            return cert
    raise ValueError("no certificate in the CA bundle matches the CA key")


def write_pair(directory: str | os.PathLike[str], name: str, pair: CertPair) -> tuple[Path, Path]:
    """Write ``<name>.crt`` and ``<name>.key`` (mode 0600) into ``directory``."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    cert_path = base / f"{name}.crt"
    key_path = base / f"{name}.key"
    cert_path.write_bytes(pair.cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.key_pem)
    return cert_path, key_path
