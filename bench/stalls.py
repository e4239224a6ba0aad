"""Event-loop stalls on a large cluster (issue 11): does the gateway keep answering while it
lists, relists and snapshots 100,000 pods, and does a replica while it applies its snapshot?

    python -m bench.stalls             # 100 namespaces × 1,000 pods (about 3 min)
    python -m bench.stalls --quick     # 20 × 500 (about 40 s)
    python -m bench stalls --quick     # the same through the bench runner

Processes, each its own interpreter on 127.0.0.1 (``services.cli.procs``): the sandbox
(neither ``--world`` nor ``--admission``), two replicas each of placement, rollout and budget
(plain TCP: mesh TLS changes nothing here but the handshake), and one gateway
(``--services``, ``--no-leader-election``). The pods are created before the mesh starts, with
POSTs (32 in flight), as a StatefulSet controller writes them (``common.pod_body``, ~2 KB as
stored).

CPUs: the gateway runs alone on CPU 0; the sandbox, the six replicas and the bench share the
others (``--no-pin`` lets everything run everywhere). In a cluster each pod has CPU of its
own; on 2 shared cores, eight busy processes would otherwise take turns, and a loop that
waits for a core looks like a loop that is held. Measured while all six replicas take their
first snapshot at once (2 cores, 8 processes): each 500-event message costs a replica 2-4 ms
of CPU (``time.thread_time``) but up to ~120 ms of wall time: that is waiting for a core.

Probes, from the bench process, one request in flight each, a new one 10 ms after the last
answer: the gateway's ``/healthz`` (ops port, plain HTTP), a pod DELETE ``AdmissionReview`` to
the gateway's ``/budget/validate-pods`` (HTTPS; the pod's namespace has no budget, so the
answer is an allow after one hop to a budget replica), and the ``/healthz`` of replica
``rollout-1``. A probe's latency is how long its answer took: a stalled event loop shows as
one slow answer, as an API server's webhook call or a kubelet's probe would see it. The
gateway and every replica also measure their own loop (``services.kit.looplag``: a 20 ms
timer's lateness, histogram ``kruise_mesh_event_loop_lag_seconds``); the table shows, per
phase, how many of those wake-ups were 50 ms or more late, and the largest bucket reached.

Phases, in one set of processes:

* **initial sync**: from the gateway's start until every replica is ready (it holds its
  snapshot) and the hub holds every pod: paged LISTs (500 a page), the hub's cache, six
  snapshots of about half the pods each.
* **quiet**: 3 s with nothing to do (the floor: what a probe costs on this machine).
* **relist**: ``POST /sandbox/expire-history`` ends every watch with 410 Gone; each kind is
  listed again and compared with the cache (nothing changed, so nothing is sent). Until the
  pod LIST is counted (``kruise_mesh_gateway_lists``), plus 1 s.
* **replica snapshot**: ``rollout-1`` is killed (SIGKILL) and started again on the same
  ports; the gateway snapshots its half of the pods again and the replica applies it. Until it
  is ready, plus 1 s; its own ``/healthz`` probe shows the apply.

The target (issue 11): no stall above 50 ms in the gateway, nor in a replica applying its
snapshot. Memory (RSS) of every process after the initial sync is printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench import common
from bench.budget import delete_review, review_uid
from services.cli import procs

SERVICES = ("placement", "rollout", "budget")
PROBE_GAP = 0.01
STALL = 0.05
_SAMPLE_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.M)


@dataclass(frozen=True)
class Plan:
    namespaces: int
    pods_per_namespace: int
    quiet: float = 3.0
    pin: bool = True  # the gateway alone on CPU 0, everything else on the others

    @property
    def gateway_cpus(self) -> set[int] | None:
        return {0} if self.pin else None

    @property
    def other_cpus(self) -> set[int] | None:
        return set(range(1, os.cpu_count() or 2)) if self.pin else None

    @property
    def pods(self) -> int:
        return self.namespaces * self.pods_per_namespace


def pin(pid: int, cpus: set[int] | None) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit the mask)."""
    if cpus is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def progress(message: str) -> None:
    print(f"  · {message}", flush=True)


# ---- probes --------------------------------------------------------------------------------------
@dataclass
class Probe:
    """One request at a time, ``PROBE_GAP`` after the last answer; (sent, latency) per answer."""

    name: str
    call: Callable[[], Awaitable[None]]
    samples: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    await self.call()
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.failures += 1  # not up yet, or restarting: not a latency
                await asyncio.sleep(0.05)
                continue
            self.samples.append((t0, time.perf_counter() - t0))
            await asyncio.sleep(PROBE_GAP)

    def window(self, start: float, end: float) -> list[float]:
        return [lat for (t, lat) in self.samples if start <= t < end]


@dataclass
class Phase:
    name: str
    start: float
    end: float
    lag_before: dict[str, dict[str, float]]
    lag_after: dict[str, dict[str, float]]


# ---- metrics -------------------------------------------------------------------------------------
async def scrape(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """``name{labels}`` → value of one ``/metrics`` page."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        raw = await resp.read()
    out: dict[str, float] = {}
    for m in _SAMPLE_RE.finditer(raw):
        out[(m.group(1) + (m.group(2) or b"")).decode()] = float(m.group(3))
    return out


GC_COUNT = 'kruise_mesh_gc_pause_seconds_count{generation="2"}'
GC_SUM = 'kruise_mesh_gc_pause_seconds_sum{generation="2"}'


def lag_buckets(samples: dict[str, float]) -> dict[str, float]:
    """The loop-lag histogram's cumulative buckets (upper bound as printed → count), and the
    full collections' count and seconds under the keys ``GC_COUNT`` and ``GC_SUM``."""
    prefix = 'kruise_mesh_event_loop_lag_seconds_bucket{le="'
    out = {k[len(prefix) : -2]: v for k, v in samples.items() if k.startswith(prefix)}
    for key in (GC_COUNT, GC_SUM):
        if key in samples:
            out[key] = samples[key]
    return out


def full_collections_between(before: dict[str, float], after: dict[str, float]) -> str:
    """``"<count> / <ms> ms"``: full collections and the time they held the process."""
    if GC_COUNT not in after:
        return "-"
    count = after[GC_COUNT] - before.get(GC_COUNT, 0)
    seconds = after.get(GC_SUM, 0) - before.get(GC_SUM, 0)
    return f"{count:.0f} / {seconds * 1000:,.0f} ms"


def stalls_between(before: dict[str, float], after: dict[str, float]) -> tuple[int, str]:
    """(wake-ups ≥ 50 ms late, the largest bucket any wake-up reached) between two scrapes."""
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    under = after.get("0.05", 0) - before.get("0.05", 0)
    worst = "-"
    previous = 0.0
    bounds = [b for b in after if b not in ("+Inf", GC_COUNT, GC_SUM)]
    for bound in sorted(bounds, key=float):
        count = after[bound] - before.get(bound, 0)
        if count > previous:
            worst = f"≤{float(bound) * 1000:,.0f} ms"
        previous = count
    if total > previous:
        worst = ">2.5 s"
    return int(total - under), worst


# ---- the mesh ------------------------------------------------------------------------------------
@dataclass
class Replica:
    service: str
    index: int
    port: int
    ops_port: int
    proc: procs.Proc | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_replica(
    replica: Replica, gateway: str, logs: Path, cpus: set[int] | None = None
) -> None:
    replica.proc = await procs.start(
        replica.name,
        f"services.{replica.service}",
        ["--host", "127.0.0.1", "--port", str(replica.port), "--ops-port", str(replica.ops_port),
         "--gateway", gateway, "--advertise", replica.address],
        log_dir=logs,
    )  # fmt: skip
    pin(replica.proc.pid, cpus)


async def ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def create_world(api: common.Api, plan: Plan) -> float:
    t0 = time.perf_counter()
    for n in range(plan.namespaces):
        namespace = f"big-{n:03d}"
        await api.ensure_namespace(namespace)
        result = await common.create_pods(
            api, namespace, plan.pods_per_namespace, concurrency=32, time_cap=300
        )
        if result.errors:
            raise RuntimeError(f"creating pods in {namespace}: {result.first_error}")
        if (n + 1) % max(1, plan.namespaces // 10) == 0:
            progress(f"{(n + 1) * plan.pods_per_namespace:,} pods created")
    return time.perf_counter() - t0


async def run(plan: Plan, workdir: Path) -> tuple[list[Phase], list[Probe], dict[str, int], float]:
    logs = workdir / "logs"
    started: list[procs.Proc] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    webhook_http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=insecure, limit=1),
        timeout=aiohttp.ClientTimeout(total=10),
    )
    probes: list[Probe] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        sandbox = await common.start_sandbox(workdir)
        started.append(sandbox)
        async with common.Api(sandbox.ready, connections=64) as api:
            progress(f"creating {plan.pods:,} pods in {plan.namespaces} namespaces")
            took = await create_world(api, plan)
            progress(f"created in {took:.0f} s ({plan.pods / took:,.0f}/s)")
            pin(os.getpid(), plan.other_cpus)  # the processes started from here inherit it
            pin(sandbox.pid, plan.other_cpus)
            status, raw = await api.call("GET", "/api/v1/namespaces/big-000/pods/pod-0")
            if status != 200:
                raise RuntimeError(f"pod-0: {status} {raw[:200]!r}")
            review = delete_review(orjson.loads(raw), uid=review_uid(1))

            gateway_port = procs.free_port()
            gateway_ops, webhook_port = procs.free_port(), procs.free_port()
            replicas = [
                Replica(svc, i, procs.free_port(), procs.free_port())
                for svc in SERVICES
                for i in range(2)
            ]
            for r in replicas:
                await start_replica(r, f"127.0.0.1:{gateway_port}", logs, plan.other_cpus)
                assert r.proc is not None
                started.insert(0, r.proc)
            watched = replicas[3]  # rollout-1

            async def healthz(port: int) -> None:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise aiohttp.ClientError(f"healthz {resp.status}")

            async def webhook() -> None:
                url = f"https://127.0.0.1:{webhook_port}/budget/validate-pods?timeout=10s"
                async with webhook_http.post(
                    url, data=review, headers={"Content-Type": "application/json"}
                ) as resp:
                    body = await resp.read()
                    if resp.status != 200 or b'"allowed":true' not in body:
                        raise aiohttp.ClientError(f"webhook {resp.status} {body[:200]!r}")

            probes = [
                Probe("gateway /healthz", lambda: healthz(gateway_ops)),
                Probe("gateway webhook", webhook),
                Probe(f"{watched.name} /healthz", lambda: healthz(watched.ops_port)),
            ]
            tasks = [asyncio.create_task(p.run()) for p in probes]
            ops_ports = {"gateway": gateway_ops, **{r.name: r.ops_port for r in replicas}}

            async def lags() -> dict[str, dict[str, float]]:
                out = {}
                for name, port in ops_ports.items():
                    try:
                        out[name] = lag_buckets(await scrape(http, port))
                    except aiohttp.ClientError:
                        out[name] = {}
                return out

            phases: list[Phase] = []
            zero: dict[str, dict[str, float]] = {name: {} for name in ops_ports}

            # -- initial sync
            services = ";".join(
                f"{svc}=" + ",".join(r.address for r in replicas if r.service == svc)
                for svc in SERVICES
            )
            t0 = time.perf_counter()
            gateway = await procs.start(
                "gateway",
                "services.gateway",
                ["--kubeconfig", str(sandbox.ready["kubeconfig"]), "--host", "127.0.0.1",
                 "--grpc-port", str(gateway_port), "--webhook-port", str(webhook_port),
                 "--ops-port", str(gateway_ops), "--services", services,
                 "--cert-dir", str(workdir / "gateway-certs"), "--no-leader-election"],
                log_dir=logs,
                timeout=120,
            )  # fmt: skip
            started.insert(0, gateway)
            pin(gateway.pid, plan.gateway_cpus)

            async def all_ready() -> bool:
                return all([await ready(http, r.ops_port) for r in replicas])

            await until(all_ready, timeout=600, what="every replica synced")
            t1 = time.perf_counter()
            progress(f"initial sync: every replica ready after {t1 - t0:.1f} s")
            phases.append(Phase("initial sync", t0, t1, zero, await lags()))
            rss = {
                "gateway": common.proc_rss_bytes(gateway.pid),
                **{r.name: common.proc_rss_bytes(r.proc.pid) for r in replicas if r.proc},
            }

            # -- quiet
            before = await lags()
            t0 = time.perf_counter()
            await asyncio.sleep(plan.quiet)
            phases.append(Phase("quiet", t0, time.perf_counter(), before, await lags()))

            # -- relist
            pod_lists = 'kruise_mesh_gateway_lists_total{api_version="v1",kind="Pod"}'
            lists_before = (await scrape(http, gateway_ops)).get(pod_lists, 0)
            before = await lags()
            t0 = time.perf_counter()
            status, raw = await api.call("POST", "/sandbox/v1/expire-history")
            if status != 200:
                raise RuntimeError(f"expire-history: {status} {raw[:200]!r}")

            async def relisted() -> bool:
                return (await scrape(http, gateway_ops)).get(pod_lists, 0) > lists_before

            await until(relisted, timeout=300, what="the pod relist")
            t1 = time.perf_counter()
            progress(f"relist: pods listed again after {t1 - t0:.1f} s")
            await asyncio.sleep(1.0)
            phases.append(Phase("relist", t0, time.perf_counter(), before, await lags()))

            # -- replica snapshot
            before = await lags()
            t0 = time.perf_counter()
            assert watched.proc is not None
            watched.proc.process.send_signal(signal.SIGKILL)
            await watched.proc.process.wait()
            started.remove(watched.proc)
            await start_replica(watched, f"127.0.0.1:{gateway_port}", logs, plan.other_cpus)
            assert watched.proc is not None
            started.insert(0, watched.proc)
            before[watched.name] = {}

            async def watched_ready() -> bool:
                return await ready(http, watched.ops_port)

            await until(watched_ready, timeout=300, what=f"{watched.name} synced again")
            t1 = time.perf_counter()
            progress(f"replica snapshot: {watched.name} ready again after {t1 - t0:.1f} s")
            await asyncio.sleep(1.0)
            phases.append(Phase("replica snapshot", t0, time.perf_counter(), before, await lags()))
            return phases, probes, rss, took
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await http.close()
        await webhook_http.close()
        await common.stop_all(started)


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:,.0f}"


def print_tables(
    plan: Plan, phases: Sequence[Phase], probes: Sequence[Probe], rss: dict[str, int]
) -> None:
    rows: list[list[str]] = []
    for phase in phases:
        for probe in probes:
            lat = probe.window(phase.start, phase.end)
            rows.append(
                [
                    f"{phase.name} ({phase.end - phase.start:.1f} s)",
                    probe.name,
                    f"{len(lat):,}",
                    ms(common.percentile(lat, 0.5)),
                    ms(common.percentile(lat, 0.99)),
                    ms(max(lat) if lat else float("nan")),
                    f"{sum(1 for v in lat if v >= STALL):,}",
                ]
            )
    common.print_table(
        f"Probes while the mesh works on {plan.pods:,} pods (latency, ms)",
        ["phase", "probe", "answers", "p50", "p99", "max", f"≥{STALL * 1000:.0f} ms"],
        rows,
        notes=[
            "one request in flight per probe, 10 ms after the last answer; a stalled loop "
            "shows as one slow answer",
            "the gateway alone on CPU 0, the rest on the others"
            if plan.pin
            else "every process on every CPU",
            "a slow answer can also be a process (the prober's included) waiting for a core, "
            "which the loop monitor below counts too",
        ],
    )
    names = list(phases[0].lag_after)
    lag_rows: list[list[str]] = []
    for phase in phases:
        cells = [phase.name]
        for name in names:
            count, worst = stalls_between(phase.lag_before.get(name, {}), phase.lag_after[name])
            cells.append(f"{count} ({worst})")
        lag_rows.append(cells)
        lag_rows.append(
            [
                "  full GCs / their time",
                *(
                    full_collections_between(phase.lag_before.get(n, {}), phase.lag_after[n])
                    for n in names
                ),
            ]
        )
    lag_rows.append(["RSS after sync (MB)", *(f"{rss.get(n, 0) / 1e6:,.0f}" for n in names)])
    common.print_table(
        "Each process's own event loop: wake-ups ≥ 50 ms late (worst bucket)",
        ["phase", *names],
        lag_rows,
        notes=[
            "a 20 ms timer's lateness (services.kit.looplag); counts are differences of the "
            "histogram between the phase's start and end",
            "full GCs: generation-2 collections and the time they took "
            "(kruise_mesh_gc_pause_seconds)",
            f"whole mesh RSS after sync: {sum(rss.values()) / 1e6:,.0f} MB",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stalls", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 namespaces × 500 pods")
    parser.add_argument("--namespaces", type=int, default=None)
    parser.add_argument("--pods-per-namespace", type=int, default=None)
    parser.add_argument("--no-pin", action="store_true", help="let every process run on every CPU")
    args, _ = parser.parse_known_args(argv)
    plan = Plan(
        namespaces=args.namespaces or (20 if args.quick else 100),
        pods_per_namespace=args.pods_per_namespace or (500 if args.quick else 1000),
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
    )
    with tempfile.TemporaryDirectory(prefix="bench-stalls-") as tmp:
        phases, probes, rss, _ = asyncio.run(run(plan, Path(tmp)))
    print_tables(plan, phases, probes, rss)


if __name__ == "__main__":
    main()
