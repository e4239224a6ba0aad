"""The world's StatefulSet controller (``apps/v1``), as kube-controller-manager runs it.

Pods are named ``<sts>-<ordinal>`` and made from ``spec.template`` with the labels
``controller-revision-hash``, ``statefulset.kubernetes.io/pod-name`` and
``apps.kubernetes.io/pod-index``, a controller ownerReference, and ``spec.hostname`` /
``spec.subdomain``. Templates are recorded in ControllerRevisions named ``<sts>-<hash>``.

Decision (pure): ``plan(...)`` turns a StatefulSet and its pods into the next ``Action`` list:

* OrderedReady: create ordinal i only when 0..i-1 are Running and Ready; scale in from the
  highest ordinal, one pod at a time, waiting for each to go;
* Parallel: create and delete without waiting;
* RollingUpdate: delete the highest-ordinal pod >= ``partition`` not on the update revision,
  one at a time, waiting for the re-created pod to be Ready; OnDelete: never.

``compute_status(...)`` gives the status; ``new_pod(...)`` and ``revision_object(...)`` build
objects. Shell: ``StatefulSetController``, one work queue of StatefulSet keys.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sandbox.world.client import ApiClient, ApiError, Conflict, NotFound, Reflector, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# ---------------------------------------------------------------------------------------------
# small pure helpers


def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a, the hash Kubernetes uses for revision names. Pure."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """apimachinery's ``rand.SafeEncodeString``: map each byte onto a vowel-free alphabet."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def revision_hash(template: Obj, collision_count: int = 0) -> str:
    """The hash part of a ControllerRevision name, e.g. ``b6bd99f47``. Pure.

    Deterministic in the template (keys sorted) and the collision count.
    """
    raw = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32a(raw)))


def ordinal_of(pod_name: str, sts_name: str) -> int | None:
    """The ordinal of ``<sts>-<n>``, or ``None`` if the name is not of that form. Pure."""
    prefix = sts_name + "-"
    if not pod_name.startswith(prefix):
        return None
    rest = pod_name[len(prefix) :]
    return int(rest) if rest.isdigit() and (rest == "0" or not rest.startswith("0")) else None


def pod_revision(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, ""))


def is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


def is_running_ready(pod: Obj) -> bool:
    """Phase Running and condition Ready True (minReadySeconds is not modelled). Pure."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def is_healthy(pod: Obj) -> bool:
    return is_running_ready(pod) and not is_terminating(pod)


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class CreatePod:
    """Create ``<sts>-<ordinal>`` from the template of ``revision``."""

    ordinal: int
    revision: str


@dataclass(frozen=True)
class DeletePod:
    """Delete pod ``name`` (uid precondition); ``why`` is scale-in, failed or update."""

    name: str
    uid: str
    why: str


Action = CreatePod | DeletePod


def _replicas(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _partition(sts: Obj) -> int:
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    return int((strategy.get("rollingUpdate") or {}).get("partition") or 0)


def _strategy(sts: Obj) -> str:
    return str(((sts.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate")


def plan(sts: Obj, pods: list[Obj], *, current_revision: str, update_revision: str) -> list[Action]:
    """The next actions for ``sts`` given the pods it owns. Pure; no I/O.

    Committed by ``StatefulSetController`` through the API. An empty list means "wait": either
    everything is in place or a pod must first become Ready or finish terminating.
    """
    name = str(sts["metadata"]["name"])
    replicas = _replicas(sts)
    monotonic = (sts.get("spec") or {}).get("podManagementPolicy", "OrderedReady") != "Parallel"
    rolling = _strategy(sts) == "RollingUpdate"
    partition = _partition(sts)
    by_ordinal: dict[int, Obj] = {}
    for pod in pods:
        ordinal = ordinal_of(str(pod["metadata"]["name"]), name)
        if ordinal is not None:
            by_ordinal[ordinal] = pod

    def delete(pod: Obj, why: str) -> DeletePod:
        meta = pod["metadata"]
        return DeletePod(name=str(meta["name"]), uid=str(meta.get("uid", "")), why=why)

    actions: list[Action] = []
    # 1. make ordinals 0..replicas-1 exist and be healthy
    for ordinal in range(replicas):
        existing = by_ordinal.get(ordinal)
        if existing is None:
            use_current = rolling and ordinal < partition and current_revision
            actions.append(CreatePod(ordinal, current_revision if use_current else update_revision))
            if monotonic:
                return actions
            continue
        if is_failed(existing) and not is_terminating(existing):
            actions.append(delete(existing, "failed"))
            if monotonic:
                return actions
            continue
        if not is_healthy(existing) and monotonic:
            return actions
    # 2. scale in from the highest ordinal
    condemned = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
    unhealthy = [o for o in condemned if not is_healthy(by_ordinal[o])]
    first_unhealthy = min(unhealthy) if unhealthy else None
    for ordinal in condemned:
        pod = by_ordinal[ordinal]
        if is_terminating(pod):
            if monotonic:
                return actions
            continue
        if monotonic and not is_running_ready(pod) and ordinal != first_unhealthy:
            return actions
        actions.append(delete(pod, "scale-in"))
        if monotonic:
            return actions
    if actions or not rolling:
        return actions
    # 3. rolling update, highest ordinal first, one at a time
    for ordinal in range(replicas - 1, partition - 1, -1):
        target = by_ordinal.get(ordinal)
        if target is None:
            return actions
        if pod_revision(target) != update_revision and not is_terminating(target):
            return [delete(target, "update")]
        if not is_healthy(target):
            return actions
    return actions


def compute_status(
    sts: Obj,
    pods: list[Obj],
    *,
    current_revision: str,
    update_revision: str,
    collision_count: int,
) -> Obj:
    """The StatefulSet status for these pods. Pure.

    A finished rolling update (every pod updated and ready) makes the update revision current.
    """
    replicas = ready = current = updated = 0
    for pod in pods:
        replicas += 1
        if is_running_ready(pod):
            ready += 1
        if not is_terminating(pod):
            rev = pod_revision(pod)
            current += rev == current_revision
            updated += rev == update_revision
    status: Obj = {
        "observedGeneration": int(sts["metadata"].get("generation", 1)),
        "replicas": replicas,
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": collision_count,
        "availableReplicas": ready,
    }
    if _strategy(sts) == "RollingUpdate" and updated == replicas and ready == replicas:
        status["currentRevision"] = update_revision
        status["currentReplicas"] = updated
    return status


# ---------------------------------------------------------------------------------------------
# object builders


def owner_reference(sts: Obj) -> Obj:
    meta = sts["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def new_pod(sts: Obj, *, ordinal: int, revision: str, template: Obj) -> Obj:
    """The pod ``<sts>-<ordinal>`` made from ``template`` (of ControllerRevision ``revision``)."""
    meta = sts["metadata"]
    name = f"{meta['name']}-{ordinal}"
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update({REVISION_LABEL: revision, POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)})
    pod_meta: Obj = {
        "name": name,
        "generateName": f"{meta['name']}-",
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(sts)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def revision_object(sts: Obj, *, name: str, template: Obj, number: int) -> Obj:
    """A ControllerRevision recording ``template`` the way the real controller does."""
    meta = sts["metadata"]
    labels = dict(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    labels[REVISION_LABEL] = name.rsplit("-", 1)[-1]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(sts)],
        },
        "data": {"spec": {"template": {**template, "$patch": "replace"}}},
        "revision": number,
    }


def revision_template(revision: Obj) -> Obj:
    """The pod template stored in a ControllerRevision. Pure."""
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def revisions_to_prune(revisions: list[Obj], *, keep: set[str], limit: int) -> list[str]:
    """Names of the oldest revisions beyond ``limit`` that no pod or status uses. Pure."""
    candidates = sorted(
        (r for r in revisions if r["metadata"]["name"] not in keep),
        key=lambda r: int(r.get("revision", 0)),
    )
    excess = len(candidates) - limit
    return [str(r["metadata"]["name"]) for r in candidates[: max(excess, 0)]]


# ---------------------------------------------------------------------------------------------
# the shell


def _owner_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "StatefulSet":
            return str(ref.get("uid"))
    return None


def _owner_key(obj: Obj) -> str | None:
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "StatefulSet":
            return f"{meta.get('namespace')}/{ref.get('name')}"
    return None


class StatefulSetController:
    """Reconciles every StatefulSet seen by ``sets`` (reflectors are shared with the world)."""

    def __init__(
        self,
        *,
        client: ApiClient,
        sets: Reflector,
        pods: Reflector,
        revisions: Reflector,
        clock: Callable[[], str],
    ) -> None:
        self._client = client
        self._sets = sets
        self._pods = pods
        self._revisions = revisions
        self._clock = clock
        self._queue = WorkQueue(process=self._sync, workers=4)
        # owner uid -> {object key: object}, so a sync never scans every pod in the cluster
        self._pods_by_owner: dict[str, dict[str, Obj]] = {}
        self._revisions_by_owner: dict[str, dict[str, Obj]] = {}
        sets.subscribe(lambda key, old, new: self._queue.add(key))
        pods.subscribe(self._on_pod)
        revisions.subscribe(self._on_revision)

    def _on_pod(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self._index(self._pods_by_owner, key, old, new)

    def _on_revision(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self._index(self._revisions_by_owner, key, old, new)

    def _index(
        self, index: dict[str, dict[str, Obj]], key: str, old: Obj | None, new: Obj | None
    ) -> None:
        old_uid = _owner_uid(old) if old is not None else None
        new_uid = _owner_uid(new) if new is not None else None
        if old_uid is not None and old_uid != new_uid:
            owned = index.get(old_uid, {})
            owned.pop(key, None)
            if not owned:
                index.pop(old_uid, None)
        if new_uid is not None and new is not None:
            index.setdefault(new_uid, {})[key] = new
        owner = _owner_key(new or old or {})
        if owner is not None:
            self._queue.add(owner)

    @staticmethod
    def _owned(index: dict[str, dict[str, Obj]], sts: Obj) -> list[Obj]:
        return list(index.get(str(sts["metadata"]["uid"]), {}).values())

    async def _ensure_revision(self, sts: Obj, revisions: list[Obj]) -> tuple[str, int]:
        """The update revision's name (created if needed) and the collision count."""
        meta = sts["metadata"]
        template = (sts.get("spec") or {}).get("template") or {}
        collisions = int((sts.get("status") or {}).get("collisionCount") or 0)
        by_name = {str(r["metadata"]["name"]): r for r in revisions}
        top = max((int(r.get("revision", 0)) for r in revisions), default=0)
        while True:
            name = f"{meta['name']}-{revision_hash(template, collisions)}"
            existing = by_name.get(name)
            if existing is None:
                break
            if revision_template(existing) == template:
                if int(existing.get("revision", 0)) < top:  # a rollback: it is newest again
                    await self._client.merge_patch(
                        f"/apis/apps/v1/namespaces/{meta['namespace']}/controllerrevisions/{name}",
                        {"revision": top + 1},
                    )
                return name, collisions
            collisions += 1
        body = revision_object(sts, name=name, template=template, number=top + 1)
        try:
            await self._client.create(
                f"/apis/apps/v1/namespaces/{meta['namespace']}/controllerrevisions", body
            )
        except Conflict:  # already there (our cache lags): the same name means the same data
            pass
        return name, collisions

    async def _sync(self, key: str) -> None:
        sts = self._sets.cache.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        ns, name = key.split("/", 1)
        revisions = self._owned(self._revisions_by_owner, sts)
        update_rev, collisions = await self._ensure_revision(sts, revisions)
        templates = {str(r["metadata"]["name"]): revision_template(r) for r in revisions}
        templates[update_rev] = (sts.get("spec") or {}).get("template") or {}
        current_rev = str((sts.get("status") or {}).get("currentRevision") or "")
        if current_rev not in templates:
            current_rev = update_rev
        pods = self._owned(self._pods_by_owner, sts)
        for action in plan(sts, pods, current_revision=current_rev, update_revision=update_rev):
            await self._do(sts, action, templates=templates, update_rev=update_rev)
        status = compute_status(
            sts,
            pods,
            current_revision=current_rev,
            update_revision=update_rev,
            collision_count=collisions,
        )
        current = sts.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            try:
                await self._client.merge_patch(
                    f"/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/status",
                    {"status": status},
                )
            except NotFound:
                return
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10))
        keep = {current_rev, update_rev, status["currentRevision"]} | {
            pod_revision(p) for p in pods
        }
        for old in revisions_to_prune(revisions, keep=keep, limit=limit):
            try:
                await self._client.delete(
                    f"/apis/apps/v1/namespaces/{ns}/controllerrevisions/{old}"
                )
            except NotFound:
                pass

    async def _do(
        self, sts: Obj, action: Action, *, templates: dict[str, Obj], update_rev: str
    ) -> None:
        ns = sts["metadata"]["namespace"]
        try:
            if isinstance(action, CreatePod):
                revision = action.revision if action.revision in templates else update_rev
                pod = new_pod(
                    sts, ordinal=action.ordinal, revision=revision, template=templates[revision]
                )
                await self._client.create(f"/api/v1/namespaces/{ns}/pods", pod)
            else:
                await self._client.delete(
                    f"/api/v1/namespaces/{ns}/pods/{action.name}", uid=action.uid or None
                )
        except (Conflict, NotFound) as e:  # our cache lags the server: the next event fixes it
            log.debug("%s: %s", action, e)
        except ApiError as e:
            log.warning("%s failed: %s", action, e)

    def start(self) -> None:
        self._queue.start()

    async def stop(self) -> None:
        await self._queue.stop()
