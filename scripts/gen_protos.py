"""Regenerate gen/ from protos/ (messages, gRPC stubs and mypy stubs).

    python scripts/gen_protos.py          # rewrite gen/
    python scripts/gen_protos.py --check  # exit 1 if gen/ differs from what protos/ produce

Generated code is committed; CI runs --check so drift fails the build.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
BIN = Path(sys.executable).parent


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    done = subprocess.run(cmd, cwd=PROTOS, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"protoc failed:\n{done.stderr}")
    for directory in [out / "kruise", *(p for p in (out / "kruise").rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found: list[str] = []

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(f"{prefix}{n} (only in one tree)" for n in c.left_only + c.right_only)
        for name in c.common_files:
            if (Path(c.left) / name).read_bytes() != (Path(c.right) / name).read_bytes():
                found.append(f"{prefix}{name}")
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(cmp, "")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if gen/ is stale")
    args = parser.parse_args()
    if not args.check:
        if GEN.exists():
            shutil.rmtree(GEN)
        generate(GEN)
        print(f"generated {sum(1 for _ in GEN.rglob('*.py'))} modules into gen/")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh)
        diff = differences(fresh, GEN) if GEN.exists() else ["gen/ is missing"]
    if diff:
        print("gen/ is stale; run `make gen`:", *diff, sep="\n  ")
        return 1
    print("gen/ is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
