"""Starting the mesh's processes on this machine and stopping them cleanly.

Each component is its own OS process (``python -m <module> ...``) that prints one
JSON line on stdout once it listens; ``start`` waits for that line and returns
it. Logs go to ``<log_dir>/<name>.log``. ``stop`` sends SIGTERM and waits for a
graceful exit before it kills. Used by ``make run`` and by the e2e tests.

A child never outlives this process: its ``caught_signals`` reads this process's pid from
``$KRUISE_MESH_PARENT_PID``, asks the kernel for a SIGTERM when it dies
(``PR_SET_PDEATHSIG`` on Linux, even after a SIGKILL), and watches it too; either way the
child stops through its normal stop path once the parent is gone. Nothing runs in the
child between fork and exec (no ``preexec_fn``), so Python can vfork: forking a process
whose gRPC threads are busy can crash the child inside gRPC's fork handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.kit.rpc import PARENT_PID_ENV
from services.kit.tasks import stop_task

_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    """The lowest port the kernel picks for outgoing connections (32768 by default)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for components that must know each other's.

    The port comes from below the kernel's ephemeral range. A port taken from that
    range (``bind(0)``) is released before the component binds it, and in between
    any outgoing connection may take it as its local port: a busy test run did
    exactly that. Ports below the range are only ever bound on purpose. A port is
    handed out once per process.
    """
    top = _ephemeral_floor()
    bottom = max(1024, top - 12_000)
    for _ in range(200):
        port = random.randrange(bottom, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free port between {bottom} and {top} on 127.0.0.1")


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    log_file: Path
    _pump: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self, *, grace: float = 8.0) -> int:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        await stop_task(self._pump)
        return self.process.returncode or 0

    async def kill(self) -> None:
        """Kill without grace (a crash, for failure tests)."""
        if self.running:
            self.process.kill()
        await self.stop(grace=1)


class StartError(RuntimeError):
    pass


async def start(
    name: str,
    module: str,
    args: list[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start ``python -m module args`` and wait for its JSON ready line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    log = log_file.open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env={**os.environ, **(env or {}), PARENT_PID_ENV: str(os.getpid())},
        start_new_session=True,
    )
    log.close()
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(_first_json_line(process.stdout), timeout)
    except (TimeoutError, EOFError) as e:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        tail = log_file.read_text(errors="replace")[-3000:]
        raise StartError(f"{name} did not become ready: {e!r}\n--- {log_file} ---\n{tail}") from e
    proc = Proc(name=name, process=process, ready=line, log_file=log_file)
    proc._pump = asyncio.create_task(_drain(process.stdout, log_file))
    return proc


async def _first_json_line(stream: asyncio.StreamReader) -> dict[str, Any]:
    while True:
        raw = await stream.readline()
        if not raw:
            raise EOFError("process exited before it was ready")
        text = raw.decode(errors="replace").strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed


async def _drain(stream: asyncio.StreamReader, log_file: Path) -> None:
    with log_file.open("ab") as out:
        while chunk := await stream.read(65536):
            out.write(chunk)
            out.flush()
