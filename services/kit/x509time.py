"""When a certificate expires, read from its DER encoding without ``cryptography``.

A service replica only ever asks its mesh certificate one question: when does it expire
(the ``kruise_mesh_tls_cert_expiry_seconds`` gauge and the rotation log line). Loading
``cryptography`` for that costs each replica ~8 MB of RSS and ~40 ms of start-up; issuing
and checking certificates (the gateway, the CLI) stays in ``services.kit.certs``.

Pure; no I/O. The walk covers exactly the path RFC 5280 fixes::

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
        version [0] EXPLICIT OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
        issuer SEQUENCE, validity SEQUENCE { notBefore Time, notAfter Time }, ... } ... }
    Time ::= UTCTime "YYMMDDHHMMSSZ" (YY < 50: 20YY) | GeneralizedTime "YYYYMMDDHHMMSSZ"

Anything else (no CERTIFICATE block, bad base64, a truncated or unexpected element) raises
``ValueError``, as ``cryptography.x509.load_pem_x509_certificate`` does.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re

_PEM = re.compile(
    rb"-----BEGIN (?:X509 )?CERTIFICATE-----(.*?)-----END (?:X509 )?CERTIFICATE-----", re.DOTALL
)
_SEQUENCE, _INTEGER, _VERSION = 0x30, 0x02, 0xA0
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18


def _element(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The DER element at ``pos`` (before ``end``): (tag, start of its value, end of it)."""
    if pos + 2 > end:
        raise ValueError("certificate: truncated DER")
    tag, length = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("certificate: unexpected multi-byte DER tag")
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or pos + size > end:
            raise ValueError("certificate: bad DER length")
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("certificate: truncated DER")
    return tag, pos, pos + length


def _expect(der: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = _element(der, pos, end)
    if found != tag:
        raise ValueError(f"certificate: DER tag {found:#x} where {tag:#x} belongs")
    return start, stop


def _time(der: bytes, pos: int, end: int) -> tuple[datetime.datetime, int]:
    """The Time at ``pos``, and where the next element starts."""
    tag, start, stop = _element(der, pos, end)
    text = der[start:stop].decode("ascii")
    size = {_UTC_TIME: 13, _GENERALIZED_TIME: 15}.get(tag)
    if len(text) != size or not text.endswith("Z") or not text[:-1].isdigit():
        raise ValueError(f"certificate: unexpected time {text!r} (DER tag {tag:#x})")
    if tag == _UTC_TIME:
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    year, month, day, hour, minute, second = (
        int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))
    )
    when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    return when, stop


def validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """When the (first) certificate in ``cert_pem`` starts and stops being valid (UTC)."""
    found = _PEM.search(cert_pem)
    if found is None:
        raise ValueError("no CERTIFICATE block in the PEM data")
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except binascii.Error as e:
        raise ValueError(f"certificate: bad base64: {e}") from e
    start, end = _expect(der, 0, len(der), _SEQUENCE)  # Certificate
    pos, end = _expect(der, start, end, _SEQUENCE)  # tbsCertificate
    tag, _, stop = _element(der, pos, end)
    if tag == _VERSION:
        tag, _, stop = _element(der, stop, end)
    if tag != _INTEGER:
        raise ValueError("certificate: no serial number")
    pos = _expect(der, stop, end, _SEQUENCE)[1]  # signature algorithm
    pos = _expect(der, pos, end, _SEQUENCE)[1]  # issuer
    pos, end = _expect(der, pos, end, _SEQUENCE)  # validity
    not_before, pos = _time(der, pos, end)
    not_after, _ = _time(der, pos, end)
    return not_before, not_after


def not_after(cert_pem: bytes) -> datetime.datetime:
    """When the (first) certificate in ``cert_pem`` expires (UTC)."""
    return validity(cert_pem)[1]
