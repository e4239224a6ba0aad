"""CloneSet revisions: the pod template recorded as an ``apps/v1`` ControllerRevision.

Pure; no I/O. The rollout controller writes what ``plan_revisions`` returns.

A revision's data is the patch OpenKruise records, the template replacing the CloneSet's::

    {"spec": {"template": {..., "$patch": "replace"}}}

Its name is ``<cloneset>-<hash>``, the hash as Kubernetes' ``HashControllerRevision``
computes it: FNV-1 (32 bit) over the data bytes, then over the decimal collisionCount
when there is one, the decimal sum encoded with ``SafeEncodeString`` (each digit mapped
into ``bcdfghjklmnpqrstvwxz2456789``, so a hash never spells a word). The data bytes are
JSON with sorted keys (the Go controller's bytes follow struct field order, so names
differ from OpenKruise's for the same template; nothing depends on equality with them).

The revision name is also each pod's ``controller-revision-hash`` label and
``status.updateRevision``/``currentRevision``.

Which revisions are the CloneSet's history (``history_of``, OpenKruise v1.2's
``history.ListControllerRevisions(parent, selector)``): those in its namespace whose labels
match its selector and that are controlled by it or by no controller at all. An orphan
(left by ``kubectl delete cloneset web --cascade=orphan``) therefore counts as the re-applied
CloneSet's own: its equal template is reused (never created again, which would fail with
AlreadyExists), it counts for the next number and for ``revisionHistoryLimit``. OpenKruise's
CloneSet does not adopt it (it never calls ``AdoptControllerRevision``), and neither do we:
it keeps no ownerReference.

Choosing the update revision (Kubernetes' history rules, as CloneSet uses them):

* a stored revision whose template equals the current one is reused; if it is not the
  newest, it is re-numbered to newest + 1 (a rollback to an old template);
* otherwise a new revision numbered newest + 1 is created; when its name is taken by a
  revision with other data (a hash collision), ``collisionCount`` goes up and the hash is
  computed again;
* revisions beyond ``revisionHistoryLimit`` (oldest first) are deleted, except the current
  and update revisions and any revision a live pod still carries.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kruise.common.v1 import views_pb2
from services.kit.objects import controller_ref
from services.kit.selectors import selector_matches

Json = dict[str, Any]

CONTROLLER_REVISION_API = "apps/v1"
CLONESET_API = "apps.kruise.io/v1alpha1"
CLONESET_KIND = "CloneSet"

_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32(data: bytes, h: int = _FNV32_OFFSET) -> int:
    """FNV-1 32-bit (Go's ``hash/fnv.New32``): multiply, then xor. Pure.

    >>> hex(fnv32(b""))
    '0x811c9dc5'
    >>> hex(fnv32(b"a"))
    '0x50c5d7e'
    """
    for byte in data:
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
        h ^= byte
    return h


def safe_encode(text: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: each character mapped into a vowel-free alphabet.

    >>> safe_encode("1234567890")
    '56789bcdf4'
    """
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in text)


def revision_data(template: Mapping[str, Any]) -> Json:
    """The data a CloneSet revision records for ``template``."""
    return {"spec": {"template": {**template, "$patch": "replace"}}}


def data_bytes(data: Mapping[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def revision_hash(data: Mapping[str, Any], collision_count: int = 0) -> str:
    """``HashControllerRevision(revision, probe)`` with probe = collisionCount when non-zero."""
    h = fnv32(data_bytes(data))
    if collision_count:
        h = fnv32(str(collision_count).encode(), h)
    return safe_encode(str(h))


def revision_name(clone_set: str, data: Mapping[str, Any], collision_count: int = 0) -> str:
    """``<cloneset>-<hash>``; a long CloneSet name is cut so the name fits 253 characters."""
    suffix = revision_hash(data, collision_count)
    return f"{clone_set[: 252 - len(suffix)]}-{suffix}"


def template_of(data_json: bytes) -> Json | None:
    """The pod template a revision records (without ``$patch``), None when unreadable."""
    try:
        data = orjson.loads(data_json) if data_json else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    template = (data.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return None
    return {k: v for k, v in template.items() if k != "$patch"}


@dataclass(frozen=True, slots=True)
class Revision:
    """A stored revision of one CloneSet: its name, number and template."""

    name: str
    number: int
    template: Json
    uid: str = ""
    resource_version: str = ""


def history_of(
    *,
    clone_set: views_pb2.CloneSetView,
    views: Sequence[views_pb2.ControllerRevisionView],
) -> list[views_pb2.ControllerRevisionView]:
    """The revisions among ``views`` that are ``clone_set``'s history. Pure.

    OpenKruise's ``ListControllerRevisions``: in the CloneSet's namespace, its labels
    matching the selector, and controlled by this CloneSet (any controller kind with its
    uid) or by none. A revision another controller holds is never its own, whatever its
    labels. ``views`` may hold candidates the caller indexed loosely (say every orphan of
    the namespace); their order is kept.

    Worked example, selector ``app=web``, CloneSet uid ``u2``: ``web-a`` (app=web, controller
    u2) and ``web-b`` (app=web, no owner) are its history; ``web-c`` (app=web, controller u1,
    a namesake being deleted) and ``db-d`` (app=db, no owner) are not.
    """
    uid = clone_set.meta.uid
    namespace = clone_set.meta.namespace
    found = []
    for view in views:
        if view.meta.namespace != namespace:
            continue
        ref = controller_ref(view.meta.owner_references)
        if ref is not None:
            if ref.uid == uid:
                found.append(view)
        elif selector_matches(clone_set.selector, view.meta.labels):
            found.append(view)
    return found


def revisions_of(views: Sequence[views_pb2.ControllerRevisionView]) -> list[Revision]:
    """The readable revisions among ``views``, oldest first (by number, then name)."""
    found = []
    for view in views:
        template = template_of(view.data_json)
        if template is not None:
            found.append(
                Revision(
                    name=view.meta.name,
                    number=view.revision,
                    template=template,
                    uid=view.meta.uid,
                    resource_version=view.meta.resource_version,
                )
            )
    found.sort(key=lambda r: (r.number, r.name))
    return found


@dataclass(frozen=True, slots=True)
class CreateRevision:
    name: str
    body: Json


@dataclass(frozen=True, slots=True)
class RenumberRevision:
    name: str
    number: int
    resource_version: str


@dataclass(frozen=True, slots=True)
class DeleteRevision:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class RevisionPlan:
    """What ``plan_revisions`` decided.

    ``update``/``current`` are revision names (``current`` is the one the old
    ``status.currentRevision`` names when it still exists, else ``update``).
    ``collision_count`` is the value ``status.collisionCount`` must hold. ``create`` and
    ``renumber`` are written before anything else of the round; ``delete`` after.
    """

    update: str
    current: str
    collision_count: int
    update_template: Json
    current_template: Json
    create: CreateRevision | None = None
    renumber: RenumberRevision | None = None
    delete: tuple[DeleteRevision, ...] = ()


def revision_body(
    *,
    clone_set: views_pb2.CloneSetView,
    name: str,
    data: Json,
    number: int,
    selector_labels: Mapping[str, str],
) -> Json:
    """The ControllerRevision object, owned by the CloneSet (controller reference)."""
    return {
        "apiVersion": CONTROLLER_REVISION_API,
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": clone_set.meta.namespace,
            "labels": dict(selector_labels),
            "ownerReferences": [owner_reference(clone_set)],
        },
        "data": data,
        "revision": number,
    }


def owner_reference(clone_set: views_pb2.CloneSetView) -> Json:
    return {
        "apiVersion": CLONESET_API,
        "kind": CLONESET_KIND,
        "name": clone_set.meta.name,
        "uid": clone_set.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def plan_revisions(
    *,
    clone_set: views_pb2.CloneSetView,
    template: Json,
    stored: Sequence[Revision],
    live_revisions: Collection[str],
) -> RevisionPlan:
    """Choose the update and current revisions, and what to create, renumber and delete.

    ``stored`` are the CloneSet's revisions oldest first; ``live_revisions`` the revision
    labels its live pods carry. Pure.
    """
    data = revision_data(template)
    collision = clone_set.status.collision_count
    newest = stored[-1].number if stored else 0
    by_name = {r.name: r for r in stored}
    create: CreateRevision | None = None
    renumber: RenumberRevision | None = None
    equal = [r for r in stored if r.template == template]
    if equal:
        update = equal[-1]
        if update.number != newest:
            renumber = RenumberRevision(update.name, newest + 1, update.resource_version)
        update_name = update.name
    else:
        while True:
            update_name = revision_name(clone_set.meta.name, data, collision)
            taken = by_name.get(update_name)
            if taken is None:
                break
            collision += 1  # same name, other template: a hash collision
        create = CreateRevision(
            update_name,
            revision_body(
                clone_set=clone_set,
                name=update_name,
                data=data,
                number=newest + 1,
                selector_labels=clone_set.selector.match_labels,
            ),
        )
    old_current = clone_set.status.current_revision
    current_name = old_current if old_current in by_name else update_name
    current_template = by_name[current_name].template if current_name in by_name else template
    keep = {update_name, current_name, *live_revisions}
    # Kubernetes' truncateHistory: only revisions no one uses count against the limit.
    deletable = [r for r in stored if r.name not in keep]
    excess = max(len(deletable) - max(clone_set.revision_history_limit, 0), 0)
    delete = tuple(DeleteRevision(r.name, r.uid) for r in deletable[:excess])
    return RevisionPlan(
        update=update_name,
        current=current_name,
        collision_count=collision,
        update_template=template,
        current_template=current_template,
        create=create,
        renumber=renumber,
        delete=delete,
    )
