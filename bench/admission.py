"""Admission benchmark: HTTPS AdmissionReview → gateway webhook → service replica → JSONPatch.

    python -m bench.admission                  # the whole run (~2 min), prints one table
    python -m bench.admission --reps 1 --quick # a smoke run
    python -m bench.admission --target 127.0.0.1:7001   # a real service replica instead

Processes, all on loopback, each its own interpreter:

* ``replica``: a ``services.kit.mesh.MeshServicer`` whose ``mutate-pods`` handler allows with
  a 2-op JSONPatch (the stand-in until the real services are measured with ``--target``);
* ``gateway-stream`` / ``gateway-unary``: ``start_webhook_server`` + ``AdmissionForwarder``
  in ``stream`` / ``unary`` mode, routing every review to the replica;
* ``bare``: the same webhook server answering the same patch in-process, without a hop;
* ``load``: the load generator, a minimal keep-alive HTTP/1.1-over-TLS client on asyncio
  streams (cheaper than aiohttp's client, so it steals less of the 2 cores), run per
  workload so it never shares the servers' event loop. Its ``--body`` file holds one review
  per line, sent in turn; ``--expect-patch`` counts an answer without a patch as an error
  (``bench.placement`` uses both); ``--path`` posts to another webhook path than
  ``/placement/mutate-pods`` (``bench.budget``).

Workloads per variant: closed loop at concurrency 1 and 32 (bounded by a request count and a
time cap), and an open loop at a fixed rate whose latency counts from the intended send
time (no coordinated omission). CPU per review is the servers' utime+stime from
``/proc/<pid>/stat`` across the measured window only (after warm-up), divided by the
reviews answered. Each cell is the median of ``--reps`` repetitions; variants are
interleaved within a repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import orjson

from bench.common import percentile, proc_cpu_seconds

PATCH = orjson.dumps(
    [
        {"op": "add", "path": "/metadata/annotations/mesh.kruise.io~1zone", "value": "zone-b"},
        {"op": "add", "path": "/metadata/labels/mesh.kruise.io~1placed", "value": "true"},
    ]
)
PATH = "/placement/mutate-pods?timeout=10s"
ANSWER_TIMEOUT = 30.0  # seconds the load generator waits for one answer


# ---- the review ----------------------------------------------------------------------------------
def pod_review(*, target_size: int = 7300) -> bytes:
    """A realistic Pod CREATE AdmissionReview of about ``target_size`` bytes (as a StatefulSet
    controller sends it: owner reference, labels, env, probes, volumes, tolerations)."""
    container: dict[str, Any] = {
        "name": "app",
        "image": "registry.example.com/team/web:1.27.3",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 12} for i in range(12)],
        "resources": {
            "limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 5,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/web"},
            {
                "name": "kube-api-access-7xk2p",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    pod: dict[str, Any] = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "web-3",
            "generateName": "web-",
            "namespace": "shop",
            "labels": {
                "app": "web",
                "apps.kubernetes.io/pod-index": "3",
                "controller-revision-hash": "web-5d8f7c9b6",
                "statefulset.kubernetes.io/pod-name": "web-3",
            },
            "annotations": {},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "2b0d1c55-6f0e-4b8e-9d3c-0d3a1f3d9a11",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-3"}},
                {
                    "name": "kube-api-access-7xk2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [
                container,
                {**container, "name": "sidecar", "env": container["env"][:4]},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "hostname": "web-3",
            "subdomain": "web",
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    review: dict[str, Any] = {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "5f1c8a2e-3b7d-4c11-9e4a-7d2b6c0f8e91",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web-3",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:statefulset-controller",
                "uid": "8c2d1e0f-41a7-4f0b-a5a2-8f1e2d3c4b5a",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    body = orjson.dumps(review)
    pad = target_size - len(body) - len('"bench.kruise.io/pad":""')
    if pad > 0:
        pod["metadata"]["annotations"]["bench.kruise.io/pad"] = "p" * pad
        body = orjson.dumps(review)
    return body


# ---- server processes ---------------------------------------------------------------------------
async def _serve_replica() -> None:
    import grpc

    from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
    from services.kit.mesh import MeshServicer
    from services.kit.rpc import caught_signals, create_server

    async def mutate(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        return mesh_pb2.AdmissionResponse(allowed=True, patch=PATCH)

    servicer = MeshServicer(
        service="placement", replica="bench", kinds=[], handlers={"mutate-pods": mutate}
    )
    server = await create_server(
        register=[lambda s: mesh_pb2_grpc.add_MeshServiceServicer_to_server(servicer, s)],
        service_names=["kruise.common.v1.MeshService"],
    )
    # A replica decides nothing before its first snapshot. No watch hub runs in this bench,
    # so play the gateway's part once: an empty snapshot over the real Sync stream.
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    sync = mesh_pb2_grpc.MeshServiceStub(channel).Sync()
    await sync.read()
    await sync.write(mesh_pb2.SyncMessage(sequence=1, snapshot_begin=True, snapshot_end=True))
    await sync.read()
    if not servicer.synced:
        raise SystemExit("bench replica did not take its snapshot")
    with caught_signals() as stop:
        print(server.port, flush=True)
        await stop
    sync.cancel()
    await channel.close()
    await server.stop(grace=None)


class _LocalAnswer:
    """The bare variant's 'forwarder': the same answer, decided in-process."""

    async def review(self, service: str, namespace: str, request: Any, *, timeout: float) -> Any:
        from kruise.common.v1 import mesh_pb2

        return mesh_pb2.AdmissionResponse(allowed=True, patch=PATCH)


async def _serve_webhook(
    *, cert: str, key: str, mode: str, target: str, streams: int, batch: int
) -> None:
    from services.gateway.webhook.forward import AdmissionForwarder
    from services.gateway.webhook.server import start_webhook_server
    from services.kit.rpc import caught_signals

    forwarder: Any
    if mode == "bare":
        forwarder = _LocalAnswer()
    else:
        forwarder = AdmissionForwarder(
            route=lambda s, n: target,
            mode=mode,  # type: ignore[arg-type]
            streams=streams,
            max_batch=batch,
        )
    server = await start_webhook_server(
        host="127.0.0.1", port=0, cert_file=cert, key_file=key, forwarder=forwarder
    )
    with caught_signals() as stop:
        print(server.port, flush=True)
        await stop
    await server.stop()
    if mode != "bare":
        await forwarder.close()


# ---- the load generator -------------------------------------------------------------------------
class LoadResult(TypedDict):
    ok: int
    errors: int
    wall: float
    latencies_ms: list[float]


class _Conn:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        expect_patch: bool = False,
    ) -> None:
        self.reader = reader
        self.writer = writer
        # With expect_patch an answer counts as good only if it carries a JSONPatch.
        self.expect_patch = expect_patch

    async def send(self, request: bytes) -> tuple[bytes, bytes]:
        """Send one whole HTTP/1.1 request; the answer's head and body."""
        self.writer.write(request)
        # A server that never answers ends the generator (the driver then fails) instead of
        # hanging the bench.
        async with asyncio.timeout(ANSWER_TIMEOUT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = await self.reader.readexactly(length)
        return head, body

    async def exchange(self, request: bytes) -> bool:
        head, body = await self.send(request)
        good = head.startswith(b"HTTP/1.1 200") and b'"allowed":true' in body
        return good and (not self.expect_patch or b'"patch":"' in body)


async def _connect(port: int, context: ssl.SSLContext, *, expect_patch: bool = False) -> _Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    return _Conn(reader, writer, expect_patch=expect_patch)


async def _load(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.cafile)
    # One review per line (orjson writes no newlines); several are sent in turn.
    bodies = [b for b in Path(args.body).read_bytes().splitlines() if b.strip()]
    requests = itertools.cycle(
        [
            (
                f"POST {args.path or PATH} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
                f"User-Agent: kube-apiserver-admission\r\nAccept: application/json, */*\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for body in bodies
        ]
    )
    conns = [
        await _connect(args.port, context, expect_patch=args.expect_patch)
        for _ in range(args.connections)
    ]
    for conn in conns:  # warm-up, not measured
        for _ in range(max(1, args.warmup // len(conns))):
            await conn.exchange(next(requests))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    if args.rate:
        pool: asyncio.Queue[_Conn] = asyncio.Queue()
        for conn in conns:
            pool.put_nowait(conn)
        total = int(args.rate * args.duration)

        async def one(intended: float) -> None:
            nonlocal errors
            conn = await pool.get()
            try:
                good = await conn.exchange(next(requests))
            finally:
                pool.put_nowait(conn)
            latencies.append(time.perf_counter() - intended)
            errors += not good

        tasks = []
        for i in range(total):
            intended = started + i / args.rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(intended)))
        await asyncio.gather(*tasks)
    else:
        deadline = started + args.time_cap
        budget = [args.count]

        async def worker(conn: _Conn) -> None:
            nonlocal errors
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                sent = time.perf_counter()
                good = await conn.exchange(next(requests))
                latencies.append(time.perf_counter() - sent)
                errors += not good

        await asyncio.gather(*(worker(conn) for conn in conns))
    wall = time.perf_counter() - started
    result: LoadResult = {
        "ok": len(latencies) - errors,
        "errors": errors,
        "wall": wall,
        "latencies_ms": [x * 1000 for x in latencies],
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


# ---- the driver ---------------------------------------------------------------------------------
def _cpu_seconds(pids: Sequence[int]) -> float:
    return sum(proc_cpu_seconds(pid) for pid in pids)


def _spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.admission", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise RuntimeError(f"bench process {args[0]} did not start")
    return proc, int(line)


async def start_bare_webhook(certs: Path) -> tuple[subprocess.Popen[str], int]:
    """The bare endpoint (the gateway's aiohttp webhook server answering in-process) serving
    with the certificate in ``certs`` (tls.crt, tls.key), for another bench's baseline."""
    return await asyncio.to_thread(
        _spawn,
        "webhook",
        f"--cert={certs / 'tls.crt'}",
        f"--key={certs / 'tls.key'}",
        "--mode=bare",
        "--target=none",
    )


def stop_spawned(proc: subprocess.Popen[str]) -> None:
    """SIGTERM a process started by ``_spawn``; kill it if it has not exited in 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Workload:
    name: str
    connections: int
    count: int = 0
    time_cap: float = 0.0
    rate: float = 0.0
    duration: float = 0.0


@dataclass
class Cell:
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0


def _run_load(
    *,
    port: int,
    cafile: str,
    body: str,
    workload: Workload,
    pids: Sequence[int],
    extra: Sequence[str] = (),
) -> tuple[LoadResult, float]:
    args = [
        "load",
        f"--port={port}",
        f"--cafile={cafile}",
        f"--body={body}",
        f"--connections={workload.connections}",
        f"--count={workload.count}",
        f"--time-cap={workload.time_cap}",
        f"--rate={workload.rate}",
        f"--duration={workload.duration}",
        f"--warmup={max(100, workload.connections * 8)}",
        *extra,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.admission", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("load generator failed to start")
    cpu_before = _cpu_seconds(pids)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    cpu = _cpu_seconds(pids) - cpu_before
    proc.wait(timeout=30)
    result: LoadResult = orjson.loads(line)
    return result, cpu


def _variant(name: str) -> tuple[str, int, int]:
    """(mode, streams, max_batch) for a variant name such as gateway-stream4.

    ``gateway-stream`` batches the reviews waiting at one moment into one gRPC message
    (up to 64); ``gateway-stream-unbatched`` sends one message per review.
    """
    if name == "bare":
        return "bare", 1, 1
    mode = name.removeprefix("gateway-")
    if mode == "stream-unbatched":
        return "stream", 1, 1
    if mode.startswith("stream"):
        return "stream", int(mode.removeprefix("stream") or 1), 64
    if mode == "unary":
        return "unary", 1, 1
    raise SystemExit(
        f"unknown variant {name!r} "
        "(bare, gateway-stream[N], gateway-stream-unbatched, gateway-unary)"
    )


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--target", help="an existing MeshService replica (host:port)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop reviews/s")
    parser.add_argument(
        "--variants",
        default="bare,gateway-stream,gateway-stream-unbatched,gateway-unary",
        help="comma-separated: bare, gateway-stream, gateway-streamN (N streams), "
        "gateway-stream-unbatched, gateway-unary",
    )
    args = parser.parse_args(argv)

    scale = 0.2 if args.quick else 1.0
    workloads = [
        Workload("c=1", connections=1, count=int(3000 * scale), time_cap=2.5 * scale),
        Workload("c=32", connections=32, count=int(10000 * scale), time_cap=3.5 * scale),
        Workload(f"open {args.rate:g}/s", connections=64, rate=args.rate, duration=4.0 * scale),
    ]
    variants = args.variants.split(",")
    started = time.monotonic()
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        from services.kit import certs

        ca = certs.generate_ca(common_name="bench-ca")
        cert, key = certs.write_pair(tmp, "tls", certs.issue_serving_cert(ca=ca, hosts=[]))
        cafile = str(Path(tmp) / "ca.crt")
        Path(cafile).write_bytes(ca.cert_pem)
        body_file = str(Path(tmp) / "review.json")
        review = pod_review()
        Path(body_file).write_bytes(review)
        try:
            servers: dict[str, tuple[int, list[int]]] = {}
            target = args.target
            replica_pids: list[int] = []
            if target is None:
                replica, replica_port = _spawn("replica")
                procs.append(replica)
                target = f"127.0.0.1:{replica_port}"
                replica_pids = [replica.pid]
            for variant in variants:
                mode, streams, batch = _variant(variant)
                proc, port = _spawn(
                    "webhook", f"--cert={cert}", f"--key={key}", f"--mode={mode}",
                    f"--target={target}", f"--streams={streams}", f"--batch={batch}",
                )  # fmt: skip
                procs.append(proc)
                pids = [proc.pid] + ([] if mode == "bare" else replica_pids)
                servers[variant] = (port, pids)

            cells: dict[tuple[str, str], Cell] = {}
            for _ in range(args.reps):
                for variant in variants:
                    port, pids = servers[variant]
                    for workload in workloads:
                        result, cpu = _run_load(
                            port=port, cafile=cafile, body=body_file, workload=workload, pids=pids
                        )
                        cell = cells.setdefault((variant, workload.name), Cell())
                        answered = result["ok"] + result["errors"]
                        cell.p50.append(percentile(result["latencies_ms"], 0.50))
                        cell.p99.append(percentile(result["latencies_ms"], 0.99))
                        cell.throughput.append(answered / result["wall"])
                        cell.cpu_us.append(cpu / max(answered, 1) * 1e6)
                        cell.errors += result["errors"]
        finally:
            for proc in reversed(procs):  # webhooks first, then the replica they call
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    med = statistics.median
    print(
        f"admission: {len(review):,} B Pod CREATE review over TLS keep-alive; median of "
        f"{args.reps} reps; CPU = server processes only"
        + (" (excluding the external --target)" if args.target else " (webhook + replica)")
    )
    header = (
        "| variant | load | p50 ms | p99 ms | reviews/s | CPU µs/review "
        "| throughput vs bare | CPU vs bare | errors |"
    )
    print(header)
    print("|" + "---|" * 9)
    for variant in variants:
        for workload in workloads:
            cell = cells[(variant, workload.name)]
            bare = cells.get(("bare", workload.name))
            tput_ratio = med(cell.throughput) / med(bare.throughput) if bare else float("nan")
            cpu_ratio = med(cell.cpu_us) / med(bare.cpu_us) if bare else float("nan")
            print(
                f"| {variant} | {workload.name} | {_fmt(med(cell.p50))} | {_fmt(med(cell.p99))} "
                f"| {_fmt(med(cell.throughput), 0)} | {_fmt(med(cell.cpu_us), 0)} "
                f"| {_fmt(tput_ratio)} | {_fmt(cpu_ratio)} | {cell.errors} |"
            )
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)
    failed = sorted({v for (v, _), c in cells.items() if c.errors})
    if failed:
        # Timings of failed reviews are not figures: say so, and fail the run.
        raise SystemExit(f"reviews failed in: {', '.join(failed)}; the table above is not valid")


def _entry(argv: Sequence[str]) -> None:
    """Subcommands used by the driver: replica, webhook, load; anything else is the driver."""
    if argv and argv[0] == "replica":
        asyncio.run(_serve_replica())
        return
    if argv and argv[0] in ("webhook", "load"):
        parser = argparse.ArgumentParser()
        for name in ("cert", "key", "mode", "target", "cafile", "body", "path"):
            parser.add_argument(f"--{name}")
        parser.add_argument("--port", type=int)
        for name in ("connections", "count", "warmup", "streams", "batch"):
            parser.add_argument(f"--{name}", type=int, default=0)
        for name in ("time-cap", "rate", "duration"):
            parser.add_argument(f"--{name}", type=float, default=0.0)
        parser.add_argument("--expect-patch", action="store_true")
        args = parser.parse_args(argv[1:])
        if argv[0] == "webhook":
            asyncio.run(
                _serve_webhook(
                    cert=args.cert,
                    key=args.key,
                    mode=args.mode,
                    target=args.target,
                    streams=args.streams or 1,
                    batch=args.batch or 64,
                )
            )
        else:
            asyncio.run(_load(args))
        return
    main(argv)


if __name__ == "__main__":
    _entry(sys.argv[1:])
