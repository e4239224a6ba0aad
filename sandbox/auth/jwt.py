"""ES256 JSON Web Tokens (RFC 7515/7519 compact form): sign, verify, publish the key.

The few lines of JOSE the sandbox's ServiceAccount token issuer needs, on ``cryptography``
alone. Tokens look like kube-apiserver's: a header ``{"alg": "ES256", "kid": ...}`` (kid is
the unpadded base64url SHA-256 of the public key's DER, as kube derives it) and the claims
serialized with sorted keys, as Go marshals the claim structs.

    SigningKey.generate()          a fresh P-256 key
    key.sign(claims) -> str        compact JWT
    key.verify(token) -> claims    or ``InvalidToken`` (bad shape, alg, kid or signature)
    key.jwk()                      the public key as a JWK (for /openid/v1/jwks)

Claim checks (issuer, audience, time) are the caller's; see ``sandbox.auth.tokens``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

_ALG = "ES256"
_COORD = 32  # bytes per P-256 coordinate / signature half


class InvalidToken(Exception):
    """Not a JWT this key signed."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise InvalidToken("malformed base64url") from e


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWT without checking anything (None if not one)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(b64url_decode(parts[1]))
    except (InvalidToken, orjson.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class SigningKey:
    """A P-256 private key that signs and verifies ES256 tokens."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._public = key.public_key()
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha256(der).digest())
        self._header = b64url(orjson.dumps({"alg": _ALG, "kid": self.kid}))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, claims: dict[str, Any]) -> str:
        payload = b64url(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
        signing_input = f"{self._header}.{payload}".encode()
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
        return f"{self._header}.{payload}.{b64url(sig)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` if this key signed it; else ``InvalidToken``."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a compact JWS")
        try:
            header = orjson.loads(b64url_decode(parts[0]))
        except orjson.JSONDecodeError as e:
            raise InvalidToken("malformed header") from e
        if not isinstance(header, dict) or header.get("alg") != _ALG:
            raise InvalidToken("unexpected signing algorithm")
        if header.get("kid") not in (None, self.kid):
            raise InvalidToken("unknown key id")
        sig = b64url_decode(parts[2])
        if len(sig) != 2 * _COORD:
            raise InvalidToken("malformed signature")
        der = encode_dss_signature(
            int.from_bytes(sig[:_COORD], "big"), int.from_bytes(sig[_COORD:], "big")
        )
        try:
            self._public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise InvalidToken("invalid signature") from e
        try:
            claims = orjson.loads(b64url_decode(parts[1]))
        except orjson.JSONDecodeError as e:
            raise InvalidToken("malformed claims") from e
        if not isinstance(claims, dict):
            raise InvalidToken("malformed claims")
        return claims

    def jwk(self) -> dict[str, str]:
        nums = self._public.public_numbers()
        return {
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": _ALG,
            "x": b64url(nums.x.to_bytes(_COORD, "big")),
            "y": b64url(nums.y.to_bytes(_COORD, "big")),
        }
