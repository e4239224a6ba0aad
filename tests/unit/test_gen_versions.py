"""The runtime bounds in pyproject.toml match what the committed gen/ code checks at import.

Each ``*_pb2.py`` refuses a protobuf runtime of another major version or older than its
gencode (``VersionError`` at import); each ``*_pb2_grpc.py`` refuses a grpcio older than the
grpcio-tools that wrote it. An install that pip resolves within pyproject's bounds must import.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
GEN = REPO / "gen"


def gencode_versions(pattern: str, glob: str) -> set[Version]:
    found = set()
    for path in sorted(GEN.rglob(glob)):
        match = re.search(pattern, path.read_text(), re.MULTILINE)
        assert match, f"{path.relative_to(REPO)}: no generated-version line"
        found.add(Version(match.group(1)))
    assert found, f"no {glob} under gen/"
    return found


def requirement(name: str) -> SpecifierSet:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.name == name:
            return req.specifier
    raise AssertionError(f"pyproject.toml does not require {name}")


def lower_bound(spec: SpecifierSet) -> Version:
    lows = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    assert lows, f"{spec} has no lower bound"
    return max(lows)


def test_protobuf_bound_matches_the_gencode() -> None:
    [gencode] = gencode_versions(r"^# Protobuf Python Version: (\S+)$", "*_pb2.py")
    spec = requirement("protobuf")
    low = lower_bound(spec)
    assert low >= gencode, f"protobuf{spec} allows runtimes older than gen/'s {gencode}"
    assert low.major == gencode.major, f"protobuf{spec}: gen/ needs major {gencode.major}"
    # The runtime refuses another major, so the bound must stop before the next one.
    assert Version(f"{gencode.major + 1}.0.0") not in spec, (
        f"protobuf{spec} allows {gencode.major + 1}.x; gen/ needs major {gencode.major}"
    )


def test_grpcio_bound_matches_the_generated_stubs() -> None:
    generated = gencode_versions(r"^GRPC_GENERATED_VERSION = '([^']+)'$", "*_pb2_grpc.py")
    low = lower_bound(requirement("grpcio"))
    assert low >= max(generated), f"grpcio>={low} is older than gen/'s {max(generated)}"


def test_the_installed_runtime_satisfies_the_bound() -> None:
    from importlib.metadata import version

    assert Version(version("protobuf")) in requirement("protobuf")


def test_the_constraints_satisfy_pyproject() -> None:
    """constraints.txt (make lock) pins what make install and the image install."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = Version(next(iter(req.specifier)).version)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}: make lock"
        assert pins[name] in req.specifier, (
            f"constraints.txt pins {req.name}=={pins[name]}, outside {req}: make lock"
        )


def test_the_image_installs_the_constraints_and_keeps_no_installer() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    build, runtime = dockerfile.split("# --- runtime")
    assert "--constraint constraints.txt" in build
    assert "COPY deploy/ deploy/" in build and "setup.py" in build
    assert "pip uninstall --yes pip setuptools" in build  # the venv's own
    assert "pip uninstall --yes pip setuptools wheel" in runtime  # the base image's
