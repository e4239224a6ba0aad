"""Where the captured kube-apiserver fixtures live: ``shared/`` beside the project root.

``KRUISE_MESH_FIXTURES`` overrides the location (the ``real-apiserver`` directory).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_APISERVER = Path(
    os.environ.get(
        "KRUISE_MESH_FIXTURES", str(ROOT.parent / "shared" / "fixtures" / "real-apiserver")
    )
)
if not REAL_APISERVER.is_dir():
    raise RuntimeError(
        f"captured API server fixtures not found at {REAL_APISERVER}; "
        "put shared/ beside the project or set KRUISE_MESH_FIXTURES"
    )
