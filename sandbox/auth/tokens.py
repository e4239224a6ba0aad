"""Bearer tokens: the static ones, and the ServiceAccount tokens the sandbox issues.

``TokenAuthority.authenticate(token, audiences)`` is kube-apiserver's token authenticator
chain as the sandbox runs it:

- a **static token** (the sandbox's admin token, ``Sandbox.add_token``) names its user
  directly. Static tokens are audience-agnostic: they authenticate only for the API server's
  own audiences (kube's ``WrapAudienceAgnosticToken``).
- a **ServiceAccount token** is an ES256 JWT signed by the sandbox's key, with kube's claims
  (``iss``, ``sub`` ``system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``, ``iat``,
  ``nbf``, ``jti`` and ``kubernetes.io`` naming the namespace, the ServiceAccount and its
  uid, and the Pod/Secret/Node it is bound to). It authenticates when the signature holds,
  one of its audiences is one of the requested ones (the API server's, unless a
  TokenReview names others), it has not expired (60 s of leeway, as kube's
  ``jwt.DefaultLeeway``), and the ServiceAccount (and the bound object) still exists with
  the uid in the token. Its user is the ServiceAccount with the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``.

A failure of a token this issuer signed carries kube's message, e.g.
``[invalid bearer token, service account token has expired]``; API requests show only
``401 Unauthorized``, TokenReview shows the message in ``status.error``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.auth.attributes import UserInfo
from sandbox.auth.jwt import InvalidToken, SigningKey, unverified_claims
from sandbox.auth.rbac import sa_groups, sa_username

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE
LEEWAY_SECONDS = 60
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
DEFAULT_EXPIRATION_SECONDS = 3600
_VERIFIED_MAX = 8192

SA_KEY = ("", "serviceaccounts")
# boundObjectRef kinds a token may be bound to, and where they are stored.
BOUND_KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("", "pods"),
    "Secret": ("", "secrets"),
    "Node": ("", "nodes"),
}
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

# (type key, namespace, name) -> the stored object or None
ObjectGetter = Callable[[tuple[str, str], str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A token that authenticated: who, for which audiences, and whether RBAC applies."""

    user: UserInfo
    audiences: tuple[str, ...]
    rbac: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """A token that did not authenticate; ``error`` is empty when no authenticator knew it."""

    error: str = ""


def _go_quote_list(items: Iterable[str]) -> str:
    return "[" + " ".join(f'"{s}"' for s in items) + "]"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


class TokenAuthority:
    """Issues ServiceAccount tokens and authenticates every bearer token."""

    def __init__(
        self,
        *,
        get: ObjectGetter,
        static: dict[str, dict[str, Any]],
        key: SigningKey | None = None,
        issuer: str = ISSUER,
        api_audiences: Sequence[str] = (API_AUDIENCE,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._get = get
        # token -> userInfo dict; shared with the caller, who may add tokens later
        self.static = static
        # static tokens whose user RBAC authorizes (the rest are unrestricted, as before)
        self.restricted_static: set[str] = set()
        self.key = key or SigningKey.generate()
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences)
        self.clock = clock
        self._verified: dict[str, dict[str, Any]] = {}

    # --- issuing ----------------------------------------------------------------------

    def issue(
        self,
        *,
        service_account: Mapping[str, Any],
        audiences: Sequence[str] = (),
        expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
        bound: Mapping[str, Any] | None = None,
        bound_kind: str = "",
        now: float | None = None,
    ) -> tuple[str, int]:
        """A signed token for ``service_account`` and its expiry (unix seconds).

        ``bound`` is the object of kind ``bound_kind`` the token is bound to (a Pod's
        binding also names the Pod's node, as kube ≥ 1.30 does).
        """
        meta = _meta(service_account)
        ns = str(meta.get("namespace") or "")
        name = str(meta.get("name") or "")
        issued = int(self.clock() if now is None else now)
        exp = issued + int(expiration_seconds)
        private: dict[str, Any] = {
            "namespace": ns,
            "serviceaccount": {"name": name, "uid": str(meta.get("uid") or "")},
        }
        if bound is not None and bound_kind:
            bmeta = _meta(bound)
            ref = {"name": str(bmeta.get("name") or ""), "uid": str(bmeta.get("uid") or "")}
            private[bound_kind.lower()] = ref
            node_name = str((bound.get("spec") or {}).get("nodeName") or "")
            if bound_kind == "Pod" and node_name:
                node = self._get(BOUND_KINDS["Node"], "", node_name)
                if node is not None:
                    private["node"] = {"name": node_name, "uid": str(_meta(node).get("uid") or "")}
        claims = {
            "aud": list(audiences or self.api_audiences),
            "exp": exp,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": sa_username(ns, name),
        }
        return self.key.sign(claims), exp

    # --- authenticating ---------------------------------------------------------------

    def authenticate(
        self, token: str, audiences: Sequence[str] | None = None
    ) -> Authenticated | Rejected:
        """Who ``token`` is for ``audiences`` (default: the API server's own)."""
        wanted = tuple(audiences) if audiences else self.api_audiences
        user = self.static.get(token)
        if user is not None:
            common = tuple(a for a in self.api_audiences if a in wanted)
            if not common:
                return Rejected()
            return Authenticated(
                UserInfo.from_json(user), common, rbac=token in self.restricted_static
            )
        return self._service_account(token, wanted)

    def _claims(self, token: str) -> dict[str, Any] | Rejected:
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        peek = unverified_claims(token)
        if peek is None or peek.get("iss") != self.issuer:
            return Rejected()  # not a token of this issuer: no opinion
        try:
            claims = self.key.verify(token)
        except InvalidToken:
            return Rejected(
                "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"
            )
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _service_account(self, token: str, wanted: tuple[str, ...]) -> Authenticated | Rejected:
        claims = self._claims(token)
        if isinstance(claims, Rejected):
            return claims
        aud = claims.get("aud")
        token_auds = tuple(str(a) for a in (aud if isinstance(aud, list) else [aud] if aud else []))
        if not token_auds:
            token_auds = self.api_audiences
        common = tuple(a for a in token_auds if a in wanted)
        if not common:
            return _invalid(
                f"token audiences {_go_quote_list(token_auds)} is invalid for the target "
                f"audiences {_go_quote_list(wanted)}"
            )
        now = self.clock()
        try:
            exp = float(claims.get("exp", 0))
            nbf = float(claims.get("nbf", 0))
            iat = float(claims.get("iat", 0))
        except (TypeError, ValueError):
            return _invalid("service account token is malformed")
        if now > exp + LEEWAY_SECONDS:
            return _invalid("service account token has expired")
        if now + LEEWAY_SECONDS < nbf:
            return _invalid("service account token is not valid yet")
        if now + LEEWAY_SECONDS < iat:
            return _invalid("service account token is issued in the future")
        private = claims.get("kubernetes.io")
        if not isinstance(private, Mapping):
            return _invalid("service account token claims are malformed")
        ns = str(private.get("namespace") or "")
        sa_ref = private.get("serviceaccount") or {}
        sa_name = str(sa_ref.get("name") or "")
        sa = self._get(SA_KEY, ns, sa_name)
        if sa is None:
            return _invalid(f'serviceaccounts "{sa_name}" not found')
        if _meta(sa).get("deletionTimestamp"):
            return _invalid("service account token has been invalidated")
        sa_uid = str(_meta(sa).get("uid") or "")
        if sa_uid != sa_ref.get("uid"):
            return _invalid(
                f"service account UID ({sa_uid}) does not match claim ({sa_ref.get('uid')})"
            )
        extra: dict[str, tuple[str, ...]] = {}
        for kind, type_key in BOUND_KINDS.items():
            ref = private.get(kind.lower())
            if not isinstance(ref, Mapping) or kind == "Node" and "pod" in private:
                continue
            obj = self._get(type_key, ns if kind != "Node" else "", str(ref.get("name") or ""))
            if obj is None or _meta(obj).get("deletionTimestamp"):
                return _invalid(f'{type_key[1]} "{ref.get("name")}" not found')
            uid = str(_meta(obj).get("uid") or "")
            if uid != ref.get("uid"):
                return _invalid(
                    f"{kind.lower()} UID ({uid}) does not match claim ({ref.get('uid')})"
                )
            if kind == "Pod":
                extra["authentication.kubernetes.io/pod-name"] = (str(ref.get("name")),)
                extra["authentication.kubernetes.io/pod-uid"] = (uid,)
        node = private.get("node")
        if isinstance(node, Mapping) and "pod" in private:
            extra["authentication.kubernetes.io/node-name"] = (str(node.get("name") or ""),)
            extra["authentication.kubernetes.io/node-uid"] = (str(node.get("uid") or ""),)
        if claims.get("jti"):
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={claims['jti']}",)
        user = UserInfo(
            username=sa_username(ns, sa_name),
            uid=sa_uid,
            groups=sa_groups(ns),
            extra=dict(sorted(extra.items())),
        )
        return Authenticated(user, common, rbac=True)


def _invalid(why: str) -> Rejected:
    return Rejected(f"[invalid bearer token, {why}]")
