"""Fixtures: a running Sandbox over HTTPS and clients for it (kubernetes-asyncio, aiohttp)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from sandbox.app import Sandbox
from tests.fixtures import REAL_APISERVER

HERE = Path(__file__).parent
FIXTURES = REAL_APISERVER


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(
        state_dir=tmp_path / "sandbox",
        crd_dirs=[HERE / "crds"],
        bookmark_interval=0.3,
        history_size=1000,
    ) as s:
        yield s


@pytest.fixture
async def api(sb: Sandbox) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(sb.kubeconfig_path), client_configuration=cfg)
    async with client.ApiClient(cfg) as c:
        yield c


class Raw:
    """A tiny raw HTTPS client that returns (status, headers, parsed body)."""

    def __init__(self, sb: Sandbox, session: aiohttp.ClientSession) -> None:
        self.sb = sb
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        data: bytes | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, Any]:
        headers = {
            "Authorization": f"Bearer {token or self.sb.token}",
            "Accept": "application/json",
        }
        payload = data
        if body is not None:
            payload = json.dumps(body).encode()
        if payload is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method, self.sb.url + path, data=payload, headers=headers
        ) as resp:
            text = await resp.read()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text.decode()
            return resp.status, resp.headers, parsed

    async def lines(self, path: str) -> list[dict[str, Any]]:
        """Read a whole (finite) watch stream as parsed events."""
        headers = {"Authorization": f"Bearer {self.sb.token}"}
        async with self.session.get(self.sb.url + path, headers=headers) as resp:
            assert resp.status == 200
            out = []
            async for line in resp.content:
                if line.strip():
                    out.append(json.loads(line))
            return out


@pytest.fixture
async def raw(sb: Sandbox) -> AsyncIterator[Raw]:
    ctx = ssl.create_default_context(cafile=str(sb.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        yield Raw(sb, s)
