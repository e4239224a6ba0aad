"""``kruise-mesh up``: the mesh on this machine until Ctrl-C, SIGTERM or SIGHUP.

Against a cluster (``--kubeconfig``) or the embedded sandbox, with no demo: it starts
the gateway and every service, prints where they listen and how to stop them, and waits.
Ctrl-C, SIGTERM and SIGHUP all stop it the same way (``until_signal``): the children are
stopped and waited for, and what it registered is removed (the gateway removes its
``-local`` webhook configurations from a real cluster as it stops). If this process is
killed outright, its children stop on their own (``procs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from services.cli.local import LocalMesh

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
READY = "kruise-mesh is up"


async def until_signal(main: Coroutine[Any, Any, int], *, console: Console | None = None) -> int:
    """Run ``main`` until it returns or one of Ctrl-C, SIGTERM, SIGHUP arrives; a signal
    cancels it (its ``finally`` blocks stop what it started) and returns 128 + the
    signal's number. Later signals do not interrupt that cleanup."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            _say(console, f"{sig.name}: already stopping, please wait")
            return
        received.append(sig)
        task.cancel()
        _say(console, f"{sig.name} received")

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            return await task  # a cancelled task ends once its cleanup has run
        except asyncio.CancelledError:
            if not received:
                raise
            return 128 + int(received[0])
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def run_up(
    *,
    workdir: Path,
    kubeconfig: str | None,
    replicas: int,
    console: Console,
    webhook_host: str = "127.0.0.1",
) -> int:
    """Start the mesh, print where it listens, wait until cancelled, stop it."""
    mesh = LocalMesh(
        workdir=workdir, replicas=replicas, kubeconfig=kubeconfig, webhook_host=webhook_host
    )
    try:
        with console.status("starting the gateway and the services…"):
            await mesh.start()
        describe(mesh, console, external=kubeconfig is not None)
        await asyncio.Event().wait()  # until a signal cancels this task
        return 0
    finally:
        _say(console, "stopping every process…")
        await mesh.stop()
        _say(console, "[green]stopped[/]")


def _say(console: Console | None, text: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): the cleanup must go on regardless."""
    if console is not None:
        with contextlib.suppress(OSError, ValueError):
            console.print(text)


def _write_token(mesh: LocalMesh) -> str | None:
    """The API token in a file only its owner reads (tools take ``--token-file``)."""
    token = mesh.api_token
    if not token:
        return None
    path = mesh.workdir / "api-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def describe(mesh: LocalMesh, console: Console, *, external: bool) -> None:
    out = console.print
    target = mesh.kubeconfig if external else "the embedded sandbox"
    out(f"[bold]{READY}[/] against {target}", soft_wrap=True)
    table = Table("process", "pid", "listens on", title="processes (each its own OS process)")
    for name, proc in mesh.procs.items():
        where = ", ".join(f"{k}={v}" for k, v in proc.ready.items() if "port" in k or k == "url")
        table.add_row(name, str(proc.pid), where)
    out(table)
    if not external:
        out(f"sandbox kubeconfig: {mesh.kubeconfig}", soft_wrap=True)
    out(f"gateway gRPC:       {mesh.gateway_grpc}", soft_wrap=True)
    out(f"webhooks:           https://{mesh.webhook_host}:{mesh.webhook_port}", soft_wrap=True)
    out(f"rollout API:        {mesh.api_target} (gRPC), {mesh.api_http_url} (HTTP/JSON)")
    out(f"  CA file:          {mesh.api_ca_file}", soft_wrap=True)
    token_file = _write_token(mesh)
    if token_file:
        out(f"  token file:       {token_file}", soft_wrap=True)
        out(
            f"  try:              kruise-mesh rollout status NS/NAME --server {mesh.api_target} "
            f"--ca-file {mesh.api_ca_file} --token-file {token_file}",
            soft_wrap=True,
        )
    out(f"logs:               {mesh.logs}/<process>.log", soft_wrap=True)
    out(
        f"Stop with Ctrl-C, or kill -TERM {os.getpid()} (SIGHUP does the same): every "
        "process stops and the webhook configurations are removed.",
        soft_wrap=True,
    )
