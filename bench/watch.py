"""Watch fan-out: pod changes in the API server → gateway watch hub → one service replica.

    python -m bench.watch                 # the whole run (about 1.5 min), prints one table
    python -m bench.watch --quick         # a smoke run with small counts

Processes, each its own interpreter on 127.0.0.1 (started with ``services.cli.procs``):
``sandbox`` (neither ``--world`` nor ``--admission``: no scheduler, kubelet or webhook touches a
pod, so every pod event is one the bench caused), ``rollout`` (one replica; it asks for pods
and CloneSets) and ``gateway`` (``--services rollout=…``, ``--no-leader-election``, no webhook
registration). The bench process itself is the API client.

Phases, in one set of processes (pods accumulate, in a fresh namespace per repetition):

* **burst (live)**: POST 10,000 pods (aiohttp, keep-alive, 32 in flight) while the pipeline
  runs. Reported: the create rate (what the sandbox accepted), and the rate at which the
  ADDED events reached the replica, from the first POST until the replica's
  ``kruise_mesh_service_events_total`` (polled on its ops port every 20 ms) has grown by
  10,000; "tail" is how long after the last create answered the last event arrived. When the
  create rate and the delivery rate match and the tail is short, the pipeline kept up and
  the sandbox was the limit.
* **burst (backlog)**: the same 10,000 creates with the gateway stopped (SIGSTOP; the
  sandbox queues the watch events), then SIGCONT: the time until the replica has all of them
  is what the pipeline (sandbox watch writer → hub → Sync stream → replica cache) can do when
  the API server is not the limit. The pause is capped at 8 s, below the gRPC keepalive
  timeout, so no connection is dropped.
* **steady**: merge-patch one label (a value never used before, so each patch is a change)
  on existing pods round-robin for ~10 s in total (split over the repetitions), closed loop
  with 32 in flight: the fastest rate the sandbox sustains. Then **paced**: the same at a
  fixed open-loop 1,000 patches/s, latency from the intended send time (no coordinated
  omission). Lag, honestly: each PATCH answer carries the new resourceVersion; sorted by it,
  the k-th patch is the k-th pod event the replica applies (one watch per kind, an ordered
  Sync stream, and nothing else changes pods in this setup), so patch k became visible
  between the last counter sample below ``base + k`` and the first one at or above it. The
  replica's counter is sampled every ~20 ms (plus one ``/metrics`` fetch); the midpoint of
  those two samples is taken. Lag = that − the patch's send time, so it includes the PATCH's
  own time in the sandbox (shown next to it); its resolution is ±~12 ms, so a p50 below
  ~10 ms says "faster than we can see", not an exact value. The sampler adds ~45 small HTTP
  requests/s to the replica and the bench process, which shows in the paced phase's CPU.
* **memory**: the gateway's RSS (``VmRSS``) after the hub holds 0, then each +10,000 pods
  (up to 60,000 with 3 repetitions), read after the replica has every event and 1 s of quiet;
  MB per 10,000 pods is the slope of a least-squares line through those points (RSS includes
  allocator fragmentation and transient buffers; the gateway freezes GC after its initial
  sync only). The hub's own accounting is its ``kruise_mesh_gateway_cache_objects`` gauge
  (objects, not bytes) plus the bytes of the serialised ObjectView the hub stores per pod,
  measured here by projecting the same pod with ``services.kit.projection``.

CPU is ``utime+stime`` of each process over the phase's window, per 1,000 events; "cores"
is CPU seconds / wall seconds (the Python side of a process cannot pass ~1.0; gRPC's C
threads can add a little); foreign is the machine's other busy time (other tenants), which
steals from the same 2 cores. After the run every pod's resourceVersion in the replica's
cache (``ListCachedObjects``) is compared with the sandbox's LIST: the "consistent" line
says whether anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import orjson

from bench import common
from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli import procs

SAMPLE_INTERVAL = 0.02
BURST_CONCURRENCY = 32
PATCH_CONCURRENCY = 32
PAUSE_CAP = 8.0
_EVENTS_RE = re.compile(rb'^kruise_mesh_service_events_total\{service="rollout"\} (\S+)$', re.M)
_CACHE_RE = re.compile(rb'^kruise_mesh_gateway_cache_objects\{kind="KIND_POD"\} (\S+)$', re.M)


@dataclass
class Mesh:
    sandbox: procs.Proc
    service: procs.Proc
    gateway: procs.Proc
    api: common.Api
    http: aiohttp.ClientSession  # plain HTTP to the ops ports
    service_grpc: str

    @property
    def pids(self) -> dict[str, int]:
        return {
            "sandbox": self.sandbox.pid,
            "gateway": self.gateway.pid,
            "rollout": self.service.pid,
        }

    async def _metrics(self, proc: procs.Proc) -> bytes:
        port = proc.ready["ops_port"]
        async with self.http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.read()

    async def events(self) -> int:
        """``kruise_mesh_service_events_total`` of the replica (snapshot events included)."""
        match = _EVENTS_RE.search(await self._metrics(self.service))
        return int(float(match.group(1))) if match else 0

    async def hub_pods(self) -> int:
        match = _CACHE_RE.search(await self._metrics(self.gateway))
        return int(float(match.group(1))) if match else 0

    async def synced(self) -> bool:
        port = self.service.ready["ops_port"]
        async with self.http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status == 200

    async def wait_events(self, target: int, *, timeout: float) -> float:
        """Poll until the replica has applied ``target`` events; the time it got there."""
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            if await self.events() >= target:
                return now
            if now > deadline:
                raise TimeoutError(f"replica has {await self.events()} of {target} events")
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def quiet(self, *, settle: float = 1.0, timeout: float = 30.0) -> int:
        """Until the replica's event count has not moved for ``settle`` seconds."""
        deadline = time.perf_counter() + timeout
        last = await self.events()
        still_since = time.perf_counter()
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            now_count = await self.events()
            if now_count != last:
                last, still_since = now_count, time.perf_counter()
            elif time.perf_counter() - still_since >= settle:
                break
        return last


async def start_mesh(workdir: Path) -> tuple[Mesh, list[procs.Proc]]:
    logs = workdir / "logs"
    started: list[procs.Proc] = []
    sandbox = await common.start_sandbox(workdir, history=100_000)
    started.append(sandbox)
    gateway_port, service_port = procs.free_port(), procs.free_port()
    service_addr = f"127.0.0.1:{service_port}"
    service = await procs.start(
        "rollout",
        "services.rollout",
        ["--host", "127.0.0.1", "--port", str(service_port), "--ops-port", "0",
         "--gateway", f"127.0.0.1:{gateway_port}", "--advertise", service_addr],
        log_dir=logs,
    )  # fmt: skip
    started.insert(0, service)
    gateway = await procs.start(
        "gateway",
        "services.gateway",
        ["--kubeconfig", str(sandbox.ready["kubeconfig"]), "--host", "127.0.0.1",
         "--grpc-port", str(gateway_port), "--webhook-port", str(procs.free_port()),
         "--ops-port", "0", "--services", f"rollout={service_addr}",
         "--cert-dir", str(workdir / "gateway-certs"), "--no-leader-election"],
        log_dir=logs,
        timeout=60,
    )  # fmt: skip
    started.insert(0, gateway)
    mesh = Mesh(
        sandbox=sandbox,
        service=service,
        gateway=gateway,
        api=common.Api(sandbox.ready, connections=64),
        http=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)),
        service_grpc=service_addr,
    )
    deadline = time.perf_counter() + 30
    while not await mesh.synced():
        if time.perf_counter() > deadline:
            raise TimeoutError("the replica never got its snapshot")
        await asyncio.sleep(0.1)
    return mesh, started


# ---- phases --------------------------------------------------------------------------------------
@dataclass
class Phase:
    events: int
    wall: float  # the window the CPU was measured over
    cpu: dict[str, float]
    foreign: float
    extra: dict[str, float] = field(default_factory=dict)

    def per_k(self, name: str) -> float:
        return self.cpu[name] / self.events * 1000 if self.events else float("nan")

    def cores(self, name: str) -> float:
        return self.cpu[name] / self.wall if self.wall else float("nan")

    def sandbox_share(self) -> float:
        total = sum(self.cpu.values())
        return self.cpu["sandbox"] / total if total else float("nan")


async def burst_live(mesh: Mesh, namespace: str, count: int) -> Phase:
    await mesh.api.ensure_namespace(namespace)
    base = await mesh.quiet(settle=0.3)
    window = common.CpuWindow(mesh.pids).start()
    t0 = time.perf_counter()
    created = asyncio.create_task(
        common.create_pods(
            mesh.api, namespace, count, concurrency=BURST_CONCURRENCY, time_cap=60, prefix="p"
        )
    )
    first_seen = 0.0
    while not first_seen:
        if await mesh.events() > base:
            first_seen = time.perf_counter()
        elif created.done() and created.result().ok == 0:
            break
        else:
            await asyncio.sleep(SAMPLE_INTERVAL)
    result = await created
    creates_done = time.perf_counter()
    done = await mesh.wait_events(base + result.ok, timeout=60)
    window.stop()
    if result.errors:
        print(f"burst: {result.errors} creates failed, first: {result.first_error}")
    return Phase(
        events=result.ok,
        wall=window.wall,
        cpu=window.seconds,
        foreign=window.foreign,
        extra={
            "create_rate": result.rate,
            "deliver_rate": result.ok / (done - t0),
            "first_event_ms": (first_seen - t0) * 1000,
            "tail_ms": max(0.0, done - creates_done) * 1000,
        },
    )


async def burst_backlog(mesh: Mesh, namespace: str, count: int) -> Phase:
    await mesh.api.ensure_namespace(namespace)
    base = await mesh.quiet(settle=0.3)
    os.kill(mesh.gateway.pid, signal.SIGSTOP)
    try:
        result = await common.create_pods(
            mesh.api,
            namespace,
            count,
            concurrency=BURST_CONCURRENCY,
            time_cap=PAUSE_CAP,
            prefix="p",
        )
    finally:
        window = common.CpuWindow(mesh.pids).start()
        t0 = time.perf_counter()
        os.kill(mesh.gateway.pid, signal.SIGCONT)
    done = await mesh.wait_events(base + result.ok, timeout=60)
    window.stop()
    return Phase(
        events=result.ok,
        wall=window.wall,
        cpu=window.seconds,
        foreign=window.foreign,
        extra={"deliver_rate": result.ok / (done - t0), "create_rate": result.rate},
    )


async def steady(
    mesh: Mesh, targets: Sequence[tuple[str, str]], duration: float, *, rate: float | None
) -> Phase:
    """Merge-patch a label on ``targets`` round-robin for ``duration`` s: closed loop with
    32 in flight (``rate`` None), or open loop at ``rate`` patches/s."""
    base = await mesh.quiet(settle=0.5)
    tag = f"s{time.monotonic_ns()}"
    sent: list[tuple[int, float]] = []  # (resourceVersion, send time: intended if open loop)
    patch_lat: list[float] = []
    samples: list[tuple[float, int]] = []  # (mid-time of the /metrics fetch, events)
    stop_sampling = asyncio.Event()

    async def sampler() -> None:
        while not stop_sampling.is_set():
            t_before = time.perf_counter()
            count = await mesh.events()
            samples.append(((t_before + time.perf_counter()) / 2, count))
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def one(i: int, intended: float | None = None) -> None:
        ns, name = targets[i % len(targets)]
        # A value never used before, so every patch is a change (a no-op patch makes no event).
        body = orjson.dumps({"metadata": {"labels": {"bench": f"{tag}-{i}"}}})
        t0 = time.perf_counter()
        status, raw = await mesh.api.call(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}",
            body=body,
            content_type="application/merge-patch+json",
        )
        if status != 200:
            raise RuntimeError(f"patch {ns}/{name}: {status} {raw[:200]!r}")
        patch_lat.append(time.perf_counter() - t0)
        rv = int(orjson.loads(raw)["metadata"]["resourceVersion"])
        sent.append((rv, t0 if intended is None else intended))

    sampling = asyncio.create_task(sampler())
    try:
        window = common.CpuWindow(mesh.pids).start()
        if rate is None:
            result = await common.run_bounded(10_000_000, PATCH_CONCURRENCY, one, time_cap=duration)
            load_wall = result.wall
        else:
            result = await common.run_open_loop(rate, duration, one)
            load_wall = duration
        load_end = time.perf_counter()
        delivered_at_end = await mesh.events() - base
        done = await mesh.wait_events(base + len(sent), timeout=60)
        window.stop()
    finally:
        stop_sampling.set()
        await sampling
    if result.errors:
        mode = "closed loop" if rate is None else f"open loop {rate:g}/s"
        print(f"steady ({mode}): {result.errors} patches failed, first: {result.first_error}")

    # The k-th patch in resourceVersion order is the replica's k-th pod event after ``base``;
    # it became visible between the last sample below base+k and the first one at or above:
    # take the midpoint of those two samples.
    sent.sort()
    lags: list[float] = []
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    j = 0
    for k, (_, t_send) in enumerate(sent, start=1):
        while j < len(samples) and samples[j][1] < base + k:
            j += 1
        if 0 < j < len(samples):
            lags.append(max(0.0, (samples[j - 1][0] + samples[j][0]) / 2 - t_send))
    return Phase(
        events=len(sent),
        wall=window.wall,
        cpu=window.seconds,
        foreign=window.foreign,
        extra={
            "patch_rate": len(sent) / load_wall,
            "deliver_rate": delivered_at_end / load_wall,
            "lag_p50_ms": common.percentile(lags, 0.50) * 1000,
            "lag_p99_ms": common.percentile(lags, 0.99) * 1000,
            "patch_p50_ms": common.percentile(patch_lat, 0.50) * 1000,
            "patch_p99_ms": common.percentile(patch_lat, 0.99) * 1000,
            "drain_ms": max(0.0, done - load_end) * 1000,
            "sample_ms": common.median(gaps) * 1000,
            "skipped": float(result.errors),
            "load_s": load_wall,
        },
    )


async def consistent(mesh: Mesh, namespaces: Sequence[str]) -> tuple[bool, int]:
    """Every pod's resourceVersion in the replica's cache equals the sandbox's."""
    want: dict[tuple[str, str], str] = {}
    for ns in namespaces:
        cont = ""
        while True:
            params = {"limit": "500", **({"continue": cont} if cont else {})}
            status, raw = await mesh.api.call("GET", f"/api/v1/namespaces/{ns}/pods", params=params)
            page = orjson.loads(raw)
            for item in page["items"]:
                meta = item["metadata"]
                want[(ns, meta["name"])] = meta["resourceVersion"]
            cont = page["metadata"].get("continue") or ""
            if not cont:
                break
    async with grpc.aio.insecure_channel(
        mesh.service_grpc, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        reply = await stub.ListCachedObjects(
            mesh_pb2.ListCachedObjectsRequest(kind=mesh_pb2.KIND_POD), timeout=30
        )
    have = {
        (k.namespace, k.name): k.resource_version for k in reply.keys if k.namespace in namespaces
    }
    return have == want, len(have)


def view_bytes_per_pod() -> int:
    """Bytes of the ObjectView the hub keeps for the bench's pod (as the sandbox returns it)."""
    from services.kit.projection import object_projector

    _, project = object_projector(api_version="v1", kind="Pod")
    pod = orjson.loads(common.pod_body("bench-w0", "p-1234", index=1234))
    pod["metadata"].update(
        uid="a3f01672-3554-4003-944e-3b07b74da761",
        resourceVersion="123456",
        creationTimestamp="2026-11-26T04:41:38Z",
        generation=1,
    )
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return len(project(pod).SerializeToString())


def _slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


# ---- the run -------------------------------------------------------------------------------------
@dataclass
class Results:
    live: list[Phase] = field(default_factory=list)
    backlog: list[Phase] = field(default_factory=list)
    steady: list[Phase] = field(default_factory=list)
    paced: list[Phase] = field(default_factory=list)
    rss: list[tuple[int, int, int, int]] = field(default_factory=list)  # pods, gw, svc, hub
    consistent: tuple[bool, int] = (False, 0)
    wall: float = 0.0


async def run(
    *, count: int, reps: int, steady_seconds: float, rate: float, workdir: Path
) -> Results:
    out = Results()
    t_start = time.perf_counter()
    mesh, started = await start_mesh(workdir)
    namespaces: list[str] = []
    try:
        await mesh.quiet(settle=1.0)
        out.rss.append(
            (0, common.proc_rss_bytes(mesh.gateway.pid), common.proc_rss_bytes(mesh.service.pid),
             await mesh.hub_pods())
        )  # fmt: skip

        async def record() -> None:
            await mesh.quiet(settle=1.0)
            out.rss.append(
                (len(namespaces) * count, common.proc_rss_bytes(mesh.gateway.pid),
                 common.proc_rss_bytes(mesh.service.pid), await mesh.hub_pods())
            )  # fmt: skip

        for rep in range(reps):
            ns = f"bench-w{rep}"
            namespaces.append(ns)
            out.live.append(await burst_live(mesh, ns, count))
            await record()
            ns = f"bench-b{rep}"
            namespaces.append(ns)
            out.backlog.append(await burst_backlog(mesh, ns, count))
            await record()
        targets = [(ns, f"p-{i}") for i in range(count) for ns in namespaces]
        per_rep = steady_seconds / reps
        for _ in range(reps):
            out.steady.append(await steady(mesh, targets, per_rep, rate=None))
            out.paced.append(await steady(mesh, targets, per_rep, rate=rate))
        out.consistent = await consistent(mesh, namespaces)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(mesh.gateway.pid, signal.SIGCONT)
        await mesh.api.close()
        await mesh.http.close()
        await common.stop_all(started)
    out.wall = time.perf_counter() - t_start
    return out


def _cpu_row(label: str, phases: Sequence[Phase]) -> list[str]:
    names = ("sandbox", "gateway", "rollout", "bench")
    cells = [
        common.spread([p.per_k(n) for p in phases], 3)
        + f" ({common.median([p.cores(n) for p in phases]):.2f})"
        for n in names
    ]
    share = common.spread([p.sandbox_share() * 100 for p in phases], 0) + " %"
    foreign = common.spread([p.foreign / p.wall for p in phases], 2)
    return [label, *cells, share, foreign]


def report(res: Results, *, count: int, reps: int, rate: float) -> None:
    med = common.median
    rows: list[list[str]] = []
    live, backlog, steady_, paced = res.live, res.backlog, res.steady, res.paced
    rows.append(
        [f"burst live: {count:,} pod creates, c={BURST_CONCURRENCY}",
         "creates/s " + common.spread([p.extra["create_rate"] for p in live]),
         "events/s at replica " + common.spread([p.extra["deliver_rate"] for p in live]),
         "tail after last create " + common.spread([p.extra["tail_ms"] for p in live]) + " ms"]
    )  # fmt: skip
    rows.append(
        [f"burst backlog: {count:,} queued while gateway stopped",
         "creates/s " + common.spread([p.extra["create_rate"] for p in backlog]),
         "events/s at replica " + common.spread([p.extra["deliver_rate"] for p in backlog]),
         f"pause ≤ {PAUSE_CAP:g} s; {int(med([p.events for p in backlog])):,} events"]
    )  # fmt: skip
    for label, phases in (
        (f"steady: label merge-patch, closed loop c={PATCH_CONCURRENCY}", steady_),
        (f"paced: label merge-patch, open loop {rate:,.0f}/s", paced),
    ):
        rows.append(
            [f"{label}, {reps}×{phases[0].extra['load_s']:.1f} s",
             "patches/s " + common.spread([p.extra["patch_rate"] for p in phases]),
             "events/s at replica " + common.spread([p.extra["deliver_rate"] for p in phases]),
             "lag p50 " + common.spread([p.extra["lag_p50_ms"] for p in phases], 1)
             + " / p99 " + common.spread([p.extra["lag_p99_ms"] for p in phases], 1) + " ms;"
             + " PATCH p50 " + common.spread([p.extra["patch_p50_ms"] for p in phases], 1)
             + " / p99 " + common.spread([p.extra["patch_p99_ms"] for p in phases], 1) + " ms"
             + (f"; {skipped:.0f} skipped (>256 in flight)" if (skipped := sum(
                 p.extra["skipped"] for p in phases)) else "")]
        )  # fmt: skip
    common.print_table(
        f"watch fan-out: sandbox → gateway hub → 1 rollout replica (median [min–max] of {reps})",
        ["phase", "API side", "delivered", "detail"],
        rows,
        notes=[
            "lag = event visible at the replica − PATCH sent (intended send time when paced); "
            "resolution: the replica's event counter is sampled every "
            f"{common.median([p.extra['sample_ms'] for p in steady_ + paced]):.0f} ms "
            "(midpoint of the two samples around the event)",
        ],
    )

    cpu_rows = [
        _cpu_row("burst live", live),
        _cpu_row("burst backlog (drain window)", backlog),
        _cpu_row("steady (closed loop)", steady_),
        _cpu_row(f"paced ({rate:,.0f}/s)", paced),
    ]
    common.print_table(
        "CPU seconds per 1,000 events (cores busy), per process",
        ["phase", "sandbox", "gateway", "rollout", "bench client", "sandbox share", "foreign"],
        cpu_rows,
        notes=[
            "cores = CPU s / wall s over the phase; ~1.0 = that process's event loop is saturated",
            "sandbox share = sandbox / (sandbox + gateway + rollout + bench client)",
            "backlog: CPU counted from SIGCONT to the last event only; the creates are not in "
            "it, and the sandbox wrote part of the watch stream into the socket during the pause",
            "paced: fixed per-second costs (idle loops, the 20 ms counter sampler) weigh more "
            "at 1,000 events/s",
        ],
    )

    pods = [float(p) for p, *_ in res.rss]
    gw = [(p, g / 1e6) for p, g, _, _ in res.rss]
    svc = [(p, s / 1e6) for p, _, s, _ in res.rss]
    gw_slope = _slope(gw) * 10_000
    svc_slope = _slope(svc) * 10_000
    view = view_bytes_per_pod()
    mem_rows = [
        [f"{int(p):,}", f"{g / 1e6:,.1f}", f"{s / 1e6:,.1f}", f"{h:,}"] for p, g, s, h in res.rss
    ]
    mem_rows.append(
        ["MB per 10,000 pods (least-squares slope)", f"{gw_slope:.1f}", f"{svc_slope:.1f}",
         f"views: {view * 10_000 / 1e6:.1f} MB ({view} B/pod)"]
    )  # fmt: skip
    ok, cached = res.consistent
    common.print_table(
        "memory: RSS after the hub holds N pods (target gateway ≤ 15 MB per 10,000 pods)",
        ["pods", "gateway RSS MB", "rollout RSS MB", "hub cache_objects (pods)"],
        mem_rows,
        notes=[
            f"pods up to {int(max(pods)):,}; RSS includes allocator fragmentation and buffers",
            f"consistent: replica cache == sandbox LIST for all {cached:,} pods: {ok}",
            f"took {res.wall:.0f} s",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.watch", description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="pods per burst")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steady-seconds", type=float, default=10.0, help="split over reps")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop patches/s")
    parser.add_argument("--quick", action="store_true", help="1,000 pods, 1 rep, 3 s steady")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.reps, args.steady_seconds = 1000, 1, 3.0
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        res = asyncio.run(
            run(
                count=args.count,
                reps=args.reps,
                steady_seconds=args.steady_seconds,
                rate=args.rate,
                workdir=Path(tmp),
            )
        )
    report(res, count=args.count, reps=args.reps, rate=args.rate)


if __name__ == "__main__":
    main()
