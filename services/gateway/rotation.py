"""Certificate rotation as a plan: what to do next to a CA trust bundle and the leaves it signs.

Pure; no I/O. ``plan`` decides; ``read_pki`` turns PEM into the plain data it decides on;
``apply_plan`` makes the new PEM (given functions that make keys). The plans are carried out
by ``services.gateway.certs.WebhookCerts`` (the webhook's serving certificate, one leaf) and
``services.gateway.mesh_certs.MeshCertIssuer`` (the mesh CA, one leaf per component); both
write their Secrets with the resourceVersion read as precondition, one step per write.

A CA rotation, one step per row; each step starts only once the one before is in use::

    bundle   leaves from  step            when
    [A]      A            issue-leaf      a leaf is past 2/3 of its life (or broken: now)
    [A]      A            add-ca B        A is past 2/3 of its life; ca.key becomes B's
    [A, B]   A            switch to B     every relying party trusts B (the caBundles, every
                                          component's ca.crt) and ``overlap`` has passed
                                          since B was made
    [A, B]   B            drop-old-ca     ``overlap`` has passed since the last leaf was
                                          issued (every replica serves a leaf from B by then)
    [B]      B

So a relying party (the API server, a mesh peer) is never shown a leaf from a CA it does not
trust yet: B is trusted everywhere before any leaf comes from it, and A stays trusted until
every leaf in use comes from B. The times are read from the certificates themselves (a CA or
a leaf was made at its notBefore + ``backdate``): the Secrets carry no other state.

When there is nothing to keep (no CA, or none of the leaves works: a fresh install, a CA that
expired while the cluster was off), the plan replaces everything at once: new CA, every leaf,
and the old CAs dropped. A CA whose key is gone (a Secret written before the key was kept) or
not valid yet by this clock is rotated as above, keeping what still works meanwhile.

Worked example (CA 30 s, leaves 9 s, overlap 2 s): a leaf is renewed 6 s after it was issued;
the CA rotation starts 20 s after the CA was made; leaves switch 2 s later (once the bundle
is published); the old CA goes 2 s after that.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from services.kit.certs import BACKDATE, CertPair

# ---- what the planner sees -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: datetime.datetime
    not_after: datetime.datetime

    def in_force(self, now: datetime.datetime) -> bool:
        return self.not_before <= now < self.not_after

    def made_at(self, backdate: datetime.timedelta) -> datetime.datetime:
        """When the certificate was issued (its notBefore is set ``backdate`` earlier)."""
        return min(self.not_before + backdate, self.not_after)

    def due(self, now: datetime.datetime, *, fraction: float, backdate: datetime.timedelta) -> bool:
        """Whether ``fraction`` of the lifetime (from issue to notAfter) has passed."""
        made = self.made_at(backdate)
        return now >= made + (self.not_after - made) * fraction


@dataclass(frozen=True, slots=True)
class Ca:
    """A CA certificate in a trust bundle, known by the SHA-256 of its DER (``id``)."""

    id: str
    validity: Validity


@dataclass(frozen=True, slots=True)
class Leaf:
    """A certificate in use; ``issuer`` is the id of the bundle CA that signed it, None when
    none of them did."""

    issuer: str | None
    validity: Validity


Broken = Literal["missing", "unreadable"]


@dataclass(frozen=True, slots=True)
class Observed:
    """What one round saw.

    bundle: the trust bundle (ca.crt), oldest first; empty when missing or unreadable.
    key_of: the id of the CA whose private key is held (ca.key); None: none, or it matches
        no CA of the bundle.
    leaves: every leaf in use, by name (``webhook``; ``placement``, ``rollout``...).
    trusted_everywhere: the ids of the CAs every relying party trusts now (the webhook
        configurations' caBundles; every component Secret's ca.crt); None when not known:
        then time alone opens the switch.
    """

    bundle: tuple[Ca, ...]
    key_of: str | None
    leaves: Mapping[str, Leaf | Broken]
    trusted_everywhere: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """When to act. ``overlap`` must be longer than it takes every replica to take a change
    into use (its check period, plus the kubelet's Secret refresh for mounted Secrets)."""

    overlap: datetime.timedelta
    leaf_renew_at: float = 2 / 3
    ca_rotate_at: float = 2 / 3
    backdate: datetime.timedelta = BACKDATE


# ---- what it decides -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCa:
    """Make a new CA, append it to the bundle; its key replaces ca.key."""

    why: str


@dataclass(frozen=True, slots=True)
class IssueLeaf:
    """Issue leaf ``name`` from the newest CA (after the actions before it in the plan).
    ``why`` "switch-ca" is the rotation's switch; the others say what was wrong or old."""

    name: str
    why: str


@dataclass(frozen=True, slots=True)
class DropOldCas:
    """Keep only the newest CA in the bundle."""

    why: str


Action = AddCa | IssueLeaf | DropOldCas


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions of one write, in order (empty: nothing to do), and ``waiting``: the
    rotation step held back and why (for the log), None when none is."""

    actions: tuple[Action, ...] = ()
    waiting: str | None = None


def _leaf_trouble(leaf: Leaf | Broken, cas: Mapping[str, Ca], now: datetime.datetime) -> str | None:
    """Why a leaf does not work now (relying parties would refuse it), or None."""
    if leaf == "missing" or leaf == "unreadable":
        return leaf
    if leaf.issuer is None or leaf.issuer not in cas:
        return "another-ca"
    if now < leaf.validity.not_before:
        return "not-yet-valid"
    if now >= leaf.validity.not_after:
        return "expired"
    if not cas[leaf.issuer].validity.in_force(now):
        return "ca-not-in-force"
    return None


def _age(span: datetime.timedelta) -> str:
    return f"{span.total_seconds():.0f}s"


def plan(seen: Observed, *, now: datetime.datetime, policy: Policy) -> Plan:
    """The next step for ``seen`` at ``now`` (module docstring). Pure; no I/O.

    Per leaf, from the newest CA: a broken leaf at once (missing, unreadable, from a CA not in
    the bundle, expired, not valid yet by this clock, its CA not in force); one past
    ``leaf_renew_at`` of its life; one from an older CA of the bundle once the switch is open.
    For the bundle: add a CA when the newest is past ``ca_rotate_at`` of its life (or cannot
    issue); drop the older ones once no leaf comes from them and ``overlap`` has passed since
    the last leaf was issued, at once when they have all expired.
    """
    bundle = seen.bundle
    by_id = {ca.id: ca for ca in bundle}
    troubles = {name: _leaf_trouble(leaf, by_id, now) for name, leaf in seen.leaves.items()}
    newest = bundle[-1] if bundle else None

    # 1. Nothing to issue from: no CA, no key for the newest, or the newest not in force.
    if newest is None or seen.key_of != newest.id or not newest.validity.in_force(now):
        if newest is None:
            why = "no-ca"
        elif seen.key_of != newest.id:
            why = "no-ca-key"
        elif now < newest.validity.not_before:
            why = "ca-not-yet-valid"
        else:
            why = "ca-expired"
        if any(t is None for t in troubles.values()):
            # Something works: rotate as usual, keeping it until the switch.
            return Plan((AddCa(why),))
        issue = tuple(IssueLeaf(name, "new-ca") for name in seen.leaves)
        drop = (DropOldCas("replaced"),) if bundle else ()
        return Plan((AddCa(why), *issue, *drop))

    old = bundle[:-1]
    actions: list[Action] = []
    waiting: str | None = None
    on_old = []  # leaves that work, from an older CA of the bundle: they wait for the switch
    for name, leaf in seen.leaves.items():
        trouble = troubles[name]
        if trouble is not None:
            actions.append(IssueLeaf(name, trouble))
        elif isinstance(leaf, Leaf) and leaf.issuer != newest.id:
            on_old.append(name)

    # 2. Mid-rotation: switch the leaves still on an old CA, then drop the old CAs.
    if old:
        switched = False
        if on_old:
            made = newest.validity.made_at(policy.backdate)
            trusted = seen.trusted_everywhere
            if trusted is not None and newest.id not in trusted:
                waiting = "switch: the new CA is not trusted everywhere yet"
            elif now < made + policy.overlap:
                waiting = (
                    f"switch: the new CA is {_age(now - made)} old, overlap {_age(policy.overlap)}"
                )
            else:
                actions += [IssueLeaf(name, "switch-ca") for name in on_old]
                on_old, switched = [], True
        for name, leaf in seen.leaves.items():
            if isinstance(leaf, Leaf) and leaf.issuer == newest.id and troubles[name] is None:
                if _aged(leaf, now, policy):
                    actions.append(IssueLeaf(name, "aged"))
        if all(now >= ca.validity.not_after for ca in old):
            actions.append(DropOldCas("expired"))  # they trust nothing any more
        elif not on_old:
            # Replicas take a switched leaf into use within their check period: wait overlap.
            issued = [
                leaf.validity.made_at(policy.backdate)
                for leaf in seen.leaves.values()
                if isinstance(leaf, Leaf) and leaf.issuer == newest.id
            ]
            last = now if switched else max(issued, default=now - policy.overlap)
            if now >= last + policy.overlap:
                actions.append(DropOldCas("overlap-passed"))
            else:
                waiting = (
                    f"drop: the last leaf was issued {_age(now - last)} ago, "
                    f"overlap {_age(policy.overlap)}"
                )
        return Plan(tuple(actions), waiting)

    # 3. One CA: renew aged leaves, or start a rotation (aged leaves then wait for the switch).
    if newest.validity.due(now, fraction=policy.ca_rotate_at, backdate=policy.backdate):
        actions.append(AddCa("aged"))
        return Plan(tuple(actions))
    for name, leaf in seen.leaves.items():
        if isinstance(leaf, Leaf) and troubles[name] is None and _aged(leaf, now, policy):
            actions.append(IssueLeaf(name, "aged"))
    return Plan(tuple(actions))


def _aged(leaf: Leaf, now: datetime.datetime, policy: Policy) -> bool:
    return leaf.validity.due(now, fraction=policy.leaf_renew_at, backdate=policy.backdate)


# ---- PEM in, PEM out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pki:
    """The PEM a plan works on: the trust bundle (each CA, oldest first), the newest CA's
    key, and each leaf (None: missing; a pair that does not parse is kept as it is)."""

    cas: tuple[bytes, ...]
    ca_key: bytes | None
    leaves: Mapping[str, CertPair | None]

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(self.cas)

    @property
    def signing(self) -> CertPair:
        """The newest CA and its key: what leaves are issued from."""
        if not self.cas or self.ca_key is None:
            raise ValueError("no CA to issue from")
        return CertPair(self.cas[-1], self.ca_key)


def split_bundle(pem: bytes | None) -> tuple[bytes, ...]:
    """Each certificate of a PEM bundle as PEM; empty when ``pem`` holds none or garbage."""
    if not pem:
        return ()
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return ()
    return tuple(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def ca_id(cert_pem: bytes) -> str:
    """A CA's id: the first 16 hex digits of the SHA-256 of its DER."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]


def bundle_ids(pem: bytes | None) -> frozenset[str]:
    """The ids of the CAs in a PEM bundle (a caBundle, a ca.crt); empty for garbage."""
    return frozenset(ca_id(c) for c in split_bundle(pem))


def _validity(cert: x509.Certificate) -> Validity:
    return Validity(cert.not_valid_before_utc, cert.not_valid_after_utc)


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def read_pki(pki: Pki, *, trusted_everywhere: frozenset[str] | None = None) -> Observed:
    """What ``plan`` needs to know of ``pki``. Pure; garbage reads as missing or unreadable."""
    loaded = [x509.load_pem_x509_certificate(pem) for pem in pki.cas]
    ids = [ca_id(pem) for pem in pki.cas]
    bundle = tuple(Ca(i, _validity(c)) for i, c in zip(ids, loaded, strict=True))
    key_of = None
    if pki.ca_key:
        try:
            public = _spki(serialization.load_pem_private_key(pki.ca_key, None).public_key())
        except (ValueError, TypeError):
            public = b""
        for i, cert in zip(ids, loaded, strict=True):
            if _spki(cert.public_key()) == public:
                key_of = i
    leaves: dict[str, Leaf | Broken] = {}
    for name, pair in pki.leaves.items():
        if pair is None:
            leaves[name] = "missing"
            continue
        try:
            cert = x509.load_pem_x509_certificate(pair.cert_pem)
            key = serialization.load_pem_private_key(pair.key_pem, None)
        except (ValueError, TypeError):
            leaves[name] = "unreadable"
            continue
        if _spki(cert.public_key()) != _spki(key.public_key()):
            leaves[name] = "unreadable"  # a certificate with another's key cannot serve
            continue
        issuer = None
        for i, ca in zip(ids, loaded, strict=True):
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = i
        leaves[name] = Leaf(issuer, _validity(cert))
    return Observed(bundle, key_of, leaves, trusted_everywhere)


def apply_plan(
    pki: Pki,
    steps: Plan,
    *,
    new_ca: Callable[[], CertPair],
    issue: Callable[[str, CertPair], CertPair],
) -> Pki:
    """``pki`` after ``steps``, in order: ``new_ca()`` makes a CA, ``issue(name, ca)`` a leaf
    from the newest CA. Pure but for the keys those two make."""
    for action in steps.actions:
        if isinstance(action, AddCa):
            ca = new_ca()
            pki = replace(pki, cas=(*pki.cas, ca.cert_pem), ca_key=ca.key_pem)
        elif isinstance(action, IssueLeaf):
            pair = issue(action.name, pki.signing)
            pki = replace(pki, leaves={**pki.leaves, action.name: pair})
        else:
            pki = replace(pki, cas=pki.cas[-1:])
    return pki


def describe(steps: Plan) -> list[str]:
    """The actions as short words for logs and metrics: ``add-ca``, ``issue-leaf``..."""
    return [step_name(a) for a in steps.actions]


def step_name(action: Action) -> str:
    if isinstance(action, AddCa):
        return "add-ca"
    if isinstance(action, IssueLeaf):
        return "switch-leaf" if action.why == "switch-ca" else "issue-leaf"
    return "drop-old-ca"
