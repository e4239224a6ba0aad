"""``kruise-mesh rollout``: read and drive a CloneSet's rollout through the rollout API.

    kruise-mesh rollout status  NS/NAME [--watch] [--timeout 10m]
    kruise-mesh rollout step    NS/NAME --partition 50%|5 [--wait] [--timeout 10m]
                                        [--rollout-id ID] [--allow-increase] [--dry-run]
    kruise-mesh rollout pause   NS/NAME [--rollout-id ID] [--dry-run]
    kruise-mesh rollout resume  NS/NAME [--rollout-id ID] [--dry-run]
    kruise-mesh rollout promote NS/NAME [--keep-partition] [--force] [--rollout-id ID]
                                        [--dry-run]

Every command talks to one address, the gateway's API port: ``--server``, else
``$KRUISE_MESH_ROLLOUT_API``, else ``127.0.0.1:7070`` (in a cluster, the Service
``kruise-mesh-rollout-api:7070``), through ``services.cli.rollout_client``, over TLS
(``--ca-file`` / ``$KRUISE_MESH_CA``) with the caller's Kubernetes token, minted for the
audience ``kruise-mesh-rollout-api`` (``kubectl create token SA --audience
kruise-mesh-rollout-api``; ``--token``, ``--token-file``, ``$KRUISE_MESH_TOKEN``, the projected
rollout-API token, the in-cluster ServiceAccount token, the kubeconfig user's:
``services.cli.credentials``), which needs ``get`` / ``watch`` / ``patch`` on the CloneSet;
``--plaintext`` for a gateway run with ``--api-auth off``.

- ``status`` prints the rollout once (progress of updated and ready pods against
  ``status.expectedUpdatedReplicas``, the partition, lifecycle states, pods a hook holds
  NotReady, who controls it). With ``--watch`` it follows every change and exits 0 as soon
  as the current batch is complete, also under a partition (kubectl-kruise's ``rollout
  status`` never exits there: kruise-tools#67); 1 on timeout or when the CloneSet is
  deleted, saying why.
- ``step`` reads the CloneSet, then sets the partition preconditioned on the update
  revision it read (so a template change in between is refused, not rolled out); with
  ``--wait`` it then follows the rollout until the batch the new partition asks for is
  complete.
- ``pause`` / ``resume`` set ``paused``; ``promote`` is Kruise Rollout's Finalize (the
  partition cleared and the CloneSet unpaused; ``--keep-partition`` leaves both).

On a terminal the view is live (rich); otherwise each change is one plain line, which is
what CI and tests read. Exit codes: 0 done, 1 with ``error: ...`` on stderr (the server's
code, reason, message and the fields it names; never a traceback), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kruise.rollout.v1 import rollout_pb2
from services.cli import credentials
from services.cli.rollout_client import (
    DEFAULT_TARGET,
    RolloutClient,
    RolloutError,
    format_int_or_percent,
    int_or_percent,
)

SERVER_ENV = "KRUISE_MESH_ROLLOUT_API"
DEFAULT_TIMEOUT_S = 600.0

Status = rollout_pb2.RolloutStatus
Outcome = Literal["complete", "deleted"]

# --- arguments (pure) -----------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_ref(text: str) -> tuple[str, str]:
    """``demo/web`` → ``("demo", "web")``; anything else is a usage error.

    >>> parse_ref("demo/web")
    ('demo', 'web')
    """
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def parse_duration(text: str) -> float:
    """Seconds in ``10m``, ``90s``, ``1h30m``, ``250ms`` or a bare ``90``.

    >>> [parse_duration(t) for t in ("10m", "1m30s", "90", "250ms", "1h")]
    [600.0, 90.0, 90.0, 0.25, 3600.0]
    """
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10m, 90s or 1h")
    return sum(float(n) * units[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """``600`` → ``10m``, ``90`` → ``1m30s``, ``0.5`` → ``0.5s``.

    >>> [format_duration(s) for s in (600, 90, 0.5, 3600)]
    ['10m', '1m30s', '0.5s', '60m']
    """
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m" + (f"{rest}s" if rest else "")


def partition_arg(text: str) -> str:
    """``--partition``: a count (``5``) or a percent (``50%``); the server checks range."""
    try:
        int_or_percent(text, field="partition")
    except RolloutError as e:
        raise argparse.ArgumentTypeError(e.violations[0].description) from e
    return text.strip()


def server_address(flag: str | None) -> str:
    """``--server``, else ``$KRUISE_MESH_ROLLOUT_API``, else ``127.0.0.1:7070``."""
    return flag or os.environ.get(SERVER_ENV) or DEFAULT_TARGET


# --- what is shown (pure) -------------------------------------------------------------

LIFECYCLE_STATES = (
    ("normal", "Normal"),
    ("preparing_update", "PreparingUpdate"),
    ("updating", "Updating"),
    ("updated", "Updated"),
    ("preparing_delete", "PreparingDelete"),
)


def replicas_of(status: Status) -> int:
    return status.spec_replicas if status.HasField("spec_replicas") else status.status.replicas


def partition_text(status: Status) -> str:
    """``50% (5)``, ``3``, or ``none`` when the partition is null."""
    if not status.HasField("partition"):
        return "none"
    written = format_int_or_percent(status.partition)
    if status.partition.WhichOneof("value") == "percent":
        return f"{written} ({status.partition_replicas})"
    return written


def lifecycle_text(status: Status) -> str:
    """The pods not in Normal, by state: ``PreparingDelete 1, Updating 2``; "" if none."""
    counts = [(label, getattr(status.lifecycle, name)) for name, label in LIFECYCLE_STATES]
    return ", ".join(f"{label} {n}" for label, n in counts if n and label != "Normal")


def controller_text(status: Status) -> str:
    """Who drives the rollout: ``Kruise Rollout (BatchRelease web)``, ``rollout id r1``."""
    by = status.controlled_by
    which = by.WhichOneof("by")
    if which == "kruise_rollout":
        return (
            f"Kruise Rollout ({by.kruise_rollout.kind or 'BatchRelease'} {by.kruise_rollout.name})"
        )
    if which == "rollout_id":
        return f"rollout id {by.rollout_id}"
    return ""


def state_text(status: Status) -> str:
    if status.rollout_complete:
        return "rollout complete"
    if status.batch_complete:
        return "batch complete"
    if status.status.observed_generation < status.generation:
        return f"waiting for the controller to observe generation {status.generation}"
    return "in progress"


def status_line(status: Status) -> str:
    """One plain line for a rollout status: what a log, CI or a test reads. Pure.

    ``demo/web: updated 3/5, ready 2/5 of 10; partition 50% (5); paused;
    lifecycle PreparingDelete 1; held NotReady: web-x; controlled by rollout id r1;
    in progress``
    """
    st = status.status
    target = st.expected_updated_replicas
    parts = [
        f"{status.ref.namespace}/{status.ref.name}: updated {st.updated_replicas}/{target}, "
        f"ready {st.updated_ready_replicas}/{target} of {replicas_of(status)}",
        f"partition {partition_text(status)}",
    ]
    if status.paused:
        parts.append("paused")
    if lifecycle := lifecycle_text(status):
        parts.append(f"lifecycle {lifecycle}")
    if status.held_not_ready:
        parts.append(f"held NotReady: {', '.join(status.held_not_ready)}")
    if controller := controller_text(status):
        parts.append(f"controlled by {controller}")
    parts.append(state_text(status))
    return "; ".join(parts)


def _bar(done: int, total: int) -> ProgressBar:
    if total <= 0:  # nothing to update in this batch: done
        return ProgressBar(total=1, completed=1, width=30)
    return ProgressBar(total=total, completed=min(done, total), width=30)


def status_view(status: Status) -> RenderableType:
    """The live view on a terminal: two progress bars and the rollout's facts."""
    st = status.status
    target = st.expected_updated_replicas
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    grid.add_column()
    grid.add_row("updated", _bar(st.updated_replicas, target), f"{st.updated_replicas}/{target}")
    grid.add_row(
        "ready", _bar(st.updated_ready_replicas, target), f"{st.updated_ready_replicas}/{target}"
    )
    facts: list[tuple[str, str]] = [
        (
            "replicas",
            f"{replicas_of(status)} ({st.ready_replicas} ready, {st.available_replicas} available)",
        ),
        ("partition", partition_text(status) + (", paused" if status.paused else "")),
        ("revisions", f"update {st.update_revision or '-'}, current {st.current_revision or '-'}"),
        ("lifecycle", lifecycle_text(status) or "all Normal"),
    ]
    if status.held_not_ready:
        facts.append(("held NotReady", ", ".join(status.held_not_ready)))
    facts.append(("controlled by", controller_text(status) or "nobody"))
    for label, value in facts:
        grid.add_row(label, Text(value), "")
    done = status.batch_complete or status.rollout_complete
    state = Text(state_text(status), style="green" if done else "yellow")
    return Panel(
        Group(grid, state),
        title=f"CloneSet {status.ref.namespace}/{status.ref.name}",
        subtitle=Text(status.summary) if status.summary else None,
        expand=False,
    )


# --- output ---------------------------------------------------------------------------


class StatusPrinter:
    """Shows statuses: a live panel on a terminal, else one plain line per change."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        self.tty = console.is_terminal
        self.live = live and self.tty
        self.last: Status | None = None
        self._line = ""
        self._live: Live | None = None

    def show(self, status: Status) -> None:
        self.last = status
        if not self.tty:
            line = status_line(status)
            if line != self._line:
                self._line = line
                self.line(line)
            return
        if not self.live:
            self.console.print(status_view(status))
        elif self._live is None:
            self._live = Live(status_view(status), console=self.console, auto_refresh=False)
            self._live.start(refresh=True)
        else:
            self._live.update(status_view(status), refresh=True)

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_error(errors: Console, error: RolloutError, *, server: str, caller: str = "") -> None:
    """``error: CODE (REASON): message`` and the named fields, on stderr; a refused call
    says which token was used (``caller``)."""
    lines = error.describe()
    if error.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        lines[0] += f" (rollout API at {server})"
    if error.code.name in ("UNAUTHENTICATED", "PERMISSION_DENIED") and caller:
        lines.append(f"  ({caller})")
    errors.print(f"error: {lines[0]}", markup=False, highlight=False, soft_wrap=True)
    for line in lines[1:]:
        errors.print(line, markup=False, highlight=False, soft_wrap=True)


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchWait:
    """How ``follow_batch`` ended, and the last status it saw (None if none)."""

    outcome: Outcome
    last: Status | None


def batch_done(status: Status, *, min_generation: int) -> bool:
    """The batch asked for by generation ``min_generation`` (or later) is complete. Pure."""
    return (
        status.batch_complete
        and status.generation >= min_generation
        and status.status.observed_generation >= min_generation
    )


async def follow_batch(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    printer: StatusPrinter,
    min_generation: int = 0,
) -> BatchWait:
    """Watch one CloneSet, showing each change, until its batch is complete or it is gone.

    ``min_generation``: a status older than the write that started this batch (the
    replica's view may lag the write) does not count as complete.
    """
    seen = False
    async with contextlib.aclosing(client.watch(namespace, name=name, bookmarks=True)) as events:
        async for event in events:
            if event.type == "BOOKMARK":
                if event.initial_events_end and not seen:
                    return BatchWait("deleted", printer.last)
                continue
            if event.key != (namespace, name):
                continue
            if event.type == "DELETED":
                return BatchWait("deleted", event.status)
            seen = True
            printer.show(event.status)
            if batch_done(event.status, min_generation=min_generation):
                return BatchWait("complete", event.status)
    raise AssertionError("watch() ends only by raising")


async def wait_and_report(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    printer: StatusPrinter,
    errors: Console,
    timeout: float,
    min_generation: int = 0,
) -> int:
    """``follow_batch`` within ``timeout``: 0 when complete, 1 with the reason otherwise."""
    ref = f"{namespace}/{name}"
    try:
        async with asyncio.timeout(timeout):
            waited = await follow_batch(
                client, namespace, name, printer=printer, min_generation=min_generation
            )
    except TimeoutError:
        last = printer.last
        where = f": {last.summary or status_line(last)}" if last is not None else ""
        problem = f"timed out after {format_duration(timeout)} waiting for the batch of {ref} "
        problem += f"to complete{where}"
        waited = None
    finally:
        printer.close()  # also on ^C or an error: the terminal gets its cursor back
    if waited is not None and waited.outcome == "deleted":
        problem = f"CloneSet {ref} was deleted"
    elif waited is not None:
        if printer.tty:
            printer.line(f"{ref}: batch complete")
        return 0
    errors.print(f"error: {problem}", markup=False, highlight=False, soft_wrap=True)
    return 1


async def status_command(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    watch: bool,
    timeout: float,
    console: Console,
    errors: Console,
) -> int:
    """``rollout status``: print once, or (``watch``) until the batch is complete."""
    printer = StatusPrinter(console, live=watch)
    status = await client.get(namespace, name)
    printer.show(status)
    if not watch or batch_done(status, min_generation=0):
        printer.close()
        return 0
    return await wait_and_report(
        client, namespace, name, printer=printer, errors=errors, timeout=timeout
    )


async def step_command(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    partition: str,
    wait: bool,
    timeout: float,
    rollout_id: str,
    allow_increase: bool,
    dry_run: bool,
    console: Console,
    errors: Console,
) -> int:
    """``rollout step``: the partition, preconditioned on the update revision read first."""
    before = await client.get(namespace, name)
    answer = await client.set_partition(
        namespace,
        name,
        partition=partition,
        rollout_id=rollout_id,
        expected_update_revision=before.status.update_revision,
        allow_increase=allow_increase,
        dry_run=dry_run,
    )
    after = answer.status
    change = f"partition {partition_text(before)} → {partition_text(after)}"
    if dry_run:
        done = f"dry run, would patch {answer.patch_json}" if answer.patch_json else "dry run"
    else:
        done = "applied" if answer.applied else "unchanged"
    line = f"{namespace}/{name}: {change} (revision {before.status.update_revision}); {done}"
    printer = StatusPrinter(console, live=True)
    printer.line(line)
    if not wait or dry_run:
        return 0
    return await wait_and_report(
        client,
        namespace,
        name,
        printer=printer,
        errors=errors,
        timeout=timeout,
        min_generation=after.generation,
    )


async def pause_command(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    paused: bool,
    rollout_id: str,
    dry_run: bool,
    console: Console,
) -> int:
    """``rollout pause`` / ``resume``: set ``paused`` and leave the partition."""
    answer = await client.set_partition(
        namespace, name, partition=None, paused=paused, rollout_id=rollout_id, dry_run=dry_run
    )
    verb = "paused" if paused else "resumed"
    if dry_run:
        said = f"dry run, would be {verb}" if answer.applied or answer.patch_json else "dry run"
    else:
        said = verb if answer.applied else f"already {verb}"
    StatusPrinter(console, live=False).line(f"{namespace}/{name}: {said}")
    return 0


async def promote_command(
    client: RolloutClient,
    namespace: str,
    name: str,
    *,
    keep_partition: bool,
    force: bool,
    rollout_id: str,
    dry_run: bool,
    console: Console,
) -> int:
    """``rollout promote``: Release (promote unless ``keep_partition``)."""
    answer = await client.release(
        namespace,
        name,
        promote=not keep_partition,
        rollout_id=rollout_id,
        force=force,
        dry_run=dry_run,
    )
    if keep_partition:
        what = f"released, partition {partition_text(answer.status)} kept"
    else:
        what = "promoted"
    if dry_run:
        what = f"dry run, would be {what}"
    elif not answer.applied:
        what = f"already {what}"
    default = "" if keep_partition else "partition cleared, unpaused"
    detail = answer.message.removeprefix("dry run: ") or default
    if detail:
        what += f" ({detail})"
    StatusPrinter(console, live=False).line(f"{namespace}/{name}: {what}")
    return 0


# --- wiring ---------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rollout`` and its subcommands to the ``kruise-mesh`` parser."""
    rollout = commands.add_parser(
        "rollout",
        help="read and drive a CloneSet's rollout through the rollout API",
        description="Read and drive a CloneSet's rollout through the rollout API (the "
        "gateway's API port).",
    )
    sub = rollout.add_subparsers(dest="rollout_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("ref", type=parse_ref, metavar="NS/NAME", help="the CloneSet")
    common.add_argument(
        "--server",
        metavar="ADDR",
        help=f"the rollout API (default ${SERVER_ENV}, else {DEFAULT_TARGET})",
    )
    credentials.add_arguments(common)
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout",
        type=parse_duration,
        default=DEFAULT_TIMEOUT_S,
        metavar="DURATION",
        help="give up waiting after this long (default 10m)",
    )
    writing = argparse.ArgumentParser(add_help=False)
    writing.add_argument("--rollout-id", default="", metavar="ID", help="claim the rollout")
    writing.add_argument("--dry-run", action="store_true", help="check, write nothing")

    status = sub.add_parser(
        "status", parents=[common, waiting], help="the rollout's progress, once or live"
    )
    status.add_argument(
        "-w", "--watch", action="store_true", help="follow it until the current batch is done"
    )
    step = sub.add_parser(
        "step", parents=[common, waiting, writing], help="set the partition for the next batch"
    )
    step.add_argument(
        "--partition",
        required=True,
        type=partition_arg,
        metavar="N|P%",
        help="pods to keep on the old revision: a count or a percent of replicas",
    )
    step.add_argument("--wait", action="store_true", help="then follow until the batch is done")
    step.add_argument(
        "--allow-increase",
        action="store_true",
        help="allow a partition above the current one (updated pods are not rolled back)",
    )
    sub.add_parser("pause", parents=[common, writing], help="pause the rollout")
    sub.add_parser("resume", parents=[common, writing], help="unpause the rollout")
    promote = sub.add_parser(
        "promote", parents=[common, writing], help="finish: clear the partition and unpause"
    )
    promote.add_argument(
        "--keep-partition",
        action="store_true",
        help="release control but keep the partition and paused as they are",
    )
    promote.add_argument(
        "--force", action="store_true", help="also take Kruise Rollout's control away"
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``rollout ARGV`` parsed as ``kruise-mesh`` would (for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="kruise-mesh")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["rollout", *argv])


async def run(args: argparse.Namespace, *, console: Console, errors: Console | None = None) -> int:
    """Run a parsed ``rollout`` command; 0 or 1 (an ``error:`` line on ``errors``)."""
    errors = errors or Console(stderr=True)
    namespace, name = args.ref
    server = server_address(args.server)
    try:
        creds = credentials.from_args(args, kubeconfig=credentials.default_kubeconfig())
    except OSError as e:
        errors.print(f"error: --token-file: {e}", markup=False, highlight=False, soft_wrap=True)
        return 1
    async with RolloutClient.connect(server, credentials=creds) as client:
        try:
            if args.rollout_command == "status":
                return await status_command(
                    client,
                    namespace,
                    name,
                    watch=args.watch,
                    timeout=args.timeout,
                    console=console,
                    errors=errors,
                )
            if args.rollout_command == "step":
                return await step_command(
                    client,
                    namespace,
                    name,
                    partition=args.partition,
                    wait=args.wait,
                    timeout=args.timeout,
                    rollout_id=args.rollout_id,
                    allow_increase=args.allow_increase,
                    dry_run=args.dry_run,
                    console=console,
                    errors=errors,
                )
            if args.rollout_command in ("pause", "resume"):
                return await pause_command(
                    client,
                    namespace,
                    name,
                    paused=args.rollout_command == "pause",
                    rollout_id=args.rollout_id,
                    dry_run=args.dry_run,
                    console=console,
                )
            if args.rollout_command == "promote":
                return await promote_command(
                    client,
                    namespace,
                    name,
                    keep_partition=args.keep_partition,
                    force=args.force,
                    rollout_id=args.rollout_id,
                    dry_run=args.dry_run,
                    console=console,
                )
        except RolloutError as e:
            print_error(errors, e, server=server, caller=creds.describe())
            return 1
    raise AssertionError(f"unknown rollout command {args.rollout_command}")
