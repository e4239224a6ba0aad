"""gRPC plumbing shared by every process: building servers, running them, channels.

Building is separate from running so tests bind port 0 and keep the server:

    server = await create_server(name="budget", register=[add_servicers], port=0)
    ...                                        # server.port, server.health
    await server.stop(grace=5)                 # or: await run_until_signal(server)

Every server serves ``grpc.health.v1`` and reflection for the names it
registers. Channels carry keepalive settings that match the server's allowance
and a retry policy for the idempotent methods named by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.kit.tls import MeshChannel, MeshTls, PeerPolicy, Policy

log = logging.getLogger(__name__)

# Long-lived streams (events, reviews) ping every 20 s; servers allow pings that often.
KEEPALIVE_CLIENT: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
KEEPALIVE_SERVER: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    # Let DNS-based clients find new replicas: connections are recycled now and then.
    ("grpc.max_connection_age_ms", 10 * 60_000),
    ("grpc.max_connection_age_grace_ms", 60_000),
]
MAX_MESSAGE = 64 * 1024 * 1024

Register = Callable[[grpc.aio.Server], None]


@dataclass
class Server:
    """A built, started gRPC server: its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)

    async def stop(self, grace: float | None = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            asyncio.ensure_future(self.health.set(name, status))


async def create_server(
    *,
    register: Sequence[Register],
    service_names: Iterable[str],
    host: str = "127.0.0.1",
    port: int = 0,
    serving: bool = True,
    tls: MeshTls | None = None,
    policy: Policy | None = None,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> Server:
    """Build and start a server with health and reflection; port 0 picks a free port.

    With ``tls`` the port takes mesh peers only (mutual TLS, certificates from the mesh CA)
    and ``policy`` says which component may call which service (``kit.tls.allowed``).
    Otherwise ``credentials`` (e.g. server-only TLS) and ``interceptors`` (e.g. callers'
    tokens) secure it; with neither, plain TCP.
    """
    chain = [PeerPolicy(policy or {})] if tls is not None else list(interceptors)
    server = grpc.aio.server(
        options=[
            *KEEPALIVE_SERVER,
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=chain or None,
    )
    for add in register:
        add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        if tls is not None:
            credentials = tls.server_credentials()
        if credentials is not None:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
        else:
            bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:  # grpc reports a taken port this way
        raise OSError(f"cannot bind gRPC server to {host}:{port}: the port is in use") from e
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    await server.start()
    built = Server(server=server, port=bound, health=health_servicer, service_names=names)
    built.set_serving(serving)
    return built


# Set by a supervisor (services/cli/procs.py) to its own pid: the child stops when its
# parent is gone (reparented), even when the parent was killed without a chance to stop it.
PARENT_PID_ENV = "KRUISE_MESH_PARENT_PID"
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def caught_signals(*signals: signal.Signals) -> Iterator[asyncio.Future[signal.Signals]]:
    """Catch ``signals`` (default SIGTERM, SIGINT, SIGHUP) from now on; the future is the
    first one.

    Enter it before announcing readiness: a supervisor may signal as soon as it reads
    the ready line, and a signal arriving before the handler exists kills the process
    without its graceful stop::

        with caught_signals() as stop:
            print(ready_line, flush=True)
            received = await stop

    With ``$KRUISE_MESH_PARENT_PID`` set (the supervisor's pid), the future also completes
    (as SIGTERM) once this process's parent is no longer that process: the supervisor died
    without stopping it (SIGKILL). On Linux the process also asks the kernel for a SIGTERM on
    its parent's death (``PR_SET_PDEATHSIG``), here rather than in the supervisor between
    fork and exec: a ``preexec_fn`` makes Python fork instead of vfork, and a fork of a
    process whose gRPC threads are busy can crash the child inside gRPC's fork handlers
    (seen: ``Check failed: next_worker->state == KICKED``). The watcher covers other systems
    and a parent that died before the request (checked right after it).
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    wanted = signals or (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def deliver(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in wanted:
        loop.add_signal_handler(sig, deliver, sig)
    watcher = _watch_parent(deliver)
    if watcher is not None:
        _parent_death_signal(signal.SIGTERM)
    try:
        yield received
    finally:
        if watcher is not None:
            watcher.cancel()
            _no_more_parent_death_signal()
        for sig in wanted:
            loop.remove_signal_handler(sig)


def _parent_death_signal(sig: int) -> None:
    """Ask the kernel for ``sig`` when the parent dies (0: no more); Linux only."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here: only a supervised process needs it

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _no_more_parent_death_signal() -> None:
    """Stopping: clear the SIGTERM asked for on the parent's death. The kernel sends it
    again each time a thread of the dying parent that this process was handed to exits;
    once the handlers are gone, a second one would kill the stop halfway (leaving the
    gateway's webhook configurations registered)."""
    _parent_death_signal(0)


def _watch_parent(deliver: Callable[[signal.Signals], None]) -> asyncio.Task[None] | None:
    """A task that delivers SIGTERM once the parent named by ``$KRUISE_MESH_PARENT_PID``
    is gone; None when the variable is unset (a process run by hand or by a kubelet)."""
    try:
        parent = int(os.environ.get(PARENT_PID_ENV, ""))
    except ValueError:
        return None

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(PARENT_POLL_S)
        log.warning("parent process %d is gone: stopping", parent)
        deliver(signal.SIGTERM)

    return asyncio.get_running_loop().create_task(watch(), name="watch-parent")


def service_config(*, idempotent: Sequence[tuple[str, str]], timeout_s: float = 5.0) -> str:
    """A gRPC service config: retries for the listed (service, method) pairs.

    Only idempotent calls may be retried: reads, and writes that carry a
    precondition (a retried conditional write fails cleanly with ABORTED).
    """
    config = {
        "methodConfig": [
            {
                "name": [{"service": s, "method": m} for s, m in idempotent],
                "timeout": f"{timeout_s}s",
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.2},
    }
    return json.dumps(config)


def insecure_channel(
    target: str,
    *,
    idempotent: Sequence[tuple[str, str]] = (),
    round_robin: bool = False,
) -> grpc.aio.Channel:
    """A client channel with keepalive, large messages and retries for ``idempotent``."""
    return grpc.aio.insecure_channel(
        target, options=_channel_options(idempotent=idempotent, round_robin=round_robin)
    )


def mesh_channel(
    target: str,
    *,
    tls: MeshTls | None,
    peer: str,
    idempotent: Sequence[tuple[str, str]] = (),
    round_robin: bool = False,
) -> grpc.aio.Channel:
    """A channel to a mesh peer: mutual TLS checking that the server is ``peer`` (a
    component) when ``tls`` is given, plain TCP otherwise (loopback only); the options of
    ``insecure_channel`` either way."""
    options = _channel_options(idempotent=idempotent, round_robin=round_robin)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    channel: grpc.aio.Channel = MeshChannel(target, tls, peer=peer, options=options)  # type: ignore[assignment]
    return channel


def _channel_options(
    *, idempotent: Sequence[tuple[str, str]], round_robin: bool
) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        *KEEPALIVE_CLIENT,
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.enable_retries", 1),
    ]
    if idempotent:
        options.append(("grpc.service_config", service_config(idempotent=idempotent)))
    if round_robin:
        options.append(("grpc.lb_policy_name", "round_robin"))
    return options
