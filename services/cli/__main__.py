"""kruise-mesh command line.

python -m services.cli demo [--kubeconfig FILE] [--replicas N] [--keep]
python -m services.cli status --replica ADDRESS [--replica ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kruise-mesh", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="start the mesh locally and walk through it")
    demo.add_argument("--kubeconfig", help="run against this cluster instead of the sandbox")
    demo.add_argument("--replicas", type=int, default=2, help="replicas per service (default 2)")
    demo.add_argument("--workdir", default=".run", help="state, certificates and logs")
    demo.add_argument("--keep", action="store_true", help="keep the mesh running after the walk")
    demo.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="with --kubeconfig: this machine's address as the cluster's API server reaches it",
    )
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "demo":
        from services.cli.demo import run_demo

        try:
            return asyncio.run(
                run_demo(
                    workdir=Path(args.workdir),
                    kubeconfig=args.kubeconfig,
                    replicas=args.replicas,
                    keep=args.keep,
                    console=console,
                    webhook_host=args.webhook_host,
                )
            )
        except KeyboardInterrupt:
            return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
