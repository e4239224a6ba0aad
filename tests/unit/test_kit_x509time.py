"""kit.x509time: a certificate's validity read from its DER, checked against cryptography."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.kit import certs, x509time

UTC = datetime.UTC


def self_signed(not_before: datetime.datetime, not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x509time test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


CA = certs.generate_ca(common_name="x509time CA")
MESH = certs.issue_mesh_cert(
    ca=CA,
    uri="spiffe://kruise-mesh/budget",
    dns_names=["budget.mesh.kruise-mesh"],
    validity=datetime.timedelta(hours=1),
)


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(MESH.cert_pem, id="a mesh certificate (UTCTime)"),
        pytest.param(CA.cert_pem, id="the mesh CA"),
        pytest.param(MESH.cert_pem + CA.cert_pem, id="a chain: the first certificate's"),
        pytest.param(b"comment\n" + MESH.cert_pem, id="text before the block"),
        pytest.param(
            self_signed(
                datetime.datetime(2050, 1, 1, tzinfo=UTC),
                datetime.datetime(2100, 2, 3, 12, 34, 56, tzinfo=UTC),
            ),
            id="GeneralizedTime: from 2050 on",
        ),
        pytest.param(
            self_signed(
                datetime.datetime(1950, 1, 1, tzinfo=UTC),
                datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
            ),
            id="UTCTime at both ends of its century window",
        ),
    ],
)
def test_validity_matches_cryptography(pem: bytes) -> None:
    cert = x509.load_pem_x509_certificate(pem)
    assert x509time.validity(pem) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert x509time.not_after(pem) == certs.not_after(pem)


def truncated(pem: bytes) -> bytes:
    """``pem``'s certificate cut off after 120 bytes of DER, re-encoded as PEM."""
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))[:120]
    begin, end = b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n"
    return begin + base64.encodebytes(der) + end


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(MESH.key_pem, id="a key, no certificate"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", id="bad base64"
        ),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nAgEB\n-----END CERTIFICATE-----\n", id="not a SEQUENCE"
        ),
        pytest.param(truncated(MESH.cert_pem), id="truncated"),
    ],
)
def test_not_a_certificate_raises_value_error(pem: bytes) -> None:
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(pem)
    with pytest.raises(ValueError):
        x509time.not_after(pem)
