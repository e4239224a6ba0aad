"""``kruise-mesh up`` stops cleanly however it is stopped.

A separately started sandbox stands in for the user's cluster; ``kruise-mesh up
--kubeconfig`` runs as its own process. Once it reports ready it is sent SIGTERM,
SIGHUP, SIGINT (Ctrl-C) or SIGKILL: within a few seconds none of its children may be
left, nor any ``kruise-mesh-*-local`` webhook configuration in the cluster. For SIGKILL
the CLI cannot clean up: the children stop on their parent's death and the gateway
unregisters its webhooks on its own stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from services.cli import procs
from services.cli.up import READY
from services.gateway.kube.client import KubeClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1"
KINDS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


def _children(parent: int) -> set[int]:
    """The pids of the live processes whose parent is ``parent``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[1] == parent and stat[0] != "Z":
            found.add(int(entry.name))
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has stopped; only its reaping waits


async def _local_webhooks(kube: KubeClient) -> list[str]:
    names = []
    for kind in KINDS:
        listed = await kube.request_json("GET", f"{WEBHOOKS}/{kind}")
        names += [
            i["metadata"]["name"]
            for i in listed["items"]
            if i["metadata"]["name"].startswith("kruise-mesh-")
            and i["metadata"]["name"].endswith("-local")
        ]
    return names


async def _until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return bool(await check())  # type: ignore[operator]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
async def test_up_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals) -> None:
    cluster = await procs.start(
        "cluster",
        "sandbox",
        ["--state-dir", str(tmp_path / "cluster"), "--admission"],
        log_dir=tmp_path / "logs",
    )
    kubeconfig = str(cluster.ready["kubeconfig"])
    kube = await KubeClient.connect(kubeconfig=kubeconfig)
    cli: asyncio.subprocess.Process | None = None
    children: set[int] = set()
    output: list[str] = []
    try:
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--kubeconfig",
            kubeconfig,
            "--replicas",
            "1",
            "--workdir",
            str(tmp_path / "mesh"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
            start_new_session=True,
        )
        assert cli.stdout is not None
        stdout = cli.stdout

        async def ready() -> None:
            while READY not in (line := (await stdout.readline()).decode(errors="replace")):
                if not line:
                    raise AssertionError("up exited before it was ready:\n" + "".join(output))
                output.append(line)

        await asyncio.wait_for(ready(), 60)

        async def drain() -> None:
            while line := await stdout.readline():
                output.append(line.decode(errors="replace"))

        pump = asyncio.create_task(drain())
        children = _children(cli.pid)
        assert len(children) == 4, f"gateway and three services: {children}"
        assert await _local_webhooks(kube), "up registered its local webhooks"

        os.kill(cli.pid, sig)
        code = await asyncio.wait_for(cli.wait(), 30)
        await asyncio.wait_for(pump, 5)
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 128 + sig, "".join(output)
            assert "stopped" in "".join(output)

        async def no_children() -> bool:
            return not [p for p in children if _alive(p)]

        async def no_webhooks() -> bool:
            return not await _local_webhooks(kube)

        assert await _until(no_children, 10), f"left running: {children}\n" + "".join(output)
        assert await _until(no_webhooks, 10), await _local_webhooks(kube)
    finally:
        for pid in [*children, *([cli.pid] if cli is not None else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if cli is not None and cli.returncode is None:
            await cli.wait()
        await kube.close()
        await cluster.stop()
