"""What an idle process costs (issue 11, "No stalls"): modules, import time and memory per
entrypoint, before it does any work.

    python -m bench.idle            # 5 fresh imports per entrypoint, then an idle mesh
    python -m bench.idle --quick    # 3 fresh imports per entrypoint, then an idle mesh
    python -m bench.idle --no-mesh  # the imports only (no sandbox, no processes left running)
    python -m bench idle            # the same through the bench runner

**1. Import.** For each entrypoint (``services.gateway``, ``services.placement``,
``services.rollout``, ``services.budget``) a fresh ``python -c`` process imports its
``__main__`` module (what ``python -m`` runs before ``main()``) and reports how many modules
are then in ``sys.modules``, the wall time of that import (``perf_counter`` around it) and its
VmRSS. ``--runs`` (5) fresh processes per entrypoint, run one after another; median [min–max].
A process's RSS before any import (``python -c pass``) is the floor every process pays.

**2. Running idle.** ``services.cli.local.LocalMesh`` (the sandbox, the gateway and one replica
of each service, each its own process on 127.0.0.1, mesh mutual TLS on) is started, waits
until every replica has its snapshot, then idles ``--settle`` seconds (3). Per process: VmRSS
and its private part (``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``:
what one more replica of it costs when the shared libraries are already mapped by another),
and the modules it imported in all (``PYTHONPROFILEIMPORTTIME`` lines in its log, so imports
made after start-up count too). Whether a heavy extension is mapped is read from
``/proc/<pid>/maps``: cryptography's Rust core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import common

ENTRYPOINTS = ("gateway", "placement", "rollout", "budget")
PROBE = """
import sys, time
t0 = time.perf_counter()
{import_line}
took = time.perf_counter() - t0
with open("/proc/self/status", "rb") as f:
    rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmRSS:"))
print('{{"modules": %d, "seconds": %.6f, "rss": %d}}' % (len(sys.modules), took, rss))
"""
# Shared objects whose presence in a process says a heavy library was loaded.
MAPPED = {"cryptography": "cryptography/hazmat/bindings/_rust"}


@dataclass(frozen=True)
class Imported:
    modules: list[int]
    seconds: list[float]
    rss: list[int]


def probe(module: str) -> dict[str, float]:
    """One fresh interpreter importing ``module`` (empty: nothing): modules, seconds, RSS."""
    code = PROBE.format(import_line=f"import {module}" if module else "pass")
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        cwd=common.ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"},
        timeout=60,
    )
    result: dict[str, float] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_imports(runs: int) -> dict[str, Imported]:
    found: dict[str, Imported] = {}
    for name in ("", *ENTRYPOINTS):
        samples = [probe(f"services.{name}.__main__" if name else "") for _ in range(runs)]
        found[name] = Imported(
            modules=[int(s["modules"]) for s in samples],
            seconds=[s["seconds"] for s in samples],
            rss=[int(s["rss"]) for s in samples],
        )
    return found


def private_bytes(pid: int) -> int:
    """Private_Clean + Private_Dirty of ``pid`` (``/proc/<pid>/smaps_rollup``), in bytes."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def mapped(pid: int) -> list[str]:
    """Which of ``MAPPED`` the process has loaded."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name, marker in MAPPED.items() if marker in maps]


def imports_logged(log_file: Path) -> int:
    """Modules a process imported in all, from its ``-X importtime`` lines."""
    lines = log_file.read_text(errors="replace").splitlines()
    return sum(1 for line in lines if line.startswith("import time:") and "|" in line) - 1


@dataclass(frozen=True)
class Running:
    name: str
    rss: int
    private: int
    modules: int
    mapped: list[str]


async def measure_running(workdir: Path, *, settle: float) -> list[Running]:
    from services.cli.local import LocalMesh  # the mesh only when figure 2 runs

    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # inherited by every process it starts
    try:
        async with LocalMesh(workdir=workdir / "mesh", replicas=1, world=False) as mesh:
            await asyncio.sleep(settle)
            found = []
            for name, proc in mesh.procs.items():
                found.append(
                    Running(
                        name=name,
                        rss=common.proc_rss_bytes(proc.pid),
                        private=private_bytes(proc.pid),
                        modules=imports_logged(proc.log_file),
                        mapped=mapped(proc.pid),
                    )
                )
            return found
    finally:
        del os.environ["PYTHONPROFILEIMPORTTIME"]


def mb(values: Sequence[int]) -> str:
    return common.spread([float(v) for v in values], 1, scale=1 / 2**20)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 fresh imports per entrypoint")
    parser.add_argument("--runs", type=int, help="fresh imports per entrypoint (5)")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    parser.add_argument("--no-mesh", action="store_true", help="skip figure 2 (running idle)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)

    imported = measure_imports(runs)
    rows = []
    for name, found in imported.items():
        rows.append(
            [
                f"services.{name}" if name else "(python, nothing imported)",
                f"{statistics.median(found.modules):,.0f}",
                common.spread(found.seconds, 0, scale=1000),
                mb(found.rss),
            ]
        )
    common.print_table(
        f"1. Importing each entrypoint's __main__ in a fresh process ({runs} runs each)",
        ["entrypoint", "modules", "import ms", "RSS MB after import"],
        rows,
        notes=["median [min–max]; import ms is the wall time of the import statement alone"],
    )
    if args.no_mesh:
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        running = asyncio.run(
            asyncio.wait_for(measure_running(Path(tmp), settle=args.settle), timeout=180)
        )
    common.print_table(
        f"2. A running mesh, idle {args.settle:g} s after every replica synced "
        "(one replica each, mesh TLS on)",
        ["process", "RSS MB", "private MB", "modules imported", "heavy libraries mapped"],
        [
            [
                r.name,
                f"{r.rss / 2**20:.1f}",
                f"{r.private / 2**20:.1f}",
                f"{r.modules:,}",
                ", ".join(r.mapped) or "-",
            ]
            for r in running
        ],
        notes=[
            "private MB: what one more such process costs once another maps the same libraries",
            f"took {time.perf_counter() - started:.0f} s (sandbox and mesh start included)",
        ],
    )


if __name__ == "__main__":
    main()
