"""Pure parsing of Kubernetes API discovery documents into ``Resource`` records.

Both shapes are understood:

* legacy discovery: ``/api`` (APIVersions), ``/apis`` (APIGroupList) and one
  ``APIResourceList`` per group-version (``/api/v1``, ``/apis/<group>/<version>``);
* aggregated discovery (``apidiscovery.k8s.io/v2``, Kubernetes 1.30+):
  ``APIGroupDiscoveryList`` from ``/api`` and ``/apis`` carrying every resource.

Pure; no I/O. ``client.KubeClient`` fetches the documents and keeps the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Resource:
    """One REST resource as discovery describes it."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    subresources: frozenset[str]

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` → ``("apps", "v1")``; ``"v1"`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True, slots=True)
class GroupVersions:
    """A group's served versions, preferred first."""

    group: str
    versions: tuple[str, ...]


def parse_group_list(doc: Mapping[str, Any]) -> list[GroupVersions]:
    """Groups and versions from a legacy ``APIGroupList`` or ``APIVersions`` (core)."""
    if doc.get("kind") == "APIVersions" or ("versions" in doc and "groups" not in doc):
        return [GroupVersions(group="", versions=tuple(doc.get("versions") or ()))]
    out: list[GroupVersions] = []
    for group in doc.get("groups") or ():
        versions = [v.get("version", "") for v in group.get("versions") or ()]
        preferred = (group.get("preferredVersion") or {}).get("version")
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        out.append(GroupVersions(group=group.get("name", ""), versions=tuple(versions)))
    return out


def parse_resource_list(*, group: str, version: str, doc: Mapping[str, Any]) -> list[Resource]:
    """The resources of one legacy ``APIResourceList``; ``x/status`` entries become subresources."""
    subs: dict[str, set[str]] = {}
    mains: list[Mapping[str, Any]] = []
    for entry in doc.get("resources") or ():
        name = entry.get("name", "")
        if "/" in name:
            parent, _, sub = name.partition("/")
            subs.setdefault(parent, set()).add(sub)
        else:
            mains.append(entry)
    return [
        Resource(
            group=group,
            version=version,
            resource=entry["name"],
            kind=entry.get("kind", ""),
            namespaced=bool(entry.get("namespaced", False)),
            subresources=frozenset(subs.get(entry["name"], ())),
        )
        for entry in mains
    ]


def parse_aggregated(doc: Mapping[str, Any]) -> tuple[list[GroupVersions], list[Resource]]:
    """Groups (preferred version first, as the list is ordered) and resources of a v2 list."""
    groups: list[GroupVersions] = []
    resources: list[Resource] = []
    for item in doc.get("items") or ():
        group = (item.get("metadata") or {}).get("name", "")
        versions: list[str] = []
        for ver in item.get("versions") or ():
            version = ver.get("version", "")
            versions.append(version)
            for res in ver.get("resources") or ():
                resources.append(
                    Resource(
                        group=group,
                        version=version,
                        resource=res.get("resource", ""),
                        kind=(res.get("responseKind") or {}).get("kind", ""),
                        namespaced=res.get("scope") == "Namespaced",
                        subresources=frozenset(
                            s.get("subresource", "") for s in res.get("subresources") or ()
                        ),
                    )
                )
        groups.append(GroupVersions(group=group, versions=tuple(versions)))
    return groups, resources


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything discovery found, indexed for lookups by kind and by resource."""

    by_kind: Mapping[tuple[str, str, str], Resource]
    by_resource: Mapping[tuple[str, str], Resource]  # (group, resource) → preferred version

    @classmethod
    def build(cls, groups: Iterable[GroupVersions], resources: Iterable[Resource]) -> Catalog:
        rank = {(g.group, v): i for g in groups for i, v in enumerate(g.versions)}
        by_kind: dict[tuple[str, str, str], Resource] = {}
        by_resource: dict[tuple[str, str], Resource] = {}
        for res in resources:
            by_kind.setdefault((res.group, res.version, res.kind), res)
            key = (res.group, res.resource)
            best = by_resource.get(key)
            if best is None or rank.get((res.group, res.version), 99) < rank.get(
                (best.group, best.version), 99
            ):
                by_resource[key] = res
        return cls(by_kind=by_kind, by_resource=by_resource)
