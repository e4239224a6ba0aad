"""kruise-mesh command line.

python -m services.cli demo [--kubeconfig FILE] [--replicas N] [--keep]
python -m services.cli up [--kubeconfig FILE] [--replicas N]   (until Ctrl-C, SIGTERM, SIGHUP)
python -m services.cli status --replica ADDRESS [--replica ...]
python -m services.cli drain-plan --node NODE [--server ADDR] [--kubeconfig FILE] [--token T]
python -m services.cli rollout status NS/NAME [--watch] [--timeout 10m] [--server ADDR]
python -m services.cli rollout step NS/NAME --partition 50%|5 [--wait] [--rollout-id ID]
python -m services.cli rollout {pause,resume,promote} NS/NAME [--server ADDR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from services.cli import credentials


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
    up = commands.add_parser(
        "up",
        help="run the mesh locally (no demo) until Ctrl-C, SIGTERM or SIGHUP",
    )
    up.add_argument("--kubeconfig", help="run against this cluster (default: the embedded sandbox)")
    up.add_argument("--replicas", type=int, default=2, help="replicas per service (default 2)")
    up.add_argument("--workdir", default=".run", help="state, certificates and logs")
    up.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="with --kubeconfig: this machine's address as the cluster's API server reaches it",
    )
    drain = commands.add_parser(
        "drain-plan",
        help="which pods of a node can be evicted now without breaking a budget (reads only)",
    )
    drain.add_argument("--node", required=True, help="the node to drain")
    drain.add_argument(
        "--server",
        metavar="ADDR",
        help="the gateway's API port for tools (default $KRUISE_MESH_API, else 127.0.0.1:7070)",
    )
    drain.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    credentials.add_arguments(drain)
    from services.cli import rollout_cmd

    rollout_cmd.add_parser(commands)
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "rollout":
        try:
            return asyncio.run(rollout_cmd.run(args, console=console))
        except KeyboardInterrupt:
            return 130
    if args.command == "drain-plan":
        from services.cli.drain_plan import default_kubeconfig, run_drain_plan

        kubeconfig = args.kubeconfig or default_kubeconfig()
        try:
            creds = credentials.from_args(args, kubeconfig=kubeconfig)
        except OSError as e:
            parser.error(f"--token-file: {e}")
        return asyncio.run(
            run_drain_plan(
                node=args.node,
                kubeconfig=kubeconfig,
                server=args.server,
                console=console,
                credentials=creds,
            )
        )
    if args.command in ("demo", "up"):
        # Ctrl-C, SIGTERM and SIGHUP alike: stop the children, wait, unregister (up.py).
        from services.cli.up import run_up, until_signal

        if args.command == "demo":
            from services.cli.demo import run_demo

            walk = run_demo(
                workdir=Path(args.workdir),
                kubeconfig=args.kubeconfig,
                replicas=args.replicas,
                keep=args.keep,
                console=console,
                webhook_host=args.webhook_host,
            )
        else:
            walk = run_up(
                workdir=Path(args.workdir),
                kubeconfig=args.kubeconfig,
                replicas=args.replicas,
                console=console,
                webhook_host=args.webhook_host,
            )
        try:
            return asyncio.run(until_signal(walk, console=console))
        except KeyboardInterrupt:
            return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
