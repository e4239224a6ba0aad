"""Who a mesh peer is: its component, read from the certificate it proved over mutual TLS.

Every mesh certificate names one component with a SPIFFE ID URI SAN::

    spiffe://kruise-mesh/gateway      spiffe://kruise-mesh/placement
    spiffe://kruise-mesh/rollout      spiffe://kruise-mesh/budget

gRPC verifies the chain against the mesh CA during the handshake and puts the peer's SPIFFE
ID in the call's auth context (``peer_spiffe_id``); ``peer_component`` reads it back. A call
over plain TCP, or with a certificate naming no component, has no component (None): servicers
refuse it when the mesh runs with TLS.

Pure apart from reading the call's auth context; no I/O.
"""

from __future__ import annotations

from typing import Any

TRUST_DOMAIN = "kruise-mesh"
# ``operator``: the mesh's own tooling (the local launcher, tests) reading replica status.
COMPONENTS = ("gateway", "placement", "rollout", "budget", "operator")
_PREFIX = f"spiffe://{TRUST_DOMAIN}/"


def spiffe_id(component: str) -> str:
    """``spiffe://kruise-mesh/<component>``; ValueError for an unknown component."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown mesh component {component!r}: want one of {COMPONENTS}")
    return _PREFIX + component


def component_of(uri: str) -> str | None:
    """The component a SPIFFE ID names, or None when it is not one of the mesh's."""
    if not uri.startswith(_PREFIX):
        return None
    component = uri[len(_PREFIX) :]
    return component if component in COMPONENTS else None


def peer_component(context: Any) -> str | None:
    """The component the calling peer proved with its certificate (a grpc.aio
    ServicerContext); None over plain TCP or for a certificate that names none."""
    auth = context.auth_context() or {}
    for key in ("peer_spiffe_id", "peer_uri"):
        for value in auth.get(key, ()):
            text = value.decode() if isinstance(value, bytes) else str(value)
            component = component_of(text)
            if component is not None:
                return component
    return None
