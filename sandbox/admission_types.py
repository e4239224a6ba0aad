"""The seam between the sandbox's request pipeline and its admission dispatch.

The REST layer (``sandbox.server``) builds one ``AdmissionAttributes`` per
write that kube-apiserver would send to admission, and calls the dispatcher:

    obj = await dispatcher.mutate(attrs)     # may return a changed object
    await dispatcher.validate(attrs_with(obj))  # raises ApiError to refuse

The dispatcher reads webhook configurations and namespaces through an
``ObjectSource`` that the store implements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class AdmissionAttributes:
    """What one API request looks like to admission.

    ``object`` is None for DELETE; ``old_object`` is None for CREATE. For
    ``pods/eviction`` the kind is policy/v1 Eviction, ``resource`` is pods and
    ``subresource`` is "eviction". ``options`` is the Create/Update/DeleteOptions
    body as the apiserver would put it in the review.
    """

    operation: Operation
    kind: GroupVersionKind
    resource: GroupVersionResource
    subresource: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    options: dict[str, Any] | None
    dry_run: bool
    user_info: dict[str, Any] = field(default_factory=dict)


class ObjectSource(Protocol):
    """Read access the dispatcher needs; the store implements it."""

    def list_objects(
        self, *, group: str, resource: str, namespace: str | None = None
    ) -> list[dict[str, Any]]: ...

    def get_object(
        self, *, group: str, resource: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...


class Dispatcher(Protocol):
    async def mutate(self, attrs: AdmissionAttributes) -> dict[str, Any] | None:
        """Run matching mutating webhooks in order; return the final object."""
        ...

    async def validate(self, attrs: AdmissionAttributes) -> None:
        """Run matching validating webhooks; raise ``ApiError`` on denial."""
        ...
