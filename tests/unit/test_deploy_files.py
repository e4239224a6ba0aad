"""deploy/ is found from a checkout and from an installed wheel (services/_deploy)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services import deploy_files
from services.deploy_files import deploy_dir, deploy_path

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_deploy_dir_is_found() -> None:
    assert deploy_dir() == REPO / "deploy"
    assert deploy_path("webhooks.yaml").is_file()
    crds = sorted(p.name for p in deploy_path("crds").glob("*.yaml"))
    assert "apps.kruise.io_clonesets.yaml" in crds
    assert "policy.kruise.io_podunavailablebudgets.yaml" in crds
    assert "apps.kruise.io_persistentpodstates.yaml" in crds
    assert list(deploy_path("examples").glob("*.yaml"))
    assert deploy_path("rbac.yaml").is_file()


def test_without_a_checkout_the_packaged_copy_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deploy_files, "_SOURCE", tmp_path / "no-checkout")
    assert deploy_dir() == REPO / "services" / "_deploy"  # where build_py puts the copy
    assert deploy_path("crds") == REPO / "services" / "_deploy" / "crds"


def test_the_build_copies_every_yaml_of_deploy() -> None:
    setup = (REPO / "setup.py").read_text()
    assert '"services" / "_deploy"' in setup
    assert deploy_files.PACKAGED == "_deploy"


def test_no_reader_builds_a_deploy_path_of_its_own() -> None:
    pattern = re.compile(r"""/\s*["']deploy["']""")
    found = []
    for root in ("services", "sandbox", "bench"):
        for path in sorted((REPO / root).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and path.name != "deploy_files.py":
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "use services.deploy_files.deploy_path:\n" + "\n".join(found)
