"""Run every benchmark module's ``main()``; each prints its own table.

    python -m bench                     # all of them
    python -m bench admission           # only bench/admission.py
    python -m bench watch --quick       # flags go to every module that runs

Add a module by appending its name to ``MODULES``.
"""

from __future__ import annotations

import importlib
import sys

MODULES: list[str] = [
    "bench.admission",
    "bench.watch",
    "bench.sandbox",
    "bench.placement",
    "bench.budget",
    "bench.rollout",
    "bench.rollout_api",
    "bench.api_auth",
    "bench.mesh_tls",
    "bench.idle",
    "bench.stalls",
]


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    wanted = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    unknown = set(wanted) - {m.rsplit(".", 1)[-1] for m in MODULES}
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
    for name in MODULES:
        if wanted and name.rsplit(".", 1)[-1] not in wanted:
            continue
        module = importlib.import_module(name)
        print(f"== {name}", flush=True)
        module.main(flags)


if __name__ == "__main__":
    main()
