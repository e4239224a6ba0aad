"""The Dockerfile builds on both bases and keeps its run-time guarantees (checked as text).

`make image-smoke` checks the built image for real (slow, needs podman); these keep the
properties it relies on from regressing unnoticed: both bases (python:3.11-slim with python in
/usr/local/bin, the Debian base of scripts/base_image.sh with only /usr/bin/python3), no
installer at run time, uid 10001, and the image scripts being valid sh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
SCRIPTS = ["base_image.sh", "build_image.sh", "container_flags.sh", "image_smoke.sh"]


def _stages() -> list[str]:
    """The Dockerfile's stages, each from its FROM line to the next."""
    return re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)[1:]


def _instructions(stage: str) -> str:
    """The stage without comments and with continuation lines joined."""
    lines = [line for line in stage.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines).replace("\\\n", " ")


def test_the_default_base_is_the_official_slim_image() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", DOCKERFILE, flags=re.M)
    build, runtime = _stages()
    assert build.startswith("FROM ${PYTHON_IMAGE} AS build")
    assert runtime.startswith("FROM ${PYTHON_IMAGE}\n")  # same base: the venv's python link holds


def test_nothing_runs_a_bare_python_before_the_venv_is_on_path() -> None:
    """The Debian base has python3 only; `python` exists once the venv's bin/ leads PATH."""
    build, runtime = (_instructions(s) for s in _stages())
    assert "RUN python3 -m venv /opt/kruise-mesh" in build
    assert not re.search(r"RUN .*(?<![/\w])python -m", build)
    before_path = runtime.split("ENV PATH=/opt/kruise-mesh/bin:$PATH")[0]
    assert not re.search(r"(?<![/\w])python -m", before_path)


def test_the_runtime_stage_keeps_no_installer_and_runs_as_10001() -> None:
    build, runtime = (_instructions(s) for s in _stages())
    assert "pip uninstall --yes pip setuptools" in build  # the venv's own
    assert "compileall" in build
    assert "pip uninstall --yes pip setuptools wheel" in runtime  # python:3.11-slim's
    assert "dpkg --purge python3-venv python3.11-venv python3-pip-whl" in runtime  # Debian's
    assert "--uid 10001 --gid 10001" in runtime
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.M)
    assert "ENV PATH=/opt/kruise-mesh/bin:$PATH" in runtime


def test_the_ca_bundle_is_a_build_secret_not_a_layer() -> None:
    build, runtime = (_instructions(s) for s in _stages())
    assert "--mount=type=secret,id=ca-bundle" in build
    assert "ca-bundle" not in runtime
    assert not re.search(r"^(COPY|ADD) .*ca-certificates", DOCKERFILE, flags=re.M)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_image_scripts_are_executable_sh(script: str) -> None:
    path = REPO / "scripts" / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert path.read_text().startswith("#!/bin/sh\n")
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n", str(path)], check=True)
