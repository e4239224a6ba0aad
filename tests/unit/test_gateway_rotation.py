"""The rotation planner (services.gateway.rotation): what happens next to a CA bundle and its
leaves, one row per situation an operator's cluster can be in.

Times are seconds from ``NOW``; the plain-data rows use a CA of 30 s, leaves of 9 s, an
overlap of 2 s and no backdate, so "made -6.3 of 9" is a leaf at 70 % of its life. The PEM
rows build real certificates with services.kit.certs.
"""

from __future__ import annotations

import datetime

import pytest

from services.gateway.rotation import (
    AddCa,
    Broken,
    Ca,
    DropOldCas,
    IssueLeaf,
    Leaf,
    Observed,
    Pki,
    Plan,
    Policy,
    Validity,
    apply_plan,
    bundle_ids,
    ca_id,
    plan,
    read_pki,
    split_bundle,
)
from services.kit import certs

NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
POLICY = Policy(overlap=datetime.timedelta(seconds=2), backdate=datetime.timedelta(0))


def span(made: float, life: float) -> Validity:
    """Made ``made`` seconds from NOW (negative: in the past), valid for ``life`` seconds."""
    start = NOW + datetime.timedelta(seconds=made)
    return Validity(start, start + datetime.timedelta(seconds=life))


def ca(name: str, *, made: float, life: float = 30) -> Ca:
    return Ca(name, span(made, life))


def leaf(issuer: str | None, *, made: float, life: float = 9) -> Leaf:
    return Leaf(issuer, span(made, life))


def seen(
    *cas: Ca,
    key: str | None = "last",
    webhook: Leaf | Broken,
    trusted: frozenset[str] | None = None,
) -> Observed:
    key_of = (cas[-1].id if cas else None) if key == "last" else key
    return Observed(cas, key_of, {"webhook": webhook}, trusted)


A, B = "A", "B"


@pytest.mark.parametrize(
    ("observed", "expected", "waiting"),
    [
        pytest.param(
            seen(webhook="missing"),
            [AddCa("no-ca"), IssueLeaf("webhook", "new-ca")],
            None,
            id="fresh install: a CA and a leaf from it, in one write",
        ),
        pytest.param(
            seen(ca(A, made=-1), webhook=leaf(A, made=-1)),
            [],
            None,
            id="steady: CA and leaf young, nothing to do",
        ),
        pytest.param(
            seen(ca(A, made=-7), webhook=leaf(A, made=-5.4)),
            [],
            None,
            id="leaf at 60 % of its life: not yet",
        ),
        pytest.param(
            seen(ca(A, made=-7), webhook=leaf(A, made=-6.3)),
            [IssueLeaf("webhook", "aged")],
            None,
            id="leaf at 70 % of its life: a new one from the same CA",
        ),
        pytest.param(
            seen(ca(A, made=-21), webhook=leaf(A, made=-1)),
            [AddCa("aged")],
            None,
            id="CA at 70 % of its life: rotation step 1, a second CA in the bundle",
        ),
        pytest.param(
            seen(ca(A, made=-21), webhook=leaf(A, made=-6.3)),
            [AddCa("aged")],
            None,
            id="CA and leaf both aged: the CA first; the leaf waits for the switch",
        ),
        pytest.param(
            seen(ca(A, made=-21), webhook="missing"),
            [IssueLeaf("webhook", "missing"), AddCa("aged")],
            None,
            id="CA aged and the leaf gone: a leaf at once from the old CA, then the new CA",
        ),
        pytest.param(
            seen(ca(A, made=-21), ca(B, made=-0.5), webhook=leaf(A, made=-1)),
            [],
            "switch: the new CA is 0s old, overlap 2s",
            id="rotation step 2 (bundle A+B): B just added, leaves stay on A",
        ),
        pytest.param(
            seen(
                ca(A, made=-24),
                ca(B, made=-3),
                webhook=leaf(A, made=-1),
                trusted=frozenset({A}),
            ),
            [],
            "switch: the new CA is not trusted everywhere yet",
            id="rotation step 2: a caBundle still lacks B, leaves stay on A",
        ),
        pytest.param(
            seen(
                ca(A, made=-24),
                ca(B, made=-3),
                webhook=leaf(A, made=-1),
                trusted=frozenset({A, B}),
            ),
            [IssueLeaf("webhook", "switch-ca")],
            "drop: the last leaf was issued 0s ago, overlap 2s",
            id="rotation step 2: B trusted everywhere for the overlap, leaves switch to B",
        ),
        pytest.param(
            seen(ca(A, made=-25), ca(B, made=-4), webhook=leaf(B, made=-1)),
            [],
            "drop: the last leaf was issued 1s ago, overlap 2s",
            id="rotation step 3: leaves from B for 1 s, A stays for the replicas catching up",
        ),
        pytest.param(
            seen(ca(A, made=-26), ca(B, made=-5), webhook=leaf(B, made=-3)),
            [DropOldCas("overlap-passed")],
            None,
            id="rotation step 3: leaves from B for the overlap, A leaves the bundle",
        ),
        pytest.param(
            seen(ca(A, made=-31), ca(B, made=-5), webhook=leaf(B, made=-0.5)),
            [DropOldCas("expired")],
            None,
            id="old CA expired: dropped at once, it trusts nothing any more",
        ),
        pytest.param(
            seen(ca(A, made=-31), ca(B, made=-5), webhook=leaf(A, made=-25, life=40)),
            [IssueLeaf("webhook", "ca-not-in-force"), DropOldCas("expired")],
            None,
            id="old CA expired under a leaf not switched yet: switch and drop at once",
        ),
        pytest.param(
            seen(ca(A, made=-31), webhook=leaf(A, made=-31, life=40)),
            [AddCa("ca-expired"), IssueLeaf("webhook", "new-ca"), DropOldCas("replaced")],
            None,
            id="the only CA expired (cluster off for a year): replace everything in one write",
        ),
        pytest.param(
            seen(ca(A, made=-1), key=None, webhook=leaf(A, made=-1)),
            [AddCa("no-ca-key")],
            None,
            id="a Secret from before ca.key was kept: rotate to a CA whose key we hold",
        ),
        pytest.param(
            seen(ca(A, made=-1), webhook=leaf(A, made=+60)),
            [IssueLeaf("webhook", "not-yet-valid")],
            None,
            id="clock skew: the leaf's notBefore is in the future, a backdated one replaces it",
        ),
        pytest.param(
            seen(ca(A, made=+60), webhook=leaf(A, made=+60)),
            [AddCa("ca-not-yet-valid"), IssueLeaf("webhook", "new-ca"), DropOldCas("replaced")],
            None,
            id="clock skew beyond the backdate: CA and leaf not valid yet here, replaced",
        ),
        pytest.param(
            seen(ca(A, made=-1), webhook=leaf(None, made=-1)),
            [IssueLeaf("webhook", "another-ca")],
            None,
            id="a leaf no CA of the bundle signed: reissued",
        ),
        pytest.param(
            seen(ca(A, made=-1), webhook="unreadable"),
            [IssueLeaf("webhook", "unreadable")],
            None,
            id="garbage in tls.crt: reissued",
        ),
    ],
)
def test_the_next_step(observed: Observed, expected: list[object], waiting: str | None) -> None:
    assert plan(observed, now=NOW, policy=POLICY) == Plan(tuple(expected), waiting)  # type: ignore[arg-type]


def test_mesh_components_switch_together_and_a_missing_one_is_issued_at_once() -> None:
    observed = Observed(
        (ca(A, made=-24), ca(B, made=-0.5)),
        B,
        {"placement": leaf(A, made=-1), "rollout": "missing", "budget": leaf(B, made=-0.5)},
    )
    assert plan(observed, now=NOW, policy=POLICY) == Plan(
        (IssueLeaf("rollout", "missing"),), "switch: the new CA is 0s old, overlap 2s"
    )


# ---- PEM: real certificates ------------------------------------------------------------------

LONG = datetime.timedelta(hours=1)
REAL = Policy(overlap=datetime.timedelta(minutes=10))


def issue(name: str, signing: certs.CertPair) -> certs.CertPair:
    return certs.issue_serving_cert(ca=signing, hosts=[name], validity=LONG)


def new_ca() -> certs.CertPair:
    return certs.generate_ca(common_name="test-ca", validity=LONG * 3)


@pytest.mark.parametrize(
    ("ca_crt", "ca_key", "tls", "expected"),
    [
        pytest.param(
            b"garbage",
            b"junk",
            (b"-----BEGIN CERTIFICATE-----\nxx", b"yy"),
            [AddCa("no-ca"), IssueLeaf("webhook", "new-ca")],
            id="garbage PEM everywhere: read as nothing, made afresh",
        ),
        pytest.param(
            "good",
            "good",
            (b"garbage", b"garbage"),
            [IssueLeaf("webhook", "unreadable")],
            id="a good CA and garbage in tls.crt/tls.key: the leaf is reissued",
        ),
        pytest.param(
            "good",
            "good",
            "swapped key",
            [IssueLeaf("webhook", "unreadable")],
            id="tls.key of another certificate: reissued",
        ),
        pytest.param("good", "good", "good", [], id="a good CA, key and leaf: nothing"),
    ],
)
def test_reading_pem(
    ca_crt: bytes | str, ca_key: bytes | str, tls: tuple[bytes, bytes] | str, expected: list[object]
) -> None:
    good_ca = new_ca()
    good_leaf = issue("webhook", good_ca)
    pair = (
        {
            "good": good_leaf,
            "swapped key": certs.CertPair(good_leaf.cert_pem, new_ca().key_pem),
        }.get(tls)
        if isinstance(tls, str)
        else certs.CertPair(*tls)
    )
    pki = Pki(
        cas=split_bundle(good_ca.cert_pem if ca_crt == "good" else ca_crt),  # type: ignore[arg-type]
        ca_key=good_ca.key_pem if ca_key == "good" else ca_key,  # type: ignore[arg-type]
        leaves={"webhook": pair},
    )
    assert plan(read_pki(pki), now=datetime.datetime.now(datetime.UTC), policy=REAL).actions == (
        tuple(expected)
    )


def test_a_rotation_in_pem_keeps_one_key_and_names_each_leafs_issuer() -> None:
    start = apply_plan(
        Pki((), None, {"webhook": None}),
        Plan((AddCa("no-ca"), IssueLeaf("webhook", "new-ca"))),
        new_ca=new_ca,
        issue=issue,
    )
    added = apply_plan(start, Plan((AddCa("aged"),)), new_ca=new_ca, issue=issue)
    old_id, new_id = (ca_id(pem) for pem in added.cas)
    observed = read_pki(added, trusted_everywhere=bundle_ids(added.bundle_pem))
    assert [c.id for c in observed.bundle] == [old_id, new_id]
    assert observed.key_of == new_id  # only the newest CA's key is kept
    assert observed.leaves["webhook"] == Leaf(old_id, observed.leaves["webhook"].validity)  # type: ignore[union-attr]
    assert observed.trusted_everywhere == {old_id, new_id}

    switched = apply_plan(
        added, Plan((IssueLeaf("webhook", "switch-ca"),)), new_ca=new_ca, issue=issue
    )
    assert read_pki(switched).leaves["webhook"].issuer == new_id  # type: ignore[union-attr]
    dropped = apply_plan(
        switched, Plan((DropOldCas("overlap-passed"),)), new_ca=new_ca, issue=issue
    )
    assert bundle_ids(dropped.bundle_pem) == {new_id}
    assert dropped.signing.key_pem == added.ca_key


def test_a_leaf_never_outlives_its_ca() -> None:
    short_ca = certs.generate_ca(common_name="short", validity=datetime.timedelta(seconds=30))
    pair = certs.issue_serving_cert(ca=short_ca, hosts=[], validity=datetime.timedelta(days=1))
    assert certs.not_after(pair.cert_pem) == certs.not_after(short_ca.cert_pem)
