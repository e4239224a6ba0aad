"""The world's REST client and reflector against the sandbox API server: typed errors,
relist after 410 Expired, resume (without relisting) after the server ends a watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.app import Sandbox
from sandbox.world.client import ApiClient, Conflict, NotFound, Reflector

CMS = "/api/v1/namespaces/default/configmaps"


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}


async def until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, ApiClient]]:
    async with Sandbox(state_dir=tmp_path, port=0) as sb:
        client = ApiClient(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))
        try:
            yield sb, client
        finally:
            await client.close()


async def test_errors_are_typed(sandbox: tuple[Sandbox, ApiClient]):
    _, client = sandbox
    await client.create(CMS, cm("a"))
    with pytest.raises(Conflict) as conflict:
        await client.create(CMS, cm("a"))
    assert conflict.value.reason == "AlreadyExists"
    with pytest.raises(NotFound):
        await client.delete(f"{CMS}/missing")
    with pytest.raises(Conflict):
        await client.delete(f"{CMS}/a", uid="not-the-uid")


async def test_reflector_relists_after_410_and_reports_what_vanished(
    sandbox: tuple[Sandbox, ApiClient],
):
    _, client = sandbox
    changes: list[tuple[str, bool]] = []
    reflector = Reflector(client=client, path=CMS)
    reflector.subscribe(lambda key, old, new: changes.append((key, new is not None)))
    await client.create(CMS, cm("a"))
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 5)
        assert "default/a" in reflector.cache
        await client.request("POST", "/sandbox/v1/expire-history", body={})
        await until("relist after 410", lambda: reflector.lists == 2)
        await client.create(CMS, cm("b"))
        await until("b seen", lambda: "default/b" in reflector.cache)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # while nobody watches: a goes away, c appears; the next run's list reports both
    await client.delete(f"{CMS}/a")
    await client.create(CMS, cm("c"))
    changes.clear()
    task = asyncio.create_task(reflector.run())
    try:
        await until("c seen", lambda: "default/c" in reflector.cache)
        assert ("default/a", False) in changes and ("default/c", True) in changes
        assert "default/a" not in reflector.cache
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_reflector_resumes_after_the_server_ends_a_watch(
    sandbox: tuple[Sandbox, ApiClient],
):
    _, client = sandbox
    reflector = Reflector(client=client, path=CMS, watch_timeout=1)
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 5)
        await asyncio.sleep(1.3)  # the server has ended the first watch by now
        await client.create(CMS, cm("late"))
        await until("late seen", lambda: "default/late" in reflector.cache)
        assert reflector.lists == 1, "resumed from the last resourceVersion, no relist"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
