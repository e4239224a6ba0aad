"""The sandbox API server itself: creates, LIST, watch delivery, and 100,000 pods.

    python -m bench.sandbox            # the whole run (about 1.5–2 min), prints one table
    python -m bench.sandbox --quick    # a smoke run with small counts

One ``python -m sandbox`` process (neither ``--world`` nor ``--admission``, default watch
history of 20,000 events) on 127.0.0.1 over HTTPS; the bench process is the client (aiohttp,
keep-alive, the sandbox's CA and bearer token). The pod is ``bench.common.pod_body``: about
1.2 KB as sent, 2.0 KB as stored (defaults, uid, status). Phases, in order, on the same
process (pods accumulate, one namespace per phase):

* **create c=1 / c=32**: closed-loop POSTs, bounded by a count and a time cap. The c=32
  phase creates exactly 10,000 pods in namespace ``list`` over its repetitions.
* **LIST 10,000**: ``GET /api/v1/namespaces/list/pods`` without a limit; seconds until the
  whole body is read (the client does not parse it) and its size.
* **watch replay**: watches from the resourceVersion before the c=32 phase replay those
  10,000 ADDED events from the sandbox's history as fast as it writes them; the client only
  counts lines. The first replay also encodes each event's JSON (the sandbox caches the
  encoded line per event); it is shown as "cold", the rest are "warm". 4 watchers run
  concurrently; their rate is per watcher, and the aggregate is 4× that.
* **watch live**: 1 or 4 watchers attached, then 2,000 creates at c=32: each watcher's
  delivery rate and the create rate under that fan-out.
* **100,000 pods**: creates at c=64 in namespace ``big`` until the sandbox holds 100,000
  pods or a 70 s cap (the number reached is printed; nothing is added outside HTTP), then the
  sandbox's RSS and one paged LIST of every pod with ``limit=500`` (the client parses each
  page for its ``continue`` token, as any client must).

CPU is ``utime+stime`` of the sandbox (and of the client) over each measured window; cells
are median [min–max] over repetitions (3 unless stated); foreign is the machine's busy time
not spent in these two processes (other tenants on the same 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench import common

WATCH_CAP = 60.0


@dataclass
class Cell:
    """Repetitions of one measurement: values per metric name."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **metrics: float) -> None:
        for name, value in metrics.items():
            self.values.setdefault(name, []).append(value)

    def get(self, name: str, digits: int = 0, scale: float = 1.0) -> str:
        return common.spread(self.values.get(name, []), digits, scale)


async def _rv(api: common.Api) -> str:
    return str((await api.stats())["resourceVersion"])


async def watch_lines(api: common.Api, namespace: str, rv: str, want: int) -> float:
    """Open a watch from ``rv`` and read until ``want`` events; seconds from first byte
    requested to the last event read."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    t0 = time.perf_counter()
    async with api.session.get(
        api.url + path, params={"watch": "1", "resourceVersion": rv}
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"watch: {resp.status} {(await resp.read())[:200]!r}")
        seen = 0
        async for chunk in resp.content.iter_any():
            seen += chunk.count(b"\n")
            if seen >= want:
                break
    if seen < want:
        raise RuntimeError(f"watch ended after {seen} of {want} events")
    return time.perf_counter() - t0


class LiveWatch:
    """A watch whose request has been answered (so the sandbox has registered it); ``read``
    counts lines until ``want`` and remembers when the last one arrived."""

    def __init__(self, resp: aiohttp.ClientResponse, want: int) -> None:
        self.resp = resp
        self.want = want
        self.last = 0.0

    @classmethod
    async def attach(cls, api: common.Api, namespace: str, rv: str, want: int) -> LiveWatch:
        resp = await api.session.get(
            api.url + f"/api/v1/namespaces/{namespace}/pods",
            params={"watch": "1", "resourceVersion": rv},
        )
        if resp.status != 200:
            resp.close()
            raise RuntimeError(f"watch: {resp.status}")
        return cls(resp, want)

    async def read(self) -> int:
        seen = 0
        try:
            async for chunk in self.resp.content.iter_any():
                seen += chunk.count(b"\n")
                if seen >= self.want:
                    break
        finally:
            self.last = time.perf_counter()
            self.resp.close()
        return seen


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}

    def cell(name: str) -> Cell:
        return cells.setdefault(name, Cell())

    reps: int = args.reps
    list_n: int = args.list_pods
    sandbox = await common.start_sandbox(workdir)
    pids = {"sandbox": sandbox.pid}
    t_start = time.perf_counter()
    try:
        async with common.Api(sandbox.ready, connections=64) as api:
            cell("rss").add(idle=common.proc_rss_bytes(sandbox.pid))
            for ns in ("c1", "list", "live", "big"):
                await api.ensure_namespace(ns)

            # -- creates at c=1 and c=32 -----------------------------------------------------
            for rep in range(reps):
                with common.CpuWindow(pids) as w:
                    r = await common.create_pods(
                        api, "c1", args.c1_count, concurrency=1, time_cap=2.5, offset=rep * 100_000
                    )
                cell("c1").add(
                    rate=r.rate,
                    p50=common.percentile(r.latencies, 0.5),
                    p99=common.percentile(r.latencies, 0.99),
                    cpu=w.seconds["sandbox"] / max(r.ok, 1),
                    client=w.seconds["bench"] / max(r.ok, 1),
                    foreign=w.foreign / w.wall,
                    errors=r.errors,
                )
            rv_before_list = await _rv(api)
            made = 0
            for rep in range(reps):
                n = list_n // reps + (1 if rep < list_n % reps else 0)
                with common.CpuWindow(pids) as w:
                    r = await common.create_pods(
                        api, "list", n, concurrency=32, time_cap=30, offset=made
                    )
                made += r.ok
                cell("c32").add(
                    rate=r.rate,
                    p50=common.percentile(r.latencies, 0.5),
                    p99=common.percentile(r.latencies, 0.99),
                    cpu=w.seconds["sandbox"] / max(r.ok, 1),
                    client=w.seconds["bench"] / max(r.ok, 1),
                    foreign=w.foreign / w.wall,
                    errors=r.errors,
                )
            cell("rss").add(at_list=common.proc_rss_bytes(sandbox.pid), list_pods=made)

            # -- LIST of the 10,000 ----------------------------------------------------------
            for _ in range(reps):
                with common.CpuWindow(pids) as w:
                    status, body = await api.call("GET", "/api/v1/namespaces/list/pods")
                if status != 200:
                    raise RuntimeError(f"LIST: {status}")
                cell("list").add(
                    seconds=w.wall,
                    mb=len(body) / 1e6,
                    cpu=w.seconds["sandbox"],
                    foreign=w.foreign / w.wall,
                )
                del body

            # -- watch replay from history ----------------------------------------------------
            for rep in range(reps + 1):
                with common.CpuWindow(pids) as w:
                    secs = await asyncio.wait_for(
                        watch_lines(api, "list", rv_before_list, made), WATCH_CAP
                    )
                name = "replay1_cold" if rep == 0 else "replay1"
                cell(name).add(
                    rate=made / secs,
                    cpu=w.seconds["sandbox"] / made,
                    foreign=w.foreign / w.wall,
                )
            for _ in range(reps):
                with common.CpuWindow(pids) as w:
                    times = await asyncio.wait_for(
                        asyncio.gather(
                            *(watch_lines(api, "list", rv_before_list, made) for _ in range(4))
                        ),
                        WATCH_CAP,
                    )
                cell("replay4").add(
                    rate=made / max(times),
                    cpu=w.seconds["sandbox"] / (4 * made),
                    foreign=w.foreign / w.wall,
                )

            # -- live watch fan-out during creates -------------------------------------------
            offset = 0
            for _ in range(reps):
                for watchers in (1, 4):
                    n = args.live_count
                    rv = await _rv(api)
                    live = [await LiveWatch.attach(api, "live", rv, n) for _ in range(watchers)]
                    readers = [asyncio.create_task(lw.read()) for lw in live]
                    with common.CpuWindow(pids) as w:
                        t0 = time.perf_counter()
                        r = await common.create_pods(
                            api, "live", n, concurrency=32, time_cap=30, offset=offset
                        )
                        seen = await asyncio.wait_for(asyncio.gather(*readers), WATCH_CAP)
                    offset += r.ok
                    if min(seen) < r.ok:
                        raise RuntimeError(f"live watch saw {min(seen)} of {r.ok}")
                    cell(f"live{watchers}").add(
                        create_rate=r.rate,
                        rate=r.ok / (max(lw.last for lw in live) - t0),
                        cpu=w.seconds["sandbox"] / r.ok,
                        foreign=w.foreign / w.wall,
                    )

            # -- 100,000 pods ----------------------------------------------------------------
            stats = await api.stats()
            have = int(stats["objects"].get("pods", 0))
            rss_before = common.proc_rss_bytes(sandbox.pid)
            missing = max(0, args.big_total - have)
            with common.CpuWindow(pids) as w:
                r = await common.create_pods(
                    api, "big", missing, concurrency=64, time_cap=args.big_cap
                )
            stats = await api.stats()
            total = int(stats["objects"].get("pods", 0))
            rss_after = common.proc_rss_bytes(sandbox.pid)
            cell("big").add(
                before=have,
                total=total,
                rate=r.rate,
                seconds=r.wall,
                cpu=w.seconds["sandbox"] / max(r.ok, 1),
                rss_before=rss_before,
                rss_after=rss_after,
                errors=r.errors,
                foreign=w.foreign / w.wall,
            )
            # One paged LIST of everything (pods, every namespace), limit=500.
            pages = 0
            size = 0
            items = 0
            token = ""
            with common.CpuWindow(pids) as w:
                while True:
                    params = {"limit": "500", **({"continue": token} if token else {})}
                    status, body = await api.call("GET", "/api/v1/pods", params=params)
                    if status != 200:
                        raise RuntimeError(f"paged LIST: {status} {body[:200]!r}")
                    page = orjson.loads(body)
                    pages += 1
                    size += len(body)
                    items += len(page["items"])
                    token = page["metadata"].get("continue") or ""
                    del body, page
                    if not token:
                        break
            cell("paged").add(
                seconds=w.wall,
                pages=pages,
                mb=size / 1e6,
                items=items,
                cpu=w.seconds["sandbox"],
                client=w.seconds["bench"],
                foreign=w.foreign / w.wall,
                rss=common.proc_rss_bytes(sandbox.pid),
            )
    finally:
        await common.stop_all([sandbox])
    cell("run").add(seconds=time.perf_counter() - t_start)
    return cells


def report(cells: dict[str, Cell], args: argparse.Namespace) -> None:
    reps = args.reps
    rows: list[list[str]] = []

    def us(c: Cell, name: str = "cpu") -> str:
        return c.get(name, 0, 1e6)

    for key, label in (("c1", "create, c=1"), ("c32", "create, c=32")):
        c = cells[key]
        rows.append(
            [label, c.get("rate") + " pods/s",
             f"p50 {c.get('p50', 2, 1e3)} / p99 {c.get('p99', 2, 1e3)} ms",
             f"{us(c)} µs/create (client {us(c, 'client')})", c.get("foreign", 2)]
        )  # fmt: skip
    c = cells["list"]
    n_list = int(cells["rss"].values["list_pods"][0])
    rows.append(
        [f"LIST {n_list:,} pods (one response)", c.get("seconds", 2) + " s",
         c.get("mb", 1) + " MB", f"{c.get('cpu', 2)} CPU s", c.get("foreign", 2)]
    )  # fmt: skip
    for key, label in (
        ("replay1_cold", "watch replay, 1 watcher, cold (1 rep)"),
        ("replay1", "watch replay, 1 watcher, warm"),
        ("replay4", "watch replay, 4 watchers, warm"),
    ):
        c = cells[key]
        agg = ""
        if key == "replay4":
            agg = f" per watcher; {common.spread([v * 4 for v in c.values['rate']])} total"
        rows.append(
            [f"{label}, {n_list:,} events", c.get("rate") + " events/s" + agg, "",
             f"{us(c)} µs/event delivered", c.get("foreign", 2)]
        )  # fmt: skip
    for watchers in (1, 4):
        c = cells[f"live{watchers}"]
        rows.append(
            [f"watch live, {watchers} watcher(s), {args.live_count:,} creates c=32",
             c.get("rate") + " events/s per watcher",
             c.get("create_rate") + " creates/s",
             f"{us(c)} µs/create incl. fan-out", c.get("foreign", 2)]
        )  # fmt: skip
    big = cells["big"]
    total = int(big.values["total"][0])
    before = int(big.values["before"][0])
    made = total - before
    reached = "reached" if total >= args.big_total else f"NOT reached ({args.big_cap:g} s cap)"
    rss_b, rss_a = big.values["rss_before"][0], big.values["rss_after"][0]
    per10k = (rss_a - rss_b) / max(made, 1) * 10_000 / 1e6
    rows.append(
        [f"{args.big_total:,} pods: {reached}, all via HTTP (1 run)",
         f"{total:,} pods; +{made:,} at {big.get('rate')} pods/s c=64",
         f"{big.get('seconds', 1)} s",
         f"RSS {rss_b / 1e6:,.0f} → {rss_a / 1e6:,.0f} MB ({per10k:.1f} MB per 10,000 pods); "
         f"{us(big)} µs/create",
         big.get("foreign", 2)]
    )  # fmt: skip
    p = cells["paged"]
    rows.append(
        [f"paged LIST of all {int(p.values['items'][0]):,} pods, limit=500 (1 run)",
         p.get("seconds", 2) + " s",
         f"{p.get('pages')} pages, {p.get('mb', 0)} MB",
         f"sandbox {p.get('cpu', 2)} CPU s, client {p.get('client', 2)} CPU s; "
         f"RSS after {p.values['rss'][0] / 1e6:,.0f} MB",
         p.get("foreign", 2)]
    )  # fmt: skip
    rss = cells["rss"].values
    common.print_table(
        f"sandbox API server over HTTPS (median [min–max] of {reps} unless stated)",
        ["measurement", "rate / time", "latency / size", "sandbox cost", "foreign cores"],
        rows,
        notes=[
            f"pod ≈ {len(common.pod_body('big', 'p-12345', index=12345)):,} B as sent; "
            f"sandbox RSS idle {rss['idle'][0] / 1e6:,.0f} MB, "
            f"{rss['at_list'][0] / 1e6:,.0f} MB after the first ~{n_list + 3 * args.c1_count:,}"
            " pods",
            "µs/create and µs/event are sandbox CPU only; the client (this process) runs on "
            "the same 2 cores",
            "replay rate is bounded by the client reading too (one asyncio process reads all "
            "watchers)",
            f"took {cells['run'].values['seconds'][0]:.0f} s",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--c1-count", type=int, default=1500, help="per rep; 2.5 s cap")
    parser.add_argument("--list-pods", type=int, default=10_000)
    parser.add_argument("--live-count", type=int, default=2000)
    parser.add_argument("--big-total", type=int, default=100_000)
    parser.add_argument("--big-cap", type=float, default=70.0, help="seconds for the big phase")
    parser.add_argument("--quick", action="store_true", help="small counts, 1 rep")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.c1_count, args.list_pods = 1, 200, 1000
        args.live_count, args.big_total, args.big_cap = 300, 5000, 20.0
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        cells = asyncio.run(run(args, Path(tmp)))
    report(cells, args)


if __name__ == "__main__":
    main()
