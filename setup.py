"""Build hook: the wheel carries deploy/ as services/_deploy (see services/deploy_files.py).

Everything else about the package is declared in pyproject.toml. package-data cannot name
files outside a package directory, so build_py copies deploy/'s YAML into the build tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DEPLOY = HERE / "deploy"
SUFFIXES = {".yaml", ".yml"}


class BuildPyWithDeploy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not DEPLOY.is_dir():
            return  # an editable install reads deploy/ from the checkout itself
        target = Path(self.build_lib) / "services" / "_deploy"
        for src in sorted(DEPLOY.rglob("*")):
            if src.is_file() and src.suffix in SUFFIXES:
                dst = target / src.relative_to(DEPLOY)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


setup(cmdclass={"build_py": BuildPyWithDeploy})
