"""Mesh mutual TLS, on and off, in one run (issue 10's first figure): what mTLS on every
gateway ↔ service connection costs the admission round trip and the budget's decisions.

    python -m bench.mesh_tls            # 4 repetitions (about 5 min on 2 busy vCPUs)
    python -m bench.mesh_tls --quick    # 1 repetition, smaller world (about 1 min)
    python -m bench mesh_tls --quick    # the same through the bench runner

Two whole meshes run side by side on 127.0.0.1, both at once on different ports
(``services.cli.local.LocalMesh``: sandbox with admission, gateway, one replica of each
service, each its own process): ``mesh_tls=True`` (mutual TLS with mesh certificates on every
gateway ↔ replica connection: reviews, Sync, ClusterService) and ``mesh_tls=False`` (plain
TCP). Everything else is the same: the bench → gateway webhook hop is HTTPS in both (the
gateway's serving certificate; ``webhook_client_auth`` off, since the bench's clients post the
reviews themselves), and the gateway → sandbox API hop is HTTPS in both. Before measuring, the
bench checks that the mTLS mesh's budget replica refuses a plaintext gRPC call and the other
mesh's accepts it. Each repetition measures both meshes in three steps (figure 1 (a), (b),
figure 2); the order flips at every step (on first, off first, on first, then the other way
round in the next repetition, so each figure's order alternates per repetition); ratios on/off
are taken within a repetition, then the median [min–max] is reported. The mesh not being
measured idles meanwhile; its CPU over each window is shown ("idle mesh").

**1. Admission round trip, no write.** Pod DELETE AdmissionReviews posted to the gateway's
``/budget/validate-pods`` (``bench.budget``'s figure 1 reviews: (a) a Running, Ready pod of a
ReplicaSet of a Deployment in a namespace without a budget: unprotected; (b) the same pod
annotated with a budget that does not exist), by ``bench.admission``'s load generator in its
own process (``bench.budget.run_load``): a closed loop of ``--connections`` (32) keep-alive TLS
connections, one review in flight on each, ``--count`` reviews or ``--time-cap`` seconds,
whichever comes first, after a warm-up of 256 reviews. Reported: reviews/s, p50/p99 latency
(send → answer) and the CPU of the gateway and the budget replica (utime+stime from
``/proc`` over the measured window) per review. An answer other than 200 with
``"allowed":true`` is an error.

**2. Budget decisions that write.** ``bench.budget``'s figure 2a: one budget
(``maxUnavailable: 100%``) over ``--pods`` ready pods; one pod DELETE review per distinct pod
posted straight to the gateway (``bench.budget.closed_loop``: ``--concurrency`` keep-alive TLS
connections, one review in flight on each) until every pod has been sent or ``--window``
seconds have passed. Every admitted decision is in a status write (budget replica →
ClusterService on the gateway, over the mesh connection → the sandbox) before it is answered.
Reported: admitted decisions/s, latency of the allowed answers, the CPU of gateway + budget
replica + sandbox per admitted decision, and a check that ``status.disruptedPods`` holds
exactly the admitted pods. The records expire after 20 s: before each repetition the bench
waits until both budgets are full again and every budget work queue is empty, so no expiry
falls into a window.

The target (issue 10): mTLS costs ≤ 10 % throughput, i.e. the on/off throughput ratio's median
≥ 0.90. Any error, a wrong count or a phase that does not converge fails the run (exit status
1) after the table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import orjson

from bench import budget, common
from bench.admission import Workload
from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.local import LocalMesh

VARIANTS = ("off", "on")  # mesh_tls False / True
REVIEWS = ("unprotected", "no such budget")
TARGET_RATIO = 0.90  # mTLS costs at most 10 % throughput
progress = budget.progress


@dataclass(frozen=True)
class Plan:
    reps: int
    connections: int  # figure 1: in flight (one per connection)
    count: int  # figure 1: reviews per load at most
    time_cap: float  # figure 1: seconds per load at most
    pods: int  # figure 2: pods of the one budget
    window: float  # figure 2: seconds of load at most
    concurrency: int  # figure 2: in flight
    settle_timeout: float

    def budget_plan(self) -> budget.Plan:
        """The fields ``bench.budget``'s helpers read (the rest unused)."""
        return budget.Plan(
            reps=self.reps,
            rate=0.0,
            duration=0.0,
            one_pods=self.pods,
            budgets=0,
            pods_per_budget=0,
            window=self.window,
            concurrency=self.concurrency,
            storm_pods=0,
            storm_allowed=0,
            budget_replicas=1,
            figures=frozenset(),
            settle_timeout=self.settle_timeout,
        )


# ---- per-variant measurements --------------------------------------------------------------------
@dataclass
class Fig1Cell:
    rate: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)  # ms
    p99: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # gateway + budget replica per review
    gateway_us: list[float] = field(default_factory=list)
    budget_us: list[float] = field(default_factory=list)
    idle_cores: list[float] = field(default_factory=list)  # the other mesh
    foreign: list[float] = field(default_factory=list)
    answered: int = 0
    errors: int = 0


@dataclass
class Fig2Cell:
    rate: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # gateway + budget + sandbox per decision
    gateway_us: list[float] = field(default_factory=list)
    budget_us: list[float] = field(default_factory=list)
    sandbox_us: list[float] = field(default_factory=list)
    admitted: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    idle_cores: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    errors: int = 0
    refused: int = 0


@dataclass
class Side:
    """One mesh and what the bench keeps about it."""

    name: str  # "on" / "off"
    mesh: LocalMesh
    cafile: str = ""
    bodies: dict[str, str] = field(default_factory=dict)  # figure 1 review → body file
    world: budget.World | None = None  # figure 2
    reviews: list[tuple[str, str, bytes]] = field(default_factory=list)
    fig1: dict[str, Fig1Cell] = field(default_factory=lambda: {r: Fig1Cell() for r in REVIEWS})
    fig2: Fig2Cell = field(default_factory=Fig2Cell)

    @property
    def budget_proc(self) -> str:
        names = budget.budget_names(self.mesh)
        assert len(names) == 1, names
        return names[0]

    def ops_ports(self) -> list[int]:
        return [int(self.mesh.procs[self.budget_proc].ready["ops_port"])]

    def pids(self, other: Side) -> dict[str, int]:
        """Every process of both meshes; the other mesh's named ``idle:<name>``."""
        own = {name: proc.pid for name, proc in self.mesh.procs.items()}
        idle = {f"idle:{name}": proc.pid for name, proc in other.mesh.procs.items()}
        return own | idle


def idle_seconds(seconds: Mapping[str, float]) -> float:
    return sum(v for k, v in seconds.items() if k.startswith("idle:"))


# ---- setup ---------------------------------------------------------------------------------------
async def check_transport(side: Side) -> None:
    """The mTLS mesh's budget replica refuses a plaintext call; the other mesh's answers it."""
    address = side.mesh.addresses["budget"][0]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        try:
            await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=3)
            plaintext_ok = True
        except grpc.aio.AioRpcError:
            plaintext_ok = False
    if plaintext_ok == (side.name == "on"):
        raise budget.BenchError(
            f"mesh {side.name}: a plaintext gRPC call to the budget replica "
            f"{'succeeded' if plaintext_ok else 'failed'}: the mesh is not what it says"
        )


async def prepare(side: Side, api: common.Api, plan: Plan, workdir: Path) -> None:
    """Both figures' worlds in ``side``'s sandbox, the reviews, and a check of each."""
    side.cafile = str(side.mesh.workdir / "gateway-certs" / "ca.crt")
    open_world = budget.World(api, budget.OPEN_NS, 2, None)
    one = budget.World(api, budget.ONE_NS, plan.pods, "100%")
    await budget.build([open_world, one], plan.budget_plan(), f"mesh {side.name} worlds")
    pod = sorted(await open_world.pods(), key=lambda p: str(p["metadata"]["name"]))[0]
    missing = orjson.loads(orjson.dumps(pod))
    missing["metadata"].setdefault("annotations", {})[budget.RELATED] = "no-such-budget"
    bodies = {
        "unprotected": budget.delete_review(pod, uid=budget.review_uid(1)),
        "no such budget": budget.delete_review(missing, uid=budget.review_uid(2)),
    }
    for name, body in bodies.items():
        answer = await budget.post_review(side.mesh.webhook_port, side.cafile, body)
        if answer.get("allowed") is not True:
            raise budget.BenchError(f"mesh {side.name} {name}: not allowed: {answer}")
        path = workdir / f"review-{side.name}-{name.replace(' ', '-')}.json"
        path.write_bytes(body + b"\n")
        side.bodies[name] = str(path)
    side.world = one
    side.reviews = await budget.delete_reviews([one], f"mesh {side.name}")


async def start_meshes(stack: contextlib.AsyncExitStack, workdir: Path) -> dict[str, Side]:
    """Both meshes, started at once; each stopped when ``stack`` closes."""

    async def one(name: str) -> Side:
        mesh = LocalMesh(
            workdir=workdir / f"mesh-{name}",
            replicas={"budget": 1, "placement": 1, "rollout": 1},
            sandbox_args=["--history", "200000"],
            webhook_client_auth=False,
            mesh_tls=name == "on",
        )
        await stack.enter_async_context(mesh)
        return Side(name, mesh)

    started = await asyncio.gather(*(one(n) for n in VARIANTS), return_exceptions=True)
    for result in started:
        if isinstance(result, BaseException):
            raise result
    return {side.name: side for side in started if isinstance(side, Side)}


# ---- figure 1 ------------------------------------------------------------------------------------
async def figure1_load(side: Side, other: Side, review: str, plan: Plan, rep: int) -> None:
    workload = Workload(
        f"closed {plan.connections}",
        connections=plan.connections,
        count=plan.count,
        time_cap=plan.time_cap,
    )
    load, cpu, foreign = await asyncio.to_thread(
        budget.run_load,
        port=side.mesh.webhook_port,
        cafile=side.cafile,
        body=side.bodies[review],
        workload=workload,
        pids=side.pids(other),
        others={},
    )
    cell = side.fig1[review]
    answered = load["ok"] + load["errors"]
    per = 1e6 / max(answered, 1)
    gateway, replica = cpu["gateway"], cpu[side.budget_proc]
    cell.rate.append(load["ok"] / load["wall"])
    cell.p50.append(common.percentile(load["latencies_ms"], 0.50))
    cell.p99.append(common.percentile(load["latencies_ms"], 0.99))
    cell.cpu_us.append((gateway + replica) * per)
    cell.gateway_us.append(gateway * per)
    cell.budget_us.append(replica * per)
    cell.idle_cores.append(idle_seconds(cpu) / load["wall"])
    cell.foreign.append(foreign)
    cell.answered += answered
    cell.errors += load["errors"]
    progress(
        f"rep {rep + 1} figure 1 {review}, mTLS {side.name}: {cell.rate[-1]:,.0f}/s, "
        f"p99 {cell.p99[-1]:.2f} ms, {cell.cpu_us[-1]:,.0f} µs/review"
    )


# ---- figure 2 ------------------------------------------------------------------------------------
async def figure2_window(
    side: Side, other: Side, http: aiohttp.ClientSession, plan: Plan, rep: int, failures: list[str]
) -> None:
    assert side.world is not None
    bplan = plan.budget_plan()
    ops = side.ops_ports()
    await budget.wait_queues(http, ops, bplan)
    before = await budget.scrape(http, ops)
    with common.CpuWindow(side.pids(other)) as cpu:
        window = await budget.closed_loop(side.mesh.webhook_port, side.cafile, side.reviews, bplan)
    after = await budget.scrape(http, ops)
    what = f"rep {rep + 1} figure 2, mTLS {side.name}"
    cell = side.fig2
    cell.verified.append(await budget.verify([side.world], window, failures, what))
    per = 1e6 / max(window.allowed, 1)
    seconds = cpu.seconds
    gateway, replica, sandbox = (
        seconds["gateway"],
        seconds[side.budget_proc],
        seconds["sandbox"],
    )
    cell.rate.append(window.allowed / window.wall)
    cell.p50.append(common.percentile(window.latencies, 0.50) * 1000)
    cell.p99.append(common.percentile(window.latencies, 0.99) * 1000)
    cell.cpu_us.append((gateway + replica + sandbox) * per)
    cell.gateway_us.append(gateway * per)
    cell.budget_us.append(replica * per)
    cell.sandbox_us.append(sandbox * per)
    cell.admitted.append(window.allowed)
    cell.writes.append(budget.by_label(before, after, budget.WRITES, "result").get("written", 0))
    cell.idle_cores.append(idle_seconds(seconds) / cpu.wall)
    cell.foreign.append(cpu.foreign / cpu.wall)
    cell.errors += window.errors
    cell.refused += sum(window.refused.values())
    if window.errors:
        failures.append(f"{what}: {window.errors} errors ({window.first_error})")
    if window.refused:
        failures.append(f"{what}: refused {dict(window.refused)} ({window.first_refusal})")
    progress(
        f"{what}: {window.allowed} admitted in {window.wall:.2f} s "
        f"({cell.rate[-1]:,.0f}/s), {cell.cpu_us[-1]:,.0f} µs/decision"
    )


# ---- the run -------------------------------------------------------------------------------------
async def settle(sides: Sequence[Side], http: aiohttp.ClientSession, plan: Plan, what: str) -> None:
    """Both budgets full again (last repetition's records expired) and every queue empty."""
    bplan = plan.budget_plan()
    for side in sides:
        assert side.world is not None
        await budget.wait_full([side.world], bplan, f"mesh {side.name} {what}")
        await budget.wait_queues(http, side.ops_ports(), bplan)


async def run(plan: Plan, workdir: Path) -> tuple[dict[str, Side], list[str], float]:
    failures: list[str] = []
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        sides = await start_meshes(stack, workdir)
        progress(f"both meshes up after {time.monotonic() - started:.1f} s")
        for side in sides.values():
            await check_transport(side)
        apis = {
            name: await stack.enter_async_context(
                common.Api(side.mesh.procs["sandbox"].ready, connections=32)
            )
            for name, side in sides.items()
        }
        await asyncio.gather(
            *(prepare(side, apis[name], plan, workdir) for name, side in sides.items())
        )
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )
        step = 0  # the order flips at every step: 3 per rep, so each figure's flips per rep

        def order() -> list[tuple[Side, Side]]:
            nonlocal step
            first, second = ("on", "off") if step % 2 == 0 else ("off", "on")
            step += 1
            return [(sides[first], sides[second]), (sides[second], sides[first])]

        for rep in range(plan.reps):
            await settle(list(sides.values()), http, plan, f"before rep {rep + 1}")
            for review in REVIEWS:
                for side, other in order():
                    await figure1_load(side, other, review, plan, rep)
            for side, other in order():
                await figure2_window(side, other, http, plan, rep, failures)
        for side in sides.values():
            for review, cell in side.fig1.items():
                if cell.errors:
                    failures.append(
                        f"figure 1 {review}, mTLS {side.name}: {cell.errors} of "
                        f"{cell.answered} answers not allowed"
                    )
    return sides, failures, time.monotonic() - started


# ---- the table -----------------------------------------------------------------------------------
def ratios(off: Sequence[float], on: Sequence[float]) -> list[float]:
    return [b / a for a, b in zip(off, on, strict=True) if a]


def verdict(rate_ratios: Sequence[float]) -> str:
    if not rate_ratios:
        return "-"
    mid, low, high = common.median(rate_ratios), min(rate_ratios), max(rate_ratios)
    met = "met" if mid >= TARGET_RATIO else "NOT met"
    cost = (1 - mid) * 100
    word = "costs" if cost >= 0 else "gains"
    out = f"{met} at the median: mTLS {word} {abs(cost):.1f} % "
    out += f"(ratio {mid:.2f} [{low:.2f}–{high:.2f}])"
    if low < TARGET_RATIO <= high:
        out += f"; the spread straddles {TARGET_RATIO:.2f}: not resolved by this run's noise"
    return out


def print_table(sides: Mapping[str, Side], plan: Plan, took: float) -> None:
    off, on = sides["off"], sides["on"]
    rows: list[list[str]] = []

    def row(what: str, a: Sequence[float], b: Sequence[float], digits: int) -> None:
        rows.append(
            [
                what,
                common.spread(a, digits),
                common.spread(b, digits),
                common.spread(ratios(a, b), 2),
            ]
        )

    verdicts: list[str] = []
    for letter, review in zip("ab", REVIEWS, strict=True):
        a, b = off.fig1[review], on.fig1[review]
        label = f"1{letter}"
        rows.append([f"({label}) round trip, no write: {review}", "", "", ""])
        row("  reviews/s", a.rate, b.rate, 0)
        row("  p50 ms", a.p50, b.p50, 2)
        row("  p99 ms", a.p99, b.p99, 2)
        row("  CPU µs/review (gateway + budget)", a.cpu_us, b.cpu_us, 0)
        row("    of which gateway", a.gateway_us, b.gateway_us, 0)
        row("    of which budget replica", a.budget_us, b.budget_us, 0)
        row("  idle mesh cores", a.idle_cores, b.idle_cores, 2)
        rows[-1][3] = ""
        row("  foreign cores (not our processes)", a.foreign, b.foreign, 2)
        rows[-1][3] = ""
        rows.append(
            ["  errors / answered", f"{a.errors} / {a.answered}", f"{b.errors} / {b.answered}", ""]
        )
        verdicts.append(f"({label}) throughput ≤ 10 % cost: {verdict(ratios(a.rate, b.rate))}")
    a2, b2 = off.fig2, on.fig2
    rows.append(["(2) decisions that write, 1 budget", "", "", ""])
    row("  admitted decisions/s", a2.rate, b2.rate, 0)
    row("  p50 ms (allowed answers)", a2.p50, b2.p50, 1)
    row("  p99 ms (allowed answers)", a2.p99, b2.p99, 1)
    row("  CPU µs/decision (gateway + budget + sandbox)", a2.cpu_us, b2.cpu_us, 0)
    row("    of which gateway", a2.gateway_us, b2.gateway_us, 0)
    row("    of which budget replica", a2.budget_us, b2.budget_us, 0)
    row("    of which sandbox", a2.sandbox_us, b2.sandbox_us, 0)
    row("  admitted per window", a2.admitted, b2.admitted, 0)
    row("  status writes (admission path)", a2.writes, b2.writes, 0)
    row("  idle mesh cores", a2.idle_cores, b2.idle_cores, 2)
    rows[-1][3] = ""
    row("  foreign cores (not our processes)", a2.foreign, b2.foreign, 2)
    rows[-1][3] = ""
    rows.append(
        [
            "  disruptedPods = admitted pods",
            "yes" if all(a2.verified) else "NO",
            "yes" if all(b2.verified) else "NO",
            "",
        ]
    )
    rows.append(
        [
            "  errors / refused",
            f"{a2.errors} / {a2.refused}",
            f"{b2.errors} / {b2.refused}",
            "",
        ]
    )
    verdicts.append(f"(2) throughput ≤ 10 % cost: {verdict(ratios(a2.rate, b2.rate))}")
    common.print_table(
        f"mesh_tls — mesh mutual TLS off and on, two meshes side by side, order alternating; "
        f"median [min–max] of {plan.reps} repetitions",
        ["", "mTLS off (plain TCP)", "mTLS on", "on/off (same rep)"],
        rows,
        notes=[
            *verdicts,
            f"(1) pod DELETE reviews to /budget/validate-pods, no write: closed loop, "
            f"{plan.connections} keep-alive TLS connections × 1 in flight, ≤ {plan.count:,} "
            f"reviews or ≤ {plan.time_cap:g} s per load, after 256 warm-up reviews "
            "(bench.admission's load generator, its own process)",
            f"(2) one budget (maxUnavailable 100%) over {plan.pods:,} ready pods; one DELETE "
            f"review per distinct pod, {plan.concurrency} in flight, ≤ {plan.window:g} s; each "
            "admitted decision in a status write (budget → gateway ClusterService → sandbox) "
            "before it is answered",
            "mTLS covers gateway ↔ replica gRPC (reviews, Sync, ClusterService); the webhook "
            "hop (bench → gateway) and the gateway → sandbox API are HTTPS in both columns; "
            "checked: the mTLS mesh's replica refuses plaintext gRPC, the other accepts it",
            "CPU = utime+stime from /proc over the measured window; idle mesh = the other "
            "mesh's processes meanwhile; foreign = machine busy time outside both meshes, the "
            "load generator and the bench",
            f"took {took:.0f} s",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh_tls", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller world, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (even: each order equally often)")
    parser.add_argument("--connections", type=int, default=32, help="figure 1 in flight")
    parser.add_argument("--count", type=int, help="figure 1 reviews per load at most")
    parser.add_argument("--time-cap", type=float, help="figure 1 seconds per load at most")
    parser.add_argument("--pods", type=int, help="figure 2 pods of the one budget")
    parser.add_argument("--window", type=float, help="figure 2 seconds of load at most")
    parser.add_argument("--concurrency", type=int, default=64, help="figure 2 in flight")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        reps=args.reps or (1 if quick else 4),
        connections=args.connections,
        count=args.count or (3000 if quick else 10000),
        time_cap=args.time_cap or (1.5 if quick else 3.0),
        pods=args.pods or (400 if quick else 1200),
        window=args.window or (2.0 if quick else 5.0),
        concurrency=args.concurrency,
        settle_timeout=120.0,
    )
    if plan.pods > 2000:
        raise SystemExit("more than 2,000 pods per budget: the cap would refuse, not the budget")
    if plan.window > 15:
        raise SystemExit("--window must stay well under the 20 s lifetime of a recorded pod")
    with tempfile.TemporaryDirectory(prefix="bench-mesh-tls-") as tmp:
        try:
            sides, failures, took = asyncio.run(
                asyncio.wait_for(run(plan, Path(tmp)), timeout=300 if quick else 900)
            )
        except budget.BenchError as e:
            raise SystemExit(f"mesh_tls bench failed: {e}") from e
    print_table(sides, plan, took)
    if failures:
        for failure in failures:
            print(f"FAILED: {failure}", flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
