"""``python -m sandbox --state-dir DIR [--port N] [--crds deploy/crds] [--world] [--admission]``.

Runs the sandbox API server until SIGTERM/SIGINT and prints one JSON line
``{"url": ..., "kubeconfig": ..., "caFile": ..., "token": ...}`` to stdout once it
is ready. ``--world`` adds nodes, a scheduler, kubelets and a StatefulSet
controller; ``--admission`` calls the webhook configurations applied to it, presenting a
client certificate whose files (and CA) the ready line adds as ``webhookClientCert``,
``webhookClientKey`` and ``webhookClientCA``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from sandbox.admission import WebhookDispatcher, write_client_identity
from sandbox.admission_types import Dispatcher, ObjectSource
from sandbox.app import Sandbox, WorldSpec
from sandbox.world import World
from services.kit.rpc import caught_signals


def _world(sb: Sandbox) -> World:
    return World(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))


async def _run(args: argparse.Namespace) -> None:
    world: list[WorldSpec] = [_world] if args.world else []
    # The webhook caller presents a client certificate of its own CA (sandbox.admission).
    client = write_client_identity(args.state_dir) if args.admission else None

    def _dispatcher(source: ObjectSource) -> Dispatcher:
        return WebhookDispatcher(source, client_identity=client)

    async with Sandbox(
        world=world,
        dispatcher_factory=_dispatcher if args.admission else None,
        state_dir=args.state_dir,
        port=args.port,
        crd_dirs=args.crds,
        history_size=args.history,
        bookmark_interval=args.bookmark_interval,
        token=args.token,
    ) as sb:
        line = {
            "url": sb.url,
            "kubeconfig": str(sb.kubeconfig_path),
            "caFile": str(sb.ca_file),
            "token": sb.token,
            **(client.ready_fields() if client else {}),
        }
        with caught_signals() as stop:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crds", action="append", default=[])
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--bookmark-interval", type=float, default=5.0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--world", action="store_true", help="run nodes, scheduler, kubelets")
    parser.add_argument("--admission", action="store_true", help="call admission webhooks")
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
