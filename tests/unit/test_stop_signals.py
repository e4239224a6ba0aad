"""Clean stops: a component stops once its supervisor is gone, and the CLI handles
SIGTERM and SIGHUP as it handles Ctrl-C (its cleanup runs, then it exits 128 + signal)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from services.cli.up import until_signal
from services.kit import rpc


async def test_a_component_stops_when_its_parent_is_no_longer_its_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rpc, "PARENT_POLL_S", 0.05)
    monkeypatch.setenv(rpc.PARENT_PID_ENV, str(os.getppid() + 1_000_000))  # not our parent
    with rpc.caught_signals() as stop:
        assert await asyncio.wait_for(stop, 2) == signal.SIGTERM


async def test_a_component_keeps_running_while_its_parent_lives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rpc, "PARENT_POLL_S", 0.05)
    monkeypatch.setenv(rpc.PARENT_PID_ENV, str(os.getppid()))
    with rpc.caught_signals() as stop:
        await asyncio.sleep(0.2)
        assert not stop.done()


async def test_no_parent_watch_without_a_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rpc.PARENT_PID_ENV, raising=False)
    with rpc.caught_signals() as stop:
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "watch-parent"]
        os.kill(os.getpid(), signal.SIGHUP)
        assert await asyncio.wait_for(stop, 2) == signal.SIGHUP


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
async def test_the_cli_cleans_up_on_each_stop_signal(sig: signal.Signals) -> None:
    cleaned: list[str] = []

    async def main() -> int:
        try:
            os.kill(os.getpid(), sig)
            await asyncio.Event().wait()
            return 0
        finally:
            await asyncio.sleep(0.05)  # the cleanup awaits, and is not interrupted
            cleaned.append("stopped")

    assert await asyncio.wait_for(until_signal(main()), 5) == 128 + sig
    assert cleaned == ["stopped"]
    assert not asyncio.get_running_loop().remove_signal_handler(sig)


async def test_the_cli_returns_what_its_command_returns() -> None:
    async def main() -> int:
        return 3

    assert await until_signal(main()) == 3
