"""Where ``deploy/`` is (CRDs, webhook manifests, RBAC, examples), source tree or installed.

From a checkout (``pip install -e``, ``make run``) it is the ``deploy/`` beside ``services/``.
From a wheel or the image there is no checkout: the build copies ``deploy/`` into the
package as ``services/_deploy`` (``setup.py``'s ``build_py``), found here through
``importlib.resources``. Every reader of ``deploy/`` asks this module, never a path of its own.

    deploy_path("webhooks.yaml"), deploy_path("crds"), deploy_path("examples")
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGED = "_deploy"  # services/_deploy inside an installed wheel
_SOURCE = Path(__file__).resolve().parents[1] / "deploy"
_MARKER = "webhooks.yaml"


def _packaged() -> Path:
    return Path(str(resources.files("services").joinpath(PACKAGED)))


def deploy_dir() -> Path:
    """The source tree's ``deploy/`` when there is one, else the installed package's copy.

    Never raises: when neither exists (a wheel built without it) the packaged path is
    returned, so the reader's FileNotFoundError names where the file should have been.
    """
    if (_SOURCE / _MARKER).is_file():
        return _SOURCE
    return _packaged()


def deploy_path(*parts: str) -> Path:
    """A file or directory under ``deploy/``: ``deploy_path("crds")``."""
    return deploy_dir().joinpath(*parts)
