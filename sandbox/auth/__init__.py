"""What a cluster enforces about callers: ServiceAccount tokens, TokenReview, RBAC.

    jwt         ES256 compact JWTs (sign, verify, JWK)
    tokens      TokenAuthority: issues ServiceAccount tokens, authenticates bearer tokens
    attributes  UserInfo, request Attributes (kube's RequestInfo), the 401/403 Status bodies
    rbac        compiled rules, the subject index, the authorizer, aggregation, escalation
    bootstrap   the default ClusterRoles/Bindings of a fresh cluster
    service     Auth: what the HTTP shell asks, and the token/review endpoints

``build_auth(store, static_tokens)`` wires an ``Auth`` to a store: it reads RBAC objects and
ServiceAccounts from it, hears every change (caches are dropped on RBAC writes, ClusterRole
aggregation runs on ClusterRole writes) and writes aggregated rules back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sandbox.auth.bootstrap import bootstrap_objects
from sandbox.auth.jwt import SigningKey
from sandbox.auth.service import Auth
from sandbox.auth.tokens import TokenAuthority
from sandbox.store import Event, Store

__all__ = ["Auth", "build_auth", "install_bootstrap_policy"]


def build_auth(
    store: Store,
    static_tokens: dict[str, dict[str, Any]],
    *,
    key: SigningKey | None = None,
    clock: Callable[[], float] = time.time,
) -> Auth:
    def write(key: tuple[str, str], obj: dict[str, Any]) -> None:
        rt = store.registry.get(*key)
        assert rt is not None
        store.put(rt, obj)

    tokens = TokenAuthority(get=store.get, static=static_tokens, key=key, clock=clock)
    auth = Auth(
        tokens=tokens,
        get=store.get,
        objects=lambda k: store.iter_objects(k, None),
        write=write,
    )

    def listener(ev: Event) -> None:
        auth.on_change(ev.key)

    store.listeners.append(listener)
    return auth


def install_bootstrap_policy(store: Store) -> None:
    """Store the default ClusterRoles and ClusterRoleBindings that are not there yet."""
    for doc in bootstrap_objects():
        group, _, _ = doc["apiVersion"].rpartition("/")
        rt = store.registry.by_kind(group, doc["kind"])
        assert rt is not None
        if store.get(rt.key, "", doc["metadata"]["name"]) is None:
            store.stamp_new(doc, generation=False)
            store.put(rt, doc)
