"""Helpers shared by the benchmarks: process CPU and RSS from /proc, percentiles, tables,
and a small HTTPS client for the sandbox API server.

Method (PERFORMANCE.md section 1): load is bounded in count and time and aimed at 127.0.0.1
only; CPU is ``utime+stime`` from ``/proc/<pid>/stat`` (all threads of the process) over the
measured window; foreign CPU is the machine's busy time from ``/proc/stat`` minus the
processes we track (the bench process included), so a noisy neighbour shows in the table.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli import procs
from services.deploy_files import deploy_path

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]


# ---- /proc ---------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (every thread), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name may hold spaces; the fields after the closing paren are fixed.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all CPUs), from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        parts = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


@dataclass
class CpuWindow:
    """CPU seconds of named processes (and of everything else) over a window.

    ``with CpuWindow({"sandbox": pid, ...}) as w: ...`` then ``w.seconds["sandbox"]``,
    ``w.foreign`` (machine busy minus tracked processes, this one included as ``bench``)
    and ``w.wall``.
    """

    pids: Mapping[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    foreign: float = 0.0
    wall: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _busy: float = 0.0
    _t0: float = 0.0

    def _tracked(self) -> dict[str, int]:
        return {**self.pids, "bench": os.getpid()}

    def start(self) -> CpuWindow:
        self._start = {name: proc_cpu_seconds(pid) for name, pid in self._tracked().items()}
        self._busy = machine_busy_seconds()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> CpuWindow:
        self.wall = time.perf_counter() - self._t0
        busy = machine_busy_seconds() - self._busy
        self.seconds = {
            name: proc_cpu_seconds(pid) - self._start[name] for name, pid in self._tracked().items()
        }
        self.foreign = max(0.0, busy - sum(self.seconds.values()))
        return self

    def __enter__(self) -> CpuWindow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- statistics ----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], digits: int = 0, scale: float = 1.0) -> str:
    """``median [min–max]`` of ``values`` (times ``scale``), formatted."""
    if not values:
        return "-"
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:,.{digits}f}"
    return f"{median(vals):,.{digits}f} [{min(vals):,.{digits}f}–{max(vals):,.{digits}f}]"


# ---- tables --------------------------------------------------------------------------------------
def machine_info() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python "
        f"{platform.python_version()}, Linux {platform.release()}, {now}, "
        f"load avg {load[0]:.2f}"
    )


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    notes: Sequence[str] = (),
) -> None:
    """One rich table with the machine line under it, then the notes."""
    table = Table(title=escape(title), caption=escape(machine_info()), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(escape(column), justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console = Console(width=max(120, Console().width))
    console.print(table)
    for note in notes:
        console.print(f"  - {note}", highlight=False, markup=False)
    sys.stdout.flush()


# ---- the sandbox ---------------------------------------------------------------------------------
async def start_sandbox(
    workdir: Path, *, history: int | None = None, extra: Sequence[str] = ()
) -> procs.Proc:
    """``python -m sandbox`` with the CRDs and neither ``--world`` nor ``--admission``: no
    scheduler, kubelet or webhook moves or slows a pod, so every event is the bench's own."""
    args = ["--state-dir", str(workdir / "sandbox"), "--crds", str(deploy_path("crds"))]
    if history is not None:
        args += ["--history", str(history)]
    return await procs.start("sandbox", "sandbox", [*args, *extra], log_dir=workdir / "logs")


class Api:
    """An aiohttp session on the sandbox with its CA and bearer token (keep-alive)."""

    def __init__(self, ready: Mapping[str, Any], *, connections: int = 64) -> None:
        self.url = str(ready["url"])
        ctx = ssl.create_default_context(cafile=str(ready["caFile"]))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=connections),
            headers={"Authorization": f"Bearer {ready['token']}"},
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if body is not None else None
        async with self.session.request(
            method, self.url + path, data=body, headers=headers, params=params
        ) as resp:
            return resp.status, await resp.read()

    async def ensure_namespace(self, name: str) -> None:
        body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        status, raw = await self.call("POST", "/api/v1/namespaces", body=body)
        if status not in (201, 409):
            raise RuntimeError(f"namespace {name}: {status} {raw[:300]!r}")

    async def stats(self) -> dict[str, Any]:
        status, raw = await self.call("GET", "/sandbox/v1/stats")
        if status != 200:
            raise RuntimeError(f"stats: {status} {raw[:300]!r}")
        out: dict[str, Any] = orjson.loads(raw)
        return out


def pod_body(namespace: str, name: str, *, index: int = 0) -> bytes:
    """A Pod as a StatefulSet controller writes it: ~1.2 KB of JSON as sent, ~2.0 KB as the
    sandbox stores it (defaults, uid, status)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app": "web",
                "apps.kubernetes.io/pod-index": str(index),
                "controller-revision-hash": "web-5d8f7c9b6",
                "statefulset.kubernetes.io/pod-name": name,
                "bench": "0",
            },
            "annotations": {"kruise.io/bench": "watch"},
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
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/team/web:1.27.3",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(6)],
                    "resources": {
                        "limits": {"cpu": "1", "memory": "512Mi"},
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": 8080},
                        "periodSeconds": 5,
                    },
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/web"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}],
            "nodeSelector": {"topology.kubernetes.io/zone": "zone-a"},
        },
    }
    return orjson.dumps(pod)


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0


async def run_bounded(
    count: int,
    concurrency: int,
    request: Callable[[int], Awaitable[None]],
    *,
    time_cap: float,
) -> LoadResult:
    """Call ``request(i)`` for i in [0, count) with ``concurrency`` in flight (closed loop);
    stop issuing at ``count`` calls or after ``time_cap`` seconds, whichever comes first."""
    result = LoadResult()
    next_index = 0
    deadline = time.perf_counter() + time_cap

    async def worker() -> None:
        nonlocal next_index
        while next_index < count and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                await request(i)
            except Exception as e:  # counted and shown; a bench must not die on one failure
                result.errors += 1
                result.first_error = result.first_error or repr(e)[:300]
            else:
                result.ok += 1
                result.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - t0
    return result


async def run_open_loop(
    rate: float,
    duration: float,
    request: Callable[[int, float], Awaitable[None]],
    *,
    max_in_flight: int = 256,
) -> LoadResult:
    """Start ``request(i, intended_start)`` at ``rate`` per second for ``duration`` seconds,
    whether or not earlier calls have answered (open loop: latency measured from the intended
    start has no coordinated omission). A call that would exceed ``max_in_flight`` is skipped
    and counted as an error, so the load stays bounded if the server stalls."""
    result = LoadResult()
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def call(i: int, intended: float) -> None:
        nonlocal in_flight
        try:
            await request(i, intended)
        except Exception as e:
            result.errors += 1
            result.first_error = result.first_error or repr(e)[:300]
        else:
            result.ok += 1
            result.latencies.append(time.perf_counter() - intended)
        finally:
            in_flight -= 1

    t0 = time.perf_counter()
    for i in range(int(rate * duration)):
        intended = t0 + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= max_in_flight:
            result.errors += 1
            result.first_error = result.first_error or "skipped: too many in flight"
            continue
        in_flight += 1
        task = asyncio.create_task(call(i, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.wall = time.perf_counter() - t0
    return result


async def create_pods(
    api: Api,
    namespace: str,
    count: int,
    *,
    concurrency: int,
    time_cap: float,
    prefix: str = "pod",
    offset: int = 0,
) -> LoadResult:
    """POST ``count`` pods named ``{prefix}-{offset+i}`` into ``namespace`` (bounded)."""
    path = f"/api/v1/namespaces/{namespace}/pods"

    async def one(i: int) -> None:
        n = offset + i
        status, raw = await api.call(
            "POST", path, body=pod_body(namespace, f"{prefix}-{n}", index=n)
        )
        if status != 201:
            raise RuntimeError(f"create {namespace}/{prefix}-{n}: {status} {raw[:200]!r}")

    return await run_bounded(count, concurrency, one, time_cap=time_cap)


async def stop_all(started: Sequence[procs.Proc]) -> None:
    """Stop processes in the order given (each SIGTERM, then kill after a grace period)."""
    for proc in started:
        try:
            await proc.stop()
        except Exception as e:  # keep stopping the others
            print(f"stopping {proc.name}: {e!r}", file=sys.stderr)


# ---- watches and runs ----------------------------------------------------------------------------
class WatchError(RuntimeError):
    """The API server ended a bench's watch with an ERROR event."""


async def watch_objects(
    kube: Any, path: str, query: Mapping[str, str]
) -> AsyncIterator[tuple[str, dict[str, Any], float]]:
    """Every (type, object, arrival ``perf_counter``) of a watch of ``path`` from
    ``query["resourceVersion"]``, BOOKMARKs left out; a stream that ends is resumed from the
    last resourceVersion seen; an ERROR event raises ``WatchError``."""
    rv = query["resourceVersion"]
    while True:
        q = {**query, "resourceVersion": rv, "allowWatchBookmarks": "true"}
        async for line in kube.watch_lines(path, query=q, read_timeout=60):
            now = time.perf_counter()
            event = orjson.loads(line)
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                raise WatchError(f"watch {path}: {obj.get('message', obj)}")
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if event.get("type") != "BOOKMARK":
                yield event.get("type", ""), obj, now


def run_in_workdir(
    run: Callable[[Path], Awaitable[None]], *, workdir: str | None, prefix: str, timeout: float
) -> None:
    """``run(dir)`` under ``timeout``, in ``workdir`` (kept) or a temporary directory."""
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        asyncio.run(asyncio.wait_for(run(Path(workdir)), timeout=timeout))
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        asyncio.run(asyncio.wait_for(run(Path(tmp)), timeout=timeout))
