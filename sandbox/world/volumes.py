"""The world's volume binder: a Pending PersistentVolumeClaim is reported Bound.

A real cluster's PersistentVolume controller binds a claim to a volume (a provisioner makes
one for the claim's StorageClass). The world has no storage and no PersistentVolume objects;
it only reports each claim as a bound one reads: ``status.phase: Bound``, with
``accessModes`` and ``capacity`` taken from the claim's spec, as soon as it sees the claim.
A claim being deleted is left alone. Nothing waits for a claim to be bound: the scheduler
and the kubelets do not look at volumes, so a pod whose claim is Pending runs as well.

Decision (pure): ``bound_status``. Shell: ``VolumeBinder``, fed by a claim reflector.
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.world.client import ApiClient, ApiError, Conflict, NotFound, Reflector, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def claim_path(key: str) -> str:
    ns, name = key.split("/", 1)
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"


def bound_status(claim: Obj) -> Obj | None:
    """The status that binds ``claim``, or None when it is bound already or being deleted.

    >>> bound_status({"metadata": {}, "spec": {"accessModes": ["ReadWriteOnce"],
    ...     "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}})
    {'phase': 'Bound', 'accessModes': ['ReadWriteOnce'], 'capacity': {'storage': '1Gi'}}
    """
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if (claim.get("status") or {}).get("phase") == "Bound":
        return None
    spec = claim.get("spec") or {}
    requests = (spec.get("resources") or {}).get("requests") or {}
    return {
        "phase": "Bound",
        "accessModes": list(spec.get("accessModes") or []),
        "capacity": dict(requests),
    }


class VolumeBinder:
    """Binds every claim the shared claim reflector shows, one status patch each."""

    def __init__(self, *, client: ApiClient, claims: Reflector, workers: int = 2) -> None:
        self._client = client
        self._claims = claims
        self._queue = WorkQueue(process=self._sync, workers=workers)
        claims.subscribe(self._on_claim)

    def _on_claim(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self._queue.add(key)

    async def _sync(self, key: str) -> None:
        claim = self._claims.cache.get(key)
        status = None if claim is None else bound_status(claim)
        if claim is None or status is None:
            return
        body = {"metadata": {"resourceVersion": claim["metadata"]["resourceVersion"]}}
        try:
            await self._client.merge_patch(claim_path(key) + "/status", {**body, "status": status})
        except (Conflict, NotFound):
            return  # a newer version is on its way (and queued), or the claim is gone
        except ApiError as e:
            log.debug("binding %s: %s", key, e)
            self._queue.add_after(key, 0.2)

    def start(self) -> None:
        self._queue.start()

    async def stop(self) -> None:
        await self._queue.stop()
