"""mesh_certs' pure parts: what every component trusts now, and why a Secret is written."""

from __future__ import annotations

import datetime

import pytest

from services.gateway import rotation
from services.gateway.mesh_certs import Holder, rewrite_reason, trusted_everywhere
from services.kit import certs

A, B = (certs.generate_ca(common_name="kruise-mesh CA") for _ in range(2))
NOW = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC)
OVERLAP = datetime.timedelta(minutes=10)


def held(bundle: bytes | None, *, written: float | None = None) -> Holder:
    """A Secret whose ca.crt is ``bundle``, written ``written`` minutes ago (None: unstamped)."""
    since = None if written is None else NOW - datetime.timedelta(minutes=written)
    return Holder(None, bundle, since)


ID_A, ID_B = rotation.ca_id(A.cert_pem), rotation.ca_id(B.cert_pem)


@pytest.mark.parametrize(
    ("holders", "expected"),
    [
        pytest.param(
            {"rollout": held(A.cert_pem), "gateway": held(A.cert_pem, written=500)},
            {ID_A},
            id="before any rotation (an unstamped ca.crt is old)",
        ),
        pytest.param(
            {
                "rollout": held(A.cert_pem + B.cert_pem, written=4),
                "gateway": held(A.cert_pem + B.cert_pem, written=12),
            },
            set(),
            id="add-ca 4 min ago on rollout: its pods may not have B yet",
        ),
        pytest.param(
            {
                "rollout": held(A.cert_pem + B.cert_pem, written=11),
                "gateway": held(A.cert_pem + B.cert_pem, written=12),
            },
            {ID_A, ID_B},
            id="add-ca settled everywhere: the switch may go",
        ),
        pytest.param(
            {"rollout": held(None), "gateway": held(A.cert_pem + B.cert_pem, written=12)},
            set(),
            id="a Secret missing: its component trusts nothing",
        ),
        pytest.param(
            {"rollout": held(A.cert_pem, written=20), "gateway": held(A.cert_pem + B.cert_pem)},
            {ID_A},
            id="one ca.crt lacks B: only A is common",
        ),
    ],
)
def test_trusted_everywhere(holders: dict[str, Holder], expected: set[str]) -> None:
    assert trusted_everywhere(holders, now=NOW, overlap=OVERLAP) == expected


@pytest.mark.parametrize(
    ("holder", "issued", "bundle", "expected"),
    [
        pytest.param(held(None), "missing", A.cert_pem, "missing", id="a leaf the plan issued"),
        pytest.param(held(A.cert_pem), None, A.cert_pem, None, id="nothing changed"),
        pytest.param(
            held(A.cert_pem.replace(b"\n", b"\r\n")),
            None,
            A.cert_pem,
            None,
            id="the same CA in other bytes is the same bundle",
        ),
        pytest.param(
            held(A.cert_pem),
            None,
            A.cert_pem + B.cert_pem,
            "ca-bundle",
            id="add-ca: the leaf is kept, the bundle gains B",
        ),
        pytest.param(
            held(A.cert_pem + B.cert_pem),
            None,
            B.cert_pem,
            "ca-bundle",
            id="drop-old-ca: the bundle loses A",
        ),
        pytest.param(
            held(B.cert_pem + A.cert_pem),
            None,
            A.cert_pem + B.cert_pem,
            "ca-bundle",
            id="the same CAs in another order (newest last, as the CA Secret has them)",
        ),
    ],
)
def test_rewrite_reason(holder: Holder, issued: str | None, bundle: bytes, expected: str) -> None:
    assert rewrite_reason(holder, issued=issued, bundle=bundle) == expected
