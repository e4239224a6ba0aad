"""Mutual TLS between the mesh's components: certificates, their rotation, credentials.

Every mesh connection (gateway ↔ service replicas) is TLS with a certificate at both ends,
issued by the mesh CA and naming one component (``services.kit.identity``)::

    URI SAN  spiffe://kruise-mesh/<component>     who the peer is (read by servicers)
    DNS SAN  <component>.mesh.kruise-mesh         what a client checks the server against

A client dials an address (a pod IP, a Service name) but verifies the server by the name of
the component it expects (``grpc.ssl_target_name_override``): the gateway talks only to real
rollout replicas when it routes to one, and a replica only to the real gateway.

Where a component's certificate comes from (``Source``):

* ``FileSource``: a directory holding ``tls.crt``, ``tls.key`` and ``ca.crt``, the layout of
  a cert-manager Certificate's Secret, re-read when it changes (cert-manager renews it);
* ``CaSource``: the mesh CA itself (a gateway given ``--mesh-ca-dir``, and the local mesh's
  launcher), issuing a certificate that is renewed at half its lifetime. In a cluster the
  gateway instead follows the certificate its issuer keeps in the CA Secret
  (``services.gateway.mesh_certs.SecretSource``), so it rotates with the CA.

Rotation without a restart: servers take each new handshake's certificate from a fetcher
(``grpc.dynamic_ssl_server_credentials``); client channels are ``MeshChannel``s, which build
a new underlying channel after a rotation and send new calls there, while calls and streams
already open finish on the old one (a certificate is checked at the handshake only, so they
are unaffected; the server's connection age limit ends the old connections within minutes).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from prometheus_client import Counter, Gauge

from services.kit import identity, x509time
from services.kit.tasks import stop_task

if TYPE_CHECKING:  # issuing (CaSource) imports it when it runs: replicas never load cryptography
    from services.kit import certs

log = logging.getLogger(__name__)

DNS_SUFFIX = "mesh.kruise-mesh"
CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
# How long a retired client channel stays open for the calls still on it.
RETIRE_AFTER_S = 15 * 60.0

ROTATIONS = Counter(
    "kruise_mesh_tls_rotations_total", "Mesh certificates taken into use", ["component"]
)
EXPIRY = Gauge(
    "kruise_mesh_tls_cert_expiry_seconds",
    "Unix time the component's mesh certificate expires",
    ["component"],
)
REFUSED = Counter(
    "kruise_mesh_tls_peer_refused_total",
    "Calls refused because the peer's mesh identity may not call the method",
    ["method", "peer"],
)


def peer_name(component: str) -> str:
    """The DNS name a component's certificate carries and its peers verify it by:
    ``rollout.mesh.kruise-mesh``."""
    return f"{component}.{DNS_SUFFIX}"


@dataclass(frozen=True)
class Material:
    """A certificate (chain), its key and the CA bundle it is checked against; PEM."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    @property
    def expires(self) -> datetime.datetime:
        return x509time.not_after(self.cert_pem)


class Source(Protocol):
    async def fetch(self) -> Material: ...

    def refresh_in(self, material: Material) -> float:
        """Seconds until the source should be asked again."""
        ...


@dataclass
class CaSource:
    """Certificates issued on the spot by the mesh CA, renewed at half their lifetime."""

    ca: certs.CertPair
    component: str
    validity: datetime.timedelta = field(default_factory=lambda: mesh_cert_validity())

    async def fetch(self) -> Material:
        from services.kit import certs  # only the gateway and the CLI issue (see the import above)

        pair = certs.issue_mesh_cert(
            ca=self.ca,
            uri=identity.spiffe_id(self.component),
            dns_names=[peer_name(self.component)],
            validity=self.validity,
        )
        return Material(pair.cert_pem, pair.key_pem, self.ca.cert_pem)

    def refresh_in(self, material: Material) -> float:
        return max(1.0, self.validity.total_seconds() / 2)


# How often a FileSource looks for a renewed certificate (tests shorten it).
POLL_ENV = "KRUISE_MESH_TLS_POLL_S"
# The lifetime of the certificates the gateway issues itself (tests shorten it).
VALIDITY_ENV = "KRUISE_MESH_CERT_VALIDITY_S"


def poll_seconds() -> float:
    """How often a follower of a certificate looks for a new one (``KRUISE_MESH_TLS_POLL_S``,
    10 s): ``FileSource``, and the gateway following its Secret."""
    return _env_seconds(POLL_ENV, 10.0)


def mesh_cert_validity() -> datetime.timedelta:
    """The lifetime of the mesh certificates the gateway issues (``KRUISE_MESH_CERT_VALIDITY_S``,
    24 h)."""
    return datetime.timedelta(seconds=_env_seconds(VALIDITY_ENV, 86400.0))


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


@dataclass
class FileSource:
    """``tls.crt``, ``tls.key`` and ``ca.crt`` in ``directory`` (a mounted cert-manager
    Secret, or files the local launcher writes), re-read every ``poll_s``."""

    directory: Path
    poll_s: float = field(default_factory=poll_seconds)

    async def fetch(self) -> Material:
        return await asyncio.to_thread(self._read_settled)

    def _read_settled(self) -> Material:
        """The three files as one version: read until two reads in a row agree. The kubelet
        swaps a Secret's files at once (a symlink), but three reads can straddle the swap
        and pair a new certificate with the old key."""
        files = [self.directory / name for name in (CERT_FILE, KEY_FILE, CA_FILE)]
        last = None
        for _ in range(5):
            cert, key, ca = (f.read_bytes() for f in files)
            read = Material(cert, key, ca)
            if read == last:
                return read
            last = read
        raise RuntimeError(f"the certificate files in {self.directory} keep changing")

    def refresh_in(self, material: Material) -> float:
        return self.poll_s


def write_material(directory: Path, material: Material) -> None:
    """Write ``material`` as a FileSource reads it (the key first, each file replaced whole)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data, mode in (
        (KEY_FILE, material.key_pem, 0o600),
        (CERT_FILE, material.cert_pem, 0o644),
        (CA_FILE, material.ca_pem, 0o644),
    ):
        staged = directory / f".{name}.tmp"
        staged.write_bytes(data)
        staged.chmod(mode)
        staged.replace(directory / name)


class MeshTls:
    """A component's current mesh certificate, kept fresh from its source, as credentials."""

    def __init__(self, component: str, source: Source) -> None:
        identity.spiffe_id(component)  # an unknown component fails here
        self.component = component
        self.source = source
        self.generation = 0
        self._material: Material | None = None
        self._served_generation = -1
        self._task: asyncio.Task[None] | None = None

    @property
    def material(self) -> Material:
        if self._material is None:
            raise RuntimeError("MeshTls.start() first: no certificate yet")
        return self._material

    async def start(self) -> None:
        """Load the first certificate (an error here is a start-up error), then keep it fresh."""
        self._take(await self.source.fetch())
        self._task = asyncio.create_task(self._refresh(), name=f"mesh tls {self.component}")

    async def stop(self) -> None:
        await stop_task(self._task)

    def _take(self, material: Material) -> None:
        if self._material == material:
            return
        self._material = material
        self.generation += 1
        ROTATIONS.labels(self.component).inc()
        EXPIRY.labels(self.component).set(material.expires.timestamp())
        log.info(
            "mesh certificate in use",
            extra={"component": self.component, "expires": material.expires.isoformat()},
        )

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.source.refresh_in(self.material))
            try:
                self._take(await self.source.fetch())
            except Exception:  # keep the current one; it is still valid for a while
                log.exception(
                    "could not renew the mesh certificate", extra={"component": self.component}
                )

    # ---- credentials --------------------------------------------------------------------
    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        material = self.material
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, material.cert_pem)], root_certificates=material.ca_pem
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials requiring a client certificate from the mesh CA; each new handshake
        uses the certificate current at that moment."""

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if self._served_generation == self.generation:
                return None  # unchanged
            self._served_generation = self.generation
            return self._server_config()

        self._served_generation = self.generation
        # grpc takes None from the fetcher as "keep the current one" (its stubs say otherwise).
        return grpc.dynamic_ssl_server_credentials(
            self._server_config(),
            fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        material = self.material
        return grpc.ssl_channel_credentials(
            root_certificates=material.ca_pem,
            private_key=material.key_pem,
            certificate_chain=material.cert_pem,
        )


class MeshChannel:
    """A ``grpc.aio.Channel`` stand-in to a mesh peer whose calls always use the current
    certificate: stubs made on it keep working across rotations.

    ``peer`` is the component the server must prove to be.
    """

    def __init__(
        self,
        target: str,
        tls: MeshTls,
        *,
        peer: str,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.tls = tls
        self.peer = peer
        self.options = [*options, ("grpc.ssl_target_name_override", peer_name(peer))]
        self._channel: grpc.aio.Channel | None = None
        self._generation = -1
        self._retired: list[tuple[float, grpc.aio.Channel]] = []

    def current(self) -> grpc.aio.Channel:
        if self._channel is None or self._generation != self.tls.generation:
            if self._channel is not None:
                self._retire(self._channel)
            self._generation = self.tls.generation
            self._channel = grpc.aio.secure_channel(
                self.target, self.tls.channel_credentials(), options=self.options
            )
        return self._channel

    def _retire(self, channel: grpc.aio.Channel) -> None:
        now = time.monotonic()
        self._retired.append((now, channel))
        due = [c for at, c in self._retired if now - at > RETIRE_AFTER_S]
        self._retired = [(at, c) for at, c in self._retired if now - at <= RETIRE_AFTER_S]
        for old in due:
            asyncio.ensure_future(old.close())

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Lazy(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Lazy(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Lazy(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Lazy(self, "stream_stream", method, args, kwargs)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        channels = [c for _, c in self._retired]
        if self._channel is not None:
            channels.append(self._channel)
        self._retired, self._channel = [], None
        for channel in channels:
            await channel.close(grace)

    async def __aenter__(self) -> MeshChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Lazy:
    """A multicallable resolved on each call against the channel's current connection."""

    def __init__(
        self,
        owner: MeshChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self._bound: tuple[grpc.aio.Channel, Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self.owner.current()
        if self._bound is None or self._bound[0] is not channel:
            factory = getattr(channel, self.kind)
            self._bound = (channel, factory(self.method, *self.args, **self.kwargs))
        return self._bound[1](*args, **kwargs)


# ---- who may call what ------------------------------------------------------------------------
Policy = Mapping[str, frozenset[str]]
"""A full service name (``kruise.common.v1.MeshService``) or a full method name
(``/kruise.budget.v1.BudgetService/AuthorizePodUpdate``) → the components that may call it;
the method's entry wins over its service's, and ``"*"`` stands for every other service."""

OPEN = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})


def allowed(policy: Policy, method: str, component: str | None) -> bool:
    """Whether ``component`` may call ``method`` (``/package.Service/Method``). Pure.

    Health and reflection are open to any mesh peer; a method whose service the policy does
    not name (and no ``"*"``) is closed.
    """
    service = method.lstrip("/").split("/", 1)[0]
    if service in OPEN:
        return True
    who = policy.get(method)
    if who is None:
        who = policy.get(service)
    if who is None:
        who = policy.get("*", frozenset())
    return component is not None and component in who


class PeerPolicy(grpc.aio.ServerInterceptor):
    """Refuses (PERMISSION_DENIED) a call whose peer's mesh identity the policy does not
    allow, before the servicer sees it; counted in ``kruise_mesh_tls_peer_refused_total``."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        policy = self.policy

        def guard(behavior: Any, streaming_response: bool) -> Any:
            async def refuse(context: Any) -> None:
                peer = identity.peer_component(context)
                if not allowed(policy, method, peer):
                    REFUSED.labels(method, peer or "none").inc()
                    log.warning(
                        "refused a mesh call", extra={"method": method, "peer": peer or "none"}
                    )
                    await context.abort(
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"{peer or 'a peer without a mesh identity'} may not call {method}",
                    )

            if streaming_response:

                async def streaming(request: Any, context: Any) -> Any:
                    await refuse(context)
                    async for answer in behavior(request, context):
                        yield answer

                return streaming

            async def unary(request: Any, context: Any) -> Any:
                await refuse(context)
                return await behavior(request, context)

            return unary

        kinds = (
            ("unary_unary", False),
            ("unary_stream", True),
            ("stream_unary", False),
            ("stream_stream", True),
        )
        for attribute, streaming_response in kinds:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                # grpc's handlers are named tuples: replace the one behaviour they carry.
                return handler._replace(**{attribute: guard(behavior, streaming_response)})
        return handler
