"""The mesh CA rotated by ``mesh_certs.MeshCertIssuer`` against the sandbox, round by round,
while real gRPC calls cross the mesh in both directions.

Two components as they run in a cluster:

* a "gateway": ``MeshTls("gateway", SecretSource)``, following its certificate and bundle in
  the CA Secret through the API, as every gateway replica does;
* a "replica" of rollout: ``MeshTls("rollout", FileSource)`` on a directory a ``Kubelet``
  fills from the Secret ``kruise-mesh-rollout-tls`` as the kubelet does a mounted Secret
  (``..data`` swapped at once), ``delay`` seconds after it sees a change.

Each runs a gRPC server; a ``Prober`` calls each from the other over a new connection (a new
handshake, both certificates checked) every few milliseconds, and checks that the
certificate each presents comes from a CA the other trusts at that moment. Lifetimes are
seconds: the CA 10 s, rotated at 30 % of it; leaves 5 s; overlap 1.5 s (a certificate's
times have a resolution of one second, so the waits measured from them are that much less
certain; the kubelet's delay is 0.3 s). Leaves on the old CA are not renewed while the
switch waits, so what a leaf has left at its renewal (2.5 s) must outlast the overlap.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway import mesh_certs, rotation
from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.tls import FileSource, MeshChannel, MeshTls
from tests.unit.test_kit_tls import Ticker

NS = "kruise-mesh"
CA_SECRET = "kruise-mesh-ca"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
SECONDS = datetime.timedelta(seconds=1)


async def namespace(kube: KubeClient) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))


async def secret(kube: KubeClient, name: str) -> dict[str, Any] | None:
    try:
        return await kube.request_json("GET", f"{SECRETS}/{name}")
    except errors.NotFound:
        return None


async def data(kube: KubeClient, name: str) -> dict[str, bytes]:
    found = await secret(kube, name) or {}
    return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}


async def bundle(kube: KubeClient) -> tuple[str, ...]:
    """The CA Secret's trust bundle, as CA ids, oldest first."""
    pem = (await data(kube, CA_SECRET)).get("ca.crt")
    return tuple(rotation.ca_id(c) for c in rotation.split_bundle(pem))


def issuer(kube: KubeClient, *, overlap: float = 1.5) -> mesh_certs.MeshCertIssuer:
    made = mesh_certs.MeshCertIssuer(
        kube,
        namespace=NS,
        ca_secret=CA_SECRET,
        leaf_validity=5 * SECONDS,
        ca_validity=10 * SECONDS,
        check_s=0.1,
        overlap=overlap * SECONDS,
    )
    made.policy = dataclasses.replace(made.policy, ca_rotate_at=0.3)  # at 3 s of 10
    return made


@dataclass
class Kubelet:
    """Mounts a Secret into ``directory`` as the kubelet does (each file a symlink into
    ``..data``, swapped at once), ``delay`` seconds after it first sees a change."""

    kube: KubeClient
    name: str
    directory: Path
    delay: float
    applied: dict[str, bytes] | None = None
    _pending: tuple[dict[str, bytes], float] | None = None
    _serial: int = 0

    async def sync(self) -> None:
        found = await data(self.kube, self.name)
        if found == self.applied or not found:
            self._pending = None
            return
        if self._pending is None or self._pending[0] != found:
            self._pending = (found, time.monotonic())
        if time.monotonic() - self._pending[1] >= self.delay or self.applied is None:
            self._mount(found)

    def _mount(self, found: dict[str, bytes]) -> None:
        self._serial += 1
        version = self.directory / f"..{self._serial}"
        version.mkdir(parents=True)
        for key, value in found.items():
            (version / key).write_bytes(value)
        staged = self.directory / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.directory / "..data")
        for key in found:
            link = self.directory / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")
        self.applied, self._pending = found, None

    async def run(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(0.05)


async def health(port: int, tls: MeshTls, *, peer: str) -> None:
    """One call over a new connection: a handshake checking both ends' certificates."""
    async with MeshChannel(f"127.0.0.1:{port}", tls, peer=peer) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def issuer_of(leaf_pem: bytes, bundle_pem: bytes) -> str | None:
    """The id of the CA in ``bundle_pem`` that signed ``leaf_pem``; None when none did."""
    seen = rotation.read_pki(
        rotation.Pki(rotation.split_bundle(bundle_pem), None, {"x": None})
    ).bundle
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(leaf_pem)
    for ca, pem in zip(seen, rotation.split_bundle(bundle_pem), strict=True):
        with contextlib.suppress(Exception):
            leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(pem))
            return ca.id
    return None


@dataclass
class Mesh:
    """A gateway and a rollout replica, each serving gRPC with its MeshTls."""

    gateway: MeshTls
    replica: MeshTls
    gateway_port: int
    replica_port: int
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    transient: list[str] = field(default_factory=list)
    stopped: bool = False

    def untrusted(self) -> list[str]:
        """Pairs where one end presents a certificate the other does not trust now."""
        out = []
        for who, held, peer in (
            ("gateway", self.gateway.material, self.replica.material),
            ("replica", self.replica.material, self.gateway.material),
        ):
            if issuer_of(held.cert_pem, peer.ca_pem) is None:
                out.append(f"{who}'s certificate is not trusted by its peer")
        return out

    async def probe(self) -> None:
        while not self.stopped:
            for port, tls, peer in (
                (self.gateway_port, self.replica, "gateway"),
                (self.replica_port, self.gateway, "rollout"),
            ):
                try:
                    await health(port, tls, peer=peer)
                    self.calls += 1
                except grpc.aio.AioRpcError as e:
                    # Once in a few runs a new connection made the instant a component takes a
                    # new certificate is closed without a verification error (the trust check
                    # below holds then): the retry a real client makes must succeed.
                    self.transient.append(f"call to {peer}: {e.code()} {e.details()}")
                    try:
                        await health(port, tls, peer=peer)
                    except grpc.aio.AioRpcError as again:
                        self.failures.append(f"call to {peer}: {again.code()} {again.details()}")
            self.failures += self.untrusted()
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def mesh(kube: KubeClient, tmp_path: Path, *, delay: float) -> AsyncIterator[Mesh]:
    """The two components on the Secrets as they are now (the issuer has run once)."""
    kubelet = Kubelet(kube, mesh_certs.secret_name("rollout"), tmp_path / "rollout", delay)
    await kubelet.sync()
    gateway = MeshTls("gateway", mesh_certs.SecretSource(kube, NS, CA_SECRET, poll_s=0.05))
    replica = MeshTls("rollout", FileSource(tmp_path / "rollout", poll_s=0.05))
    await gateway.start()
    await replica.start()
    servers = []
    ports = []
    for tls in (gateway, replica):
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(Ticker(), server)
        ports.append(server.add_secure_port("127.0.0.1:0", tls.server_credentials()))
        await server.start()
        servers.append(server)
    mounted = asyncio.create_task(kubelet.run())
    found = Mesh(gateway, replica, *ports)
    probing = asyncio.create_task(found.probe())
    try:
        yield found
    finally:
        found.stopped = True
        await probing
        mounted.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mounted
        for server in servers:
            await server.stop(0)
        await gateway.stop()
        await replica.stop()


async def until(
    what: str,
    done: Callable[[], Awaitable[bool]],
    *,
    step: Callable[[], Awaitable[None]],
    timeout: float = 12.0,
) -> None:
    """Run ``step`` (a round) until ``done`` holds."""
    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await step()
        await asyncio.sleep(0.05)


@dataclass
class Rounds:
    """Drives issuers round by round and records the bundles and steps they went through."""

    kube: KubeClient
    issuers: list[mesh_certs.MeshCertIssuer]
    bundles: list[tuple[str, ...]] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)

    async def round(self) -> None:
        plans = await asyncio.gather(*(i.check() for i in self.issuers))
        self.steps += [rotation.describe(p) for p in plans if p is not None]
        now = await bundle(self.kube)
        if not self.bundles or self.bundles[-1] != now:
            self.bundles.append(now)

    async def rotated(self) -> bool:
        return len(self.bundles) > 1 and len(self.bundles[-1]) == 1


def rotation_steps(steps: list[list[str]]) -> list[str]:
    """The CA rotation's own steps, in order, each plan's switches counted once."""
    out: list[str] = []
    for plan in steps:
        for step in dict.fromkeys(plan):
            if step != "issue-leaf":
                out.append(step)
    return out


async def test_a_ca_rotation_keeps_every_mesh_call_working(
    kube: KubeClient, tmp_path: Path
) -> None:
    await namespace(kube)
    one = issuer(kube)
    rounds = Rounds(kube, [one])
    await rounds.round()  # the first install: the CA and every leaf
    first = rounds.bundles[0]
    assert len(first) == 1
    async with mesh(kube, tmp_path, delay=0.3) as live:
        await until("a whole mesh CA rotation", rounds.rotated, step=rounds.round)
        await asyncio.sleep(0.5)  # the last step reaches both ends
    assert live.failures == []
    assert live.calls > 50 and len(live.transient) <= 1, live.transient
    a, b = first[0], rounds.bundles[-1][0]
    assert rounds.bundles == [(a,), (a, b), (b,)]
    # the fresh install's CA, then the rotation; leaf renewals (issue-leaf) in between
    assert rotation_steps(rounds.steps) == ["add-ca", "add-ca", "switch-leaf", "drop-old-ca"]
    # Both ends now present leaves from B and trust B alone.
    for tls in (live.gateway, live.replica):
        assert rotation.bundle_ids(tls.material.ca_pem) == {b}
        assert issuer_of(tls.material.cert_pem, tls.material.ca_pem) == b
    # Every service Secret carries the same bundle, its leaf kept apart from the switch.
    for component in mesh_certs.SERVICES:
        held = await data(kube, mesh_certs.secret_name(component))
        assert rotation.bundle_ids(held["ca.crt"]) == {b}


async def test_two_issuers_never_both_write_one_secret(kube: KubeClient, tmp_path: Path) -> None:
    """Two gateways planning on the same Secrets at the same moment, every round: each write
    is conditional on the resourceVersion read, so one of them wins each one."""
    await namespace(kube)
    one, two = issuer(kube), issuer(kube)
    rounds = Rounds(kube, [one, two])
    await rounds.round()  # both make the first install: one wins each Secret
    async with mesh(kube, tmp_path, delay=0.3) as live:
        await until("a mesh CA rotation by two issuers", rounds.rotated, step=rounds.round)
        await asyncio.sleep(0.5)
    assert live.failures == []
    writes = one.writes + two.writes
    for name in {w.secret for w in writes}:
        froms = [w.precondition for w in writes if w.secret == name]
        assert len(froms) == len(set(froms)), name  # one write per resourceVersion read
    a, b = rounds.bundles[0][0], rounds.bundles[-1][0]
    assert rounds.bundles == [(a,), (a, b), (b,)]


async def test_a_missing_leaf_is_issued_at_once(kube: KubeClient) -> None:
    """A service Secret deleted, and a CA Secret as an older version made it (no gateway
    leaf): the next round issues both, from the CA in use, and touches nothing else."""
    await namespace(kube)
    keeper = issuer(kube)
    keeper.leaf_validity = datetime.timedelta(hours=1)
    await keeper.prepare()
    before = {c: await secret(kube, mesh_certs.secret_name(c)) for c in ("placement", "budget")}
    ca = await secret(kube, CA_SECRET)
    assert ca is not None
    await kube.request("DELETE", f"{SECRETS}/{mesh_certs.secret_name('rollout')}")
    ca["data"] = {k: v for k, v in ca["data"].items() if k in ("ca.crt", "ca.key")}
    await kube.request("PUT", f"{SECRETS}/{CA_SECRET}", body=orjson.dumps(ca))
    old = await data(kube, CA_SECRET)

    done = await keeper.check()

    assert done is not None
    assert sorted((a.name, a.why) for a in done.actions if isinstance(a, rotation.IssueLeaf)) == [
        ("gateway", "missing"),
        ("rollout", "missing"),
    ]
    now = await data(kube, CA_SECRET)
    assert (now["ca.crt"], now["ca.key"]) == (old["ca.crt"], old["ca.key"])
    made = await data(kube, mesh_certs.secret_name("rollout"))
    assert made["ca.crt"] == now["ca.crt"]
    for leaf in (made["tls.crt"], now["tls.crt"]):
        assert issuer_of(leaf, now["ca.crt"]) == rotation.ca_id(now["ca.crt"])
    for component, found in before.items():
        again = await secret(kube, mesh_certs.secret_name(component))
        assert found is not None and again is not None
        assert again["metadata"]["resourceVersion"] == found["metadata"]["resourceVersion"]
    material = await keeper.gateway_source().fetch()  # what every gateway now follows
    assert material.cert_pem == now["tls.crt"]
