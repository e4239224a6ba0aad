"""Leader election on a ``coordination.k8s.io/v1`` Lease, written on the KubeClient.

One gateway replica (the Lease holder) runs the watch hub; every replica serves webhooks
and the cluster API. The protocol is client-go's, on raw JSON:

* a candidate GETs the Lease and takes it when ``should_take`` says so (no Lease, no
  holder, its own, or expired: ``renewTime + leaseDurationSeconds`` is past). Taking it is
  a PUT conditional on the resourceVersion it read (or a POST when there is none); a
  409 means another candidate won the race;
* the holder renews every ``renew_seconds`` with a conditional PUT of ``renewTime``;
  when it cannot renew for ``lease_seconds`` it steps down (``on_stopped``) without
  waiting for anyone;
* ``stop()`` releases the lease by clearing ``holderIdentity`` so a follower takes over
  at its next retry instead of after the lease expires.

Expiry compares the holder's ``renewTime`` with the local clock, so replica clocks are
assumed to agree to well under a lease duration (as NTP-synced nodes do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.gateway.kube.client import KubeClient, Resource
from services.kit import errors

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"


def format_micro_time(t: datetime) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    """A metav1.Time or MicroTime, or None when absent or malformed."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def should_take(lease: dict[str, Any] | None, *, now: datetime, identity: str) -> bool:
    """Whether ``identity`` may write itself into ``lease`` as holder at ``now``.

    Pure. True when there is no Lease, nobody holds it, ``identity`` already holds it
    (a renewal), or the holder let it expire (``renewTime + leaseDurationSeconds <= now``;
    a holder without a renewTime counts as expired). ``LeaderElector`` commits the answer
    with a resourceVersion-conditional write, so two candidates that both see True
    cannot both win.
    """
    if lease is None:
        return True
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if not holder or holder == identity:
        return True
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds") or 0
    if renewed is None:
        return True
    return renewed + timedelta(seconds=float(duration)) <= now


def taken_spec(
    lease: dict[str, Any] | None, *, now: datetime, identity: str, lease_seconds: int
) -> dict[str, Any]:
    """The Lease spec after ``identity`` takes or renews it. Pure."""
    spec = dict((lease or {}).get("spec") or {})
    stamp = format_micro_time(now)
    if spec.get("holderIdentity") != identity:
        if lease is not None:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        else:
            spec["leaseTransitions"] = 0
        spec["acquireTime"] = stamp
    spec["holderIdentity"] = identity
    spec["leaseDurationSeconds"] = lease_seconds
    spec["renewTime"] = stamp
    return spec


def released_spec(lease: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """The Lease spec after its holder lets go: no holder, expiring at once. Pure."""
    spec = dict(lease.get("spec") or {})
    spec["holderIdentity"] = ""
    spec["leaseDurationSeconds"] = 1
    spec["renewTime"] = format_micro_time(now)
    return spec


async def _invoke(callback: Callable[[], Awaitable[None]]) -> None:
    await callback()


class LeaderElector:
    """Campaign for one Lease; call ``on_started`` / ``on_stopped`` as leadership comes and goes.

    ``on_started`` runs as its own task (it may start work and return, or keep running);
    when leadership ends that task is cancelled if still running and ``on_stopped`` is
    awaited.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15,
        renew_seconds: float = 5,
        retry_seconds: float | None = None,
    ) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError("renew_seconds must be positive and shorter than lease_seconds")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = renew_seconds if retry_seconds is None else retry_seconds
        self._lease: dict[str, Any] | None = None  # the last version we read or wrote
        self._leader = False
        self._valid_until = 0.0  # monotonic deadline of our last successful renewal
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False

    @property
    def is_leader(self) -> bool:
        """True while this replica holds an unexpired lease."""
        return self._leader and time.monotonic() < self._valid_until

    @property
    def holder(self) -> str:
        """The holder identity last seen on the Lease ("" when none)."""
        return str(((self._lease or {}).get("spec") or {}).get("holderIdentity") or "")

    async def run(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Campaign until ``stop()``; on the way out release the lease if held."""
        self._running = True
        self._done.clear()
        started: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                held = await self._try_take()
                if held and not self._leader:
                    self._leader = True
                    log.info("became leader", extra={"lease": self.name, "id": self.identity})
                    started = asyncio.create_task(_invoke(on_started))
                elif not held and self._leader:
                    lost = self._lease is not None and self.holder != self.identity
                    if lost or time.monotonic() >= self._valid_until:
                        await self._step_down(started, on_stopped)
                        started = None
                pause = self.renew_seconds if self._leader else self.retry_seconds
                if self._leader:
                    # never sleep past the point where the lease would lapse
                    pause = min(pause, max(0.0, self._valid_until - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=pause)
        finally:
            if self._leader:
                await self._release()
                await self._step_down(started, on_stopped)
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """Stop campaigning, release the lease if held, and wait until ``run`` returned."""
        self._stopping.set()
        if self._running:
            await self._done.wait()

    # -- internals ----------------------------------------------------------------------------

    async def _step_down(
        self, started: asyncio.Task[None] | None, on_stopped: Callable[[], Awaitable[None]]
    ) -> None:
        self._leader = False
        log.info("stopped leading", extra={"lease": self.name, "id": self.identity})
        if started is not None and not started.done():
            started.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await started
        await on_stopped()

    async def _resource(self) -> Resource:
        return await self.kube.resolve(api_version=LEASE_API_VERSION, kind="Lease")

    async def _try_take(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease afterwards."""
        try:
            res = await self._resource()
            if not (self._leader and self._lease is not None):
                self._lease = await self._get(res)
            now = datetime.now(UTC)
            if not should_take(self._lease, now=now, identity=self.identity):
                return False
            attempt = time.monotonic()
            self._lease = await self._write(res, self._lease, now=now)
            self._valid_until = attempt + self.lease_seconds
            return True
        except errors.Conflict:
            # someone wrote the Lease since we read it: read again next round
            self._lease = None
            return False
        except errors.AlreadyExists:
            self._lease = None
            return False
        except errors.MeshError as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    async def _get(self, res: Resource) -> dict[str, Any] | None:
        path = self.kube.path(res, namespace=self.namespace, name=self.name)
        try:
            return await self.kube.request_json("GET", path)
        except errors.NotFound:
            return None

    async def _write(
        self, res: Resource, lease: dict[str, Any] | None, *, now: datetime
    ) -> dict[str, Any]:
        spec = taken_spec(
            lease, now=now, identity=self.identity, lease_seconds=int(self.lease_seconds + 0.999)
        )
        if lease is None:
            body = {
                "apiVersion": LEASE_API_VERSION,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            return await self.kube.request_json(
                "POST", self.kube.path(res, namespace=self.namespace), body=orjson.dumps(body)
            )
        return await self._put(res, lease, spec)

    async def _put(
        self, res: Resource, lease: dict[str, Any], spec: dict[str, Any]
    ) -> dict[str, Any]:
        body = dict(lease)
        body["spec"] = spec
        body["metadata"] = {
            **(lease.get("metadata") or {}),
            "resourceVersion": lease["metadata"]["resourceVersion"],
        }
        path = self.kube.path(res, namespace=self.namespace, name=self.name)
        return await self.kube.request_json("PUT", path, body=orjson.dumps(body))

    async def _release(self) -> None:
        if self._lease is None or self.holder != self.identity:
            return
        try:
            res = await self._resource()
            self._lease = await self._put(
                res, self._lease, released_spec(self._lease, now=datetime.now(UTC))
            )
        except errors.MeshError as e:  # it will expire on its own
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, e)
