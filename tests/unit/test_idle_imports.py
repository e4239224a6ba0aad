"""What each entrypoint loads before it does any work (issue 11: an idle process pays for every
module it imports, and an operator runs each service several times).

Each entrypoint's ``__main__`` (what ``python -m services.<name>`` imports before ``main()``)
is imported in a fresh interpreter and ``sys.modules`` read back. A service replica must not
load what only the gateway or the CLI use; ``python -m bench.idle`` shows what each costs.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = ("placement", "rollout", "budget")

# module -> why a replica does without it
NOT_IN_A_REPLICA = {
    "kubernetes_asyncio": "the gateway's Kubernetes client (import-linter forbids it too)",
    "cryptography": "issuing certificates (gateway, CLI); a replica reads its certificate's "
    "expiry with kit.x509time, ~8 MB less per replica",
    "services.kit.certs": "issuing certificates: imported by CaSource.fetch when it runs",
    "ctypes": "only a supervised process that is stopping calls prctl (kit.rpc)",
    "yaml": "manifests and kubeconfigs: the gateway and the CLI",
    "rich": "the CLI's and the benchmarks' tables",
    "services.cli": "the operator's tool",
}
NOT_IN_THE_GATEWAY = {
    "rich": "the CLI's and the benchmarks' tables",
    "services.cli": "the operator's tool",
}


@functools.cache
def loaded(entrypoint: str) -> frozenset[str]:
    """``sys.modules`` of a fresh interpreter after ``import services.<entrypoint>.__main__``."""
    code = f"import sys, services.{entrypoint}.__main__; print(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return frozenset(done.stdout.split())


def cases(entrypoints: tuple[str, ...], modules: dict[str, str]) -> list[pytest.ParameterSet]:
    return [
        pytest.param(e, m, why, id=f"{e} does without {m}")
        for e in entrypoints
        for m, why in modules.items()
    ]


@pytest.mark.parametrize(
    ("entrypoint", "module", "why"),
    cases(REPLICAS, NOT_IN_A_REPLICA) + cases(("gateway",), NOT_IN_THE_GATEWAY),
)
def test_entrypoint_does_not_import(entrypoint: str, module: str, why: str) -> None:
    found = sorted(m for m in loaded(entrypoint) if m == module or m.startswith(module + "."))
    assert not found, f"services.{entrypoint} imports {found[:5]} at start-up; needed for: {why}"


@pytest.mark.parametrize("entrypoint", [*REPLICAS, "gateway"])
def test_entrypoint_imports_what_it_runs(entrypoint: str) -> None:
    """The probe itself works: the entrypoint's own modules and its server are there."""
    modules = loaded(entrypoint)
    assert f"services.{entrypoint}.__main__" in modules
    assert "grpc" in modules
