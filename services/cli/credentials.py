"""The caller's credentials for the gateway's API ports: a Kubernetes bearer token, and TLS.

The gateway authenticates every call to its API ports (``--api-auth token``) with the
caller's own Kubernetes token (a TokenReview) and authorizes it with a SubjectAccessReview,
so tools call it as they would call the API server::

    creds = ApiCredentials.resolve(token=None, token_file=None, ca_file=None,
                                   kubeconfig=default_kubeconfig())
    channel = creds.channel("kruise-mesh-rollout-api.kruise-mesh.svc:7070")

The gateway takes tokens minted for the rollout API's own audience, ``kruise-mesh-rollout-api``
(its ``--api-audiences``; a token for the API server is refused unless that names
``@api-server``): ``kubectl create token SA --audience kruise-mesh-rollout-api``, or in a pod
a projected ServiceAccount token volume with that audience, mounted at
``/var/run/secrets/kruise-mesh/rollout-api/token`` (read by default) or passed as
``--token-file``. The token, the first of (``resolve_token``):

    1. --token TOKEN
    2. --token-file FILE
    3. $KRUISE_MESH_TOKEN
    4. the projected rollout-API token, /var/run/secrets/kruise-mesh/rollout-api/token
    5. the in-cluster ServiceAccount token, /var/run/secrets/kubernetes.io/serviceaccount/token
       (the API server's audience: taken only by a gateway with ``@api-server``)
    6. the current kubeconfig user's bearer token (``token`` or ``tokenFile``), if it has one
       (likewise)

TLS: the API ports serve the gateway's serving certificate; ``--ca-file`` (else
``$KRUISE_MESH_CA``) is the CA to check it with (the system's roots without one). The token
travels only over TLS: ``--plaintext`` (for a gateway run with ``--api-auth off``, on
loopback) sends none.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

TOKEN_ENV = "KRUISE_MESH_TOKEN"
CA_ENV = "KRUISE_MESH_CA"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# The audience the gateway wants (services.gateway.callers.ROLLOUT_API_AUDIENCE), and where a
# pod mounts a projected ServiceAccount token for it.
ROLLOUT_API_AUDIENCE = "kruise-mesh-rollout-api"
ROLLOUT_API_TOKEN = "/var/run/secrets/kruise-mesh/rollout-api/token"

TOKEN_HELP = (
    "the caller's Kubernetes bearer token, minted for the rollout API's audience "
    f"(kubectl create token SA --audience {ROLLOUT_API_AUDIENCE}); without it, the first "
    f"of: --token-file, ${TOKEN_ENV}, the projected rollout-API token ({ROLLOUT_API_TOKEN}), "
    f"the in-cluster ServiceAccount token ({SERVICE_ACCOUNT_TOKEN}), the current kubeconfig "
    "user's token (these two are for the API server's audience: a gateway takes them only "
    "with --api-audiences ...,@api-server). A refused call (UNAUTHENTICATED, "
    "PERMISSION_DENIED) says which one was used"
)
TOKEN_FILE_HELP = (
    "read the bearer token from FILE, e.g. a projected ServiceAccount token with audience "
    f"{ROLLOUT_API_AUDIENCE} (kubelet refreshes it; it is read at each start)"
)


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and where it came from (said when a call is refused)."""

    value: str
    source: str


def _read(path: str) -> str:
    return Path(path).read_text().strip()


def kubeconfig_token(path: str | None) -> Token | None:
    """The current context's user's bearer token (``token``, else ``tokenFile``) in the
    kubeconfig at ``path``; None when it has none (client certificates, exec plugins)."""
    if not path or not Path(path).is_file():
        return None
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    current = doc.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
    user_name = (contexts.get(current) or {}).get("user")
    users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or []}
    user = users.get(user_name) or {}
    where = f"kubeconfig {path} (user {user_name})"
    if user.get("token"):
        return Token(str(user["token"]).strip(), where)
    if user.get("tokenFile"):
        try:
            return Token(_read(str(user["tokenFile"])), where)
        except OSError:
            return None
    return None


def resolve_token(
    *,
    token: str | None = None,
    token_file: str | None = None,
    env: Mapping[str, str] | None = None,
    service_account_file: str = SERVICE_ACCOUNT_TOKEN,
    rollout_api_file: str = ROLLOUT_API_TOKEN,
    kubeconfig: str | None = None,
) -> Token | None:
    """The caller's token, from the first source that has one (module doc); None if none.

    A ``token_file`` that cannot be read raises OSError (the user named it).
    """
    env = os.environ if env is None else env
    if token:
        return Token(token.strip(), "--token")
    if token_file:
        return Token(_read(token_file), f"--token-file {token_file}")
    if env.get(TOKEN_ENV):
        return Token(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if Path(rollout_api_file).is_file():
        try:
            return Token(
                _read(rollout_api_file), f"the projected rollout-API token {rollout_api_file}"
            )
        except OSError:
            pass
    if Path(service_account_file).is_file():
        try:
            where = f"the ServiceAccount token {service_account_file}"
            return Token(_read(service_account_file), where)
        except OSError:
            pass
    return kubeconfig_token(kubeconfig)


def _with_token(details: grpc.aio.ClientCallDetails, pair: tuple[str, str]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), pair)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer TOKEN`` to every unary call of a channel (grpc.aio files an
    interceptor under one kind only: ``BearerTokenStreams`` does the response streams)."""

    def __init__(self, token: str) -> None:
        self.pair = ("authorization", f"Bearer {token}")

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.pair), request)


class BearerTokenStreams(grpc.aio.UnaryStreamClientInterceptor):
    """``BearerToken`` for the response-streaming calls (WatchRolloutStatus)."""

    def __init__(self, token: str) -> None:
        self.pair = ("authorization", f"Bearer {token}")

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.pair), request)


def bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """The interceptors that put ``token`` on every call of a channel."""
    return [BearerToken(token), BearerTokenStreams(token)]


def token_metadata(token: str) -> tuple[tuple[str, str]]:
    """The call metadata carrying ``token``, for one call: ``metadata=token_metadata(t)``."""
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    """How to call the API ports: TLS (with ``ca_file``, else the system's roots) and a
    token, or ``plaintext`` and no token."""

    token: Token | None = None
    ca_file: str | None = None
    plaintext: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        plaintext: bool = False,
        kubeconfig: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ApiCredentials:
        env = os.environ if env is None else env
        if plaintext:
            return cls(plaintext=True)
        found = resolve_token(token=token, token_file=token_file, env=env, kubeconfig=kubeconfig)
        return cls(token=found, ca_file=ca_file or env.get(CA_ENV) or None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        roots = Path(self.ca_file).read_bytes() if self.ca_file else None
        return grpc.ssl_channel_credentials(root_certificates=roots)

    def channel(self, target: str, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A channel to ``target`` carrying the token on every call (TLS), or plain."""
        if self.plaintext:
            return grpc.aio.insecure_channel(target, options=list(options))
        interceptors = bearer_interceptors(self.token.value) if self.token is not None else None
        return grpc.aio.secure_channel(
            target, self.channel_credentials(), options=list(options), interceptors=interceptors
        )

    def describe(self) -> str:
        """Which token was used, for a refused call's error line."""
        if self.plaintext:
            return "no token was sent (--plaintext)"
        if self.token is None:
            return (
                f"no token found: pass --token, --token-file or ${TOKEN_ENV} with a token for "
                f"the audience {ROLLOUT_API_AUDIENCE} (kubectl create token SA --audience "
                f"{ROLLOUT_API_AUDIENCE})"
            )
        return f"the token from {self.token.source} was used"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--token``, ``--token-file``, ``--ca-file``, ``--plaintext``."""
    group = parser.add_argument_group("caller credentials (the gateway's API ports)")
    group.add_argument("--token", metavar="TOKEN", help=TOKEN_HELP)
    group.add_argument("--token-file", metavar="FILE", help=TOKEN_FILE_HELP)
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        help=f"the CA that signed the gateway's serving certificate (default ${CA_ENV}, else "
        "the system's roots)",
    )
    group.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS and no token: for a gateway run with --api-auth off on loopback",
    )


def from_args(args: argparse.Namespace, *, kubeconfig: str | None) -> ApiCredentials:
    return ApiCredentials.resolve(
        token=args.token,
        token_file=args.token_file,
        ca_file=args.ca_file,
        plaintext=args.plaintext,
        kubeconfig=kubeconfig,
    )


def default_kubeconfig() -> str | None:
    """``$KUBECONFIG`` (its first file), else ``~/.kube/config``, else None."""
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return candidate
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None
