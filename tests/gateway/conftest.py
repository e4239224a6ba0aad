"""Shared gateway fixtures: a running sandbox API server and a KubeClient connected to it.

    async def test_something(sandbox, kube): ...

``sandbox`` registers the project's CRDs from deploy/crds when that directory exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from services.gateway.kube.client import KubeClient

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"


def crd_dirs() -> list[Path]:
    """The project's CRD directory, when it exists."""
    return [CRD_DIR] if CRD_DIR.is_dir() else []


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """A running sandbox API server on 127.0.0.1 (HTTPS) with the project's CRDs."""
    async with Sandbox(state_dir=tmp_path / "sandbox", port=0, crd_dirs=crd_dirs()) as sb:
        yield sb


@pytest.fixture
async def kube(sandbox: Sandbox) -> AsyncIterator[KubeClient]:
    """A KubeClient connected to ``sandbox`` through its kubeconfig."""
    client = await KubeClient.connect(kubeconfig=str(sandbox.kubeconfig_path))
    try:
        yield client
    finally:
        await client.close()
