"""Validation of a CloneSet on CREATE and UPDATE (OpenKruise v1.2's validating webhook).

Pure; no I/O. ``validate_clone_set`` reads the CloneSet as submitted (the raw JSON dict of
the AdmissionReview) and, on UPDATE, the stored one, and returns Kubernetes-style field
errors; an empty list admits. ``decide_clone_set`` reads an ``AdmissionRequest`` and gives
the ``Verdict`` the rollout service's ``validate-clonesets`` handler answers with
``services.kit.admission.to_response``: a 422 whose message reads as kube-apiserver's own
refusals (``invalid_message``)::

    CloneSet.apps.kruise.io "web" is invalid: spec.updateStrategy.partition: Invalid value: -1: \
must be greater than or equal to 0

The object is judged as the mutating webhook leaves it (``services.rollout.defaults``; the
API server runs mutating webhooks first): an absent replicas reads 1, an absent update type
``ReCreate``, an absent maxUnavailable ``"20%"``, an absent maxSurge or partition 0.

The rules, in the order their errors are listed (OpenKruise
``pkg/webhook/cloneset/validating/validation.go``):

On UPDATE first:

U1. A change to any spec field other than replicas, template, lifecycle, scaleStrategy,
    updateStrategy, minReadySeconds, volumeClaimTemplates and revisionHistoryLimit (so: the
    selector) → ``spec: Forbidden: updates to cloneset spec for fields other than ...``.
    The list and its message are current OpenKruise's; v1.2's exact list could not be read
    back from the sources at hand (older releases allowed fewer fields).
U2. Update type ``InPlaceOnly``: any change to ``template.spec`` but the replacement of a
    container's image → ``spec: Forbidden: only allowed to update images in spec for
    InPlaceOnly, but found <op> <path>`` (the first such change in key order).

Then on CREATE and UPDATE:

1.  ``spec.replicas`` ≥ 0.
2.  ``spec.selector``: required; Kubernetes' ``ValidateLabelSelector`` (label keys and values,
    operators, values present for In/NotIn and absent for Exists/DoesNotExist); not empty
    ("empty selector is invalid for cloneset"). A selector that does not convert adds
    ``spec.selector: Invalid value: <selector>`` and skips 3-4. A missing selector matches
    nothing (Go's ``labels.Nothing()``), so it also gets the error of 3, as in OpenKruise.
3.  A non-empty selector must match ``spec.template.metadata.labels`` ("`selector` does not
    match template `labels`").
4.  The pod template, with each volumeClaimTemplate counted as a volume of its name (as
    OpenKruise mocks them in). Kubernetes' full ``ValidatePodTemplateSpec`` is not
    reproduced; the subset a user is likely to hit is: template labels are valid labels;
    volume and volumeClaimTemplate names are present, RFC 1123 labels and unique;
    ``containers`` is not empty; every container and init container has a name (an RFC 1123
    label, unique across both lists) and an image; a volumeMount names a volume and has a
    mountPath; no ephemeral containers. Other pod-spec errors (resources, probes, ports,
    affinity, security contexts...) are left to the API server, which refuses them when the
    controller creates the pods.
5.  ``template.spec.restartPolicy`` other than Always → ``Unsupported value``;
    ``activeDeadlineSeconds`` set → Forbidden.
6.  ``spec.scaleStrategy.podsToDelete``: duplicated names ("duplicated items [a a]"); when a
    ``find_pod`` lookup is given, each name not already in the stored list must be a pod of
    this CloneSet that is not terminating (OpenKruise reads the pods from the API server; the
    caller reads its cache).
7.  ``spec.updateStrategy``: type one of ReCreate, InPlaceIfPossible, InPlaceOnly; partition
    scaled with the LENIENT parser (SPEC 0.1/6.5: ``"99"`` passes as 99 %, ``"x%"`` is
    refused) and ≥ 0 once scaled; priorityStrategy and scatterStrategy as their
    ``FieldsValidation``; maxUnavailable and maxSurge parse (lenient); maxSurge > 0 with
    InPlaceOnly is refused; with replicas > 0, maxUnavailable and maxSurge scaled (rounding
    up) must not both be < 1 ("maxUnavailable and maxSurge should not both be less than 1").

kruise-mesh additions (v1.2 accepts these; each is refused because it cannot work):

8.  maxUnavailable and maxSurge ≥ 0, maxUnavailable not above 100 % (a Deployment's rules;
    maxSurge, as there, has no upper bound); ``scaleStrategy.maxUnavailable`` parses
    (lenient) and is ≥ 0; ``revisionHistoryLimit`` and ``minReadySeconds`` ≥ 0.
9.  ``spec.lifecycle.{preDelete,inPlaceUpdate}``: each ``finalizersHandler`` entry is a
    finalizer name the API server accepts on a pod (Kubernetes' ``IsQualifiedName``, and a
    name without a ``domain/`` prefix only if standard: "name is neither a standard
    finalizer name nor is it fully qualified"); ``labelsHandler`` keys and values are valid
    label keys and values. A hook naming a finalizer or label no pod can carry would never
    fire.

Decisions where OpenKruise's source left room (as ``services.budget.validation``):

* Field paths use the JSON names; values print as compact JSON (OpenKruise prints an
  IntOrString with ``String()``, so an integer maxSurge shows as ``"1"``: kept, those values
  come from ``String()`` in OpenKruise too). Template label errors name
  ``spec.template.metadata.labels`` (Kubernetes prints ``spec.template.labels``); a
  volumeClaimTemplate's name errors name ``spec.volumeClaimTemplates[i].metadata.name``
  where OpenKruise names the mocked volume ``spec.template.spec.volumes[n].name``.
* Object metadata (name, labels, annotations, finalizers) is validated by the API server
  for every custom resource, so not here; nor is the DELETE-time deletion protection.
* Malformed input never raises: a field of the wrong JSON type gets an ``Invalid value``
  error saying what it must be, and the rules that need it are skipped.

    >>> errors = validate_clone_set(
    ...     {"metadata": {"name": "web"}, "spec": {"updateStrategy": {"partition": -1}}}, None
    ... )
    >>> print(errors[0])
    spec.selector: Required value
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from kruise.common.v1 import mesh_pb2
from services.kit import admission, fielderrors
from services.kit.admission import Verdict
from services.kit.fielderrors import FORBIDDEN, INVALID, REQUIRED, FieldError, must_be
from services.kit.intstr import IntOrStr, lenient_value
from services.rollout.defaults import defaulted_clone_set

__all__ = [
    "FieldError",
    "PodFacts",
    "PodLookup",
    "decide_clone_set",
    "denial_message",
    "invalid_message",
    "validate_clone_set",
]

KIND = "CloneSet.apps.kruise.io"

# field.ErrorType strings the kit does not name.
DUPLICATE = "Duplicate value"
NOT_FOUND = "Not found"
NOT_SUPPORTED = "Unsupported value"

RECREATE = "ReCreate"
IN_PLACE_IF_POSSIBLE = "InPlaceIfPossible"
IN_PLACE_ONLY = "InPlaceOnly"
UPDATE_TYPES = (RECREATE, IN_PLACE_IF_POSSIBLE, IN_PLACE_ONLY)
HOOKS = ("preDelete", "inPlaceUpdate")

EMPTY_SELECTOR = "empty selector is invalid for cloneset"
SELECTOR_MISMATCH = "`selector` does not match template `labels`"
BAD_UPDATE_TYPE = "must be 'ReCreate', InPlaceIfPossible or 'InPlaceOnly'"
NEGATIVE = "must be greater than or equal to 0"
OVER_100 = "must not be greater than 100%"
BOTH_BELOW_ONE = "maxUnavailable and maxSurge should not both be less than 1"
SURGE_WITH_IN_PLACE_ONLY = "can not use maxSurge with strategy type InPlaceOnly"
ACTIVE_DEADLINE = "activeDeadlineSeconds in cloneset is not Supported"
EPHEMERAL = "ephemeral containers not allowed in pod template"
NOT_QUALIFIED_FINALIZER = "name is neither a standard finalizer name nor is it fully qualified"
SPEC_FORBIDDEN = (
    "updates to cloneset spec for fields other than 'replicas', 'template', 'lifecycle', "
    "'scaleStrategy', 'updateStrategy', 'minReadySeconds', 'volumeClaimTemplates' and "
    "'revisionHistoryLimit' are forbidden"
)
UPDATABLE = frozenset(
    {
        "replicas",
        "template",
        "lifecycle",
        "scaleStrategy",
        "updateStrategy",
        "minReadySeconds",
        "volumeClaimTemplates",
        "revisionHistoryLimit",
    }
)
STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})

_INT32 = range(-(2**31), 2**31)
_IMAGE_PATH = re.compile(r"/containers/[0-9]+/image")


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What the podsToDelete rule needs of a pod: whether it is terminating, and the uid of
    its controller owner ("" when it has none)."""

    terminating: bool
    controller_uid: str


PodLookup = Callable[[str], PodFacts | None]
"""A pod of the CloneSet's namespace by name; None when there is no such pod."""


def validate_clone_set(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    *,
    find_pod: PodLookup | None = None,
) -> list[FieldError]:
    """The field errors of ``obj``; empty when it may be admitted.

    ``old`` is the stored CloneSet on UPDATE (None on CREATE). ``find_pod`` looks up the
    pods named in ``scaleStrategy.podsToDelete``; without it that rule checks duplicates
    only. See the module docstring for the rules and their order.
    """
    current = defaulted_clone_set(obj, old=old)
    errors = [] if old is None else _update_errors(current, old)
    spec = current.get("spec")
    if not isinstance(spec, Mapping):
        return [*errors, must_be("spec", spec, "an object")]
    metadata = current.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    errors.extend(
        _spec_errors(
            spec,
            old_spec=_spec_of(old) if old is not None else None,
            uid=uid if isinstance(uid, str) else "",
            find_pod=find_pod,
        )
    )
    return errors


def denial_message(obj: Mapping[str, Any], errors: Sequence[FieldError]) -> str:
    """The refusal of ``obj`` for ``errors``: ``invalid_message`` with the CloneSet's name.

    >>> denial_message({"metadata": {"name": "web"}}, [FieldError("spec.selector", REQUIRED, "")])
    'CloneSet.apps.kruise.io "web" is invalid: spec.selector: Required value'
    """
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return invalid_message(name if isinstance(name, str) else "", errors)


def invalid_message(name: str, errors: Sequence[FieldError]) -> str:
    """The refusal as kube-apiserver words an invalid object (``apierrors.NewInvalid``).

    >>> invalid_message("web", [FieldError("spec.selector", REQUIRED, "")])
    'CloneSet.apps.kruise.io "web" is invalid: spec.selector: Required value'
    """
    return f"{KIND} {_go_quote(name)} is invalid: {fielderrors.denial_message(errors)}"


def decide_clone_set(
    request: mesh_pb2.AdmissionRequest, *, find_pod: PodLookup | None = None
) -> Verdict:
    """The verdict for a CloneSet CREATE/UPDATE review: admitted, or refused with 422.

    A review of a subresource or of another operation is admitted; an unreadable one, or
    one without the CloneSet (or, on UPDATE, without the stored one), is refused with 400
    (OpenKruise answers a decode failure so).
    """
    written = admission.written_object(request, kind="CloneSet")
    if not isinstance(written, admission.Written):
        return written or admission.ALLOWED
    found = validate_clone_set(written.object, written.old, find_pod=find_pod)
    if not found:
        return admission.ALLOWED
    metadata = written.object.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) and name else request.name
    return admission.invalid(invalid_message(name, found))


# --- U. updates ----------------------------------------------------------------------------


def _update_errors(obj: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    spec, old_spec = _spec_of(obj), _spec_of(old)
    errors = []
    if _fixed_part(spec) != _fixed_part(old_spec):
        errors.append(FieldError("spec", FORBIDDEN, SPEC_FORBIDDEN))
    strategy = spec.get("updateStrategy")
    if isinstance(strategy, Mapping) and strategy.get("type") == IN_PLACE_ONLY:
        for op, path in _changes(_normal(_pod_spec_of(old_spec)), _normal(_pod_spec_of(spec))):
            if op != "replace" or not _IMAGE_PATH.fullmatch(path):
                detail = (
                    f"only allowed to update images in spec for {IN_PLACE_ONLY}, "
                    f"but found {op} {path}"
                )
                errors.append(FieldError("spec", FORBIDDEN, detail))
                break
    return errors


def _fixed_part(spec: Mapping[str, Any]) -> object:
    """The spec without the fields an update may change, compared as Go's semantic equality
    does (absent, null and empty lists or maps alike)."""
    return _normal({k: v for k, v in spec.items() if k not in UPDATABLE})


def _normal(value: object) -> object:
    if isinstance(value, Mapping):
        out = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _changes(before: object, after: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(op, JSON pointer) of each change from ``before`` to ``after``, in key order."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            at = path + admission.pointer(str(key))
            if key not in before:
                yield "add", at
            elif key not in after:
                yield "remove", at
            else:
                yield from _changes(before[key], after[key], at)
    elif isinstance(before, list) and isinstance(after, list):
        for i, (b, a) in enumerate(zip(before, after, strict=False)):
            yield from _changes(b, a, f"{path}/{i}")
        for i in range(len(before), len(after)):
            yield "add", f"{path}/{i}"
        for i in range(len(after), len(before)):
            yield "remove", f"{path}/{i}"
    elif type(before) is not type(after) or before != after:
        yield "replace", path


# --- 1-9. the spec -------------------------------------------------------------------------


class _Template(NamedTuple):
    labels: Mapping[str, str] | None  # None when malformed
    pod: Mapping[str, Any] | None  # None when malformed


def _spec_errors(
    spec: Mapping[str, Any],
    *,
    old_spec: Mapping[str, Any] | None,
    uid: str,
    find_pod: PodLookup | None,
) -> list[FieldError]:
    errors: list[FieldError] = []
    replicas = _int32(spec.get("replicas"), "spec.replicas", errors)
    if replicas is not None and replicas < 0:
        errors.append(FieldError("spec.replicas", INVALID, NEGATIVE, replicas))

    template = _read_template(spec.get("template"), errors)
    if _selector_rules(spec.get("selector"), template, errors) and template is not None:
        claims = _list(spec.get("volumeClaimTemplates"), "spec.volumeClaimTemplates", errors)
        errors.extend(_template_errors(template, claims or []))
    if template is not None and template.pod is not None:
        errors.extend(_template_policy_errors(template.pod))

    old_strategy = old_spec.get("scaleStrategy") if old_spec is not None else None
    errors.extend(
        _scale_strategy_errors(
            spec.get("scaleStrategy"),
            old=old_strategy,
            replicas=replicas or 0,
            uid=uid,
            find_pod=find_pod,
        )
    )
    if replicas is not None:
        errors.extend(_update_strategy_errors(spec.get("updateStrategy"), replicas))
    for key in ("revisionHistoryLimit", "minReadySeconds"):
        value = _int32(spec.get(key), f"spec.{key}", errors)
        if value is not None and value < 0:
            errors.append(FieldError(f"spec.{key}", INVALID, NEGATIVE, value))
    errors.extend(_lifecycle_errors(spec.get("lifecycle")))
    return errors


# --- 2-3. selector -------------------------------------------------------------------------


class _Requirement(NamedTuple):
    key: str
    operator: str
    values: tuple[str, ...]


class _Selector(NamedTuple):
    match_labels: Mapping[str, str]
    requirements: tuple[_Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.requirements:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


def _selector_rules(raw: object, template: _Template | None, errors: list[FieldError]) -> bool:
    """Rules 2 and 3; whether the pod template is to be validated (rule 4)."""
    path = "spec.selector"
    if raw is None:
        errors.append(FieldError(path, REQUIRED, ""))
        selector = None  # Go's labels.Nothing(): matches no labels, and is not "empty"
    else:
        selector = _read_selector(raw, path, errors)
        if selector is None:
            return False
        problems = _selector_errors(selector, path)
        errors.extend(problems)
        if not selector.match_labels and not selector.requirements:
            errors.append(FieldError(path, INVALID, EMPTY_SELECTOR, raw))
            return not problems
        if problems:
            errors.append(FieldError(path, INVALID, "", raw))
            return False
    if template is not None and template.labels is not None:
        if selector is None or not selector.matches(template.labels):
            errors.append(
                FieldError(
                    "spec.template.metadata.labels",
                    INVALID,
                    SELECTOR_MISMATCH,
                    dict(template.labels),
                )
            )
    return True


def _read_selector(raw: object, path: str, errors: list[FieldError]) -> _Selector | None:
    """The selector's parts; None (errors added) when its shape is wrong."""
    if not isinstance(raw, Mapping):
        errors.append(must_be(path, raw, "an object"))
        return None
    labels = _string_map(raw.get("matchLabels"), f"{path}.matchLabels", errors)
    exprs = _list(raw.get("matchExpressions"), f"{path}.matchExpressions", errors)
    if labels is None or exprs is None:
        return None
    requirements = []
    for i, item in enumerate(exprs):
        at = f"{path}.matchExpressions[{i}]"
        if not isinstance(item, Mapping):
            errors.append(must_be(at, item, "an object"))
            return None
        key, operator, values = item.get("key", ""), item.get("operator", ""), item.get("values")
        if not isinstance(key, str) or not isinstance(operator, str):
            errors.append(must_be(at, item, "an object with string key and operator"))
            return None
        values = [] if values is None else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            errors.append(must_be(f"{at}.values", values, "a list of strings"))
            return None
        requirements.append(_Requirement(key, operator, tuple(values)))
    return _Selector(labels, tuple(requirements))


def _selector_errors(selector: _Selector, path: str) -> list[FieldError]:
    """Kubernetes' ``ValidateLabelSelector``."""
    errors = _label_errors(selector.match_labels, f"{path}.matchLabels")
    for i, req in enumerate(selector.requirements):
        at = f"{path}.matchExpressions[{i}]"
        if req.operator in ("In", "NotIn"):
            if not req.values:
                detail = "must be specified when `operator` is 'In' or 'NotIn'"
                errors.append(FieldError(f"{at}.values", REQUIRED, detail))
        elif req.operator in ("Exists", "DoesNotExist"):
            if req.values:
                detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                errors.append(FieldError(f"{at}.values", FORBIDDEN, detail))
        else:
            errors.append(
                FieldError(f"{at}.operator", INVALID, "not a valid selector operator", req.operator)
            )
        errors.extend(FieldError(f"{at}.key", INVALID, m, req.key) for m in _qualified(req.key))
        errors.extend(
            FieldError(f"{at}.values[{j}]", INVALID, m, value)
            for j, value in enumerate(req.values)
            for m in _label_value_messages(value)
        )
    return errors


# --- 4-5. the pod template -----------------------------------------------------------------


def _read_template(raw: object, errors: list[FieldError]) -> _Template | None:
    template = _mapping(raw, "spec.template", errors)
    if template is None:
        return None
    metadata = _mapping(template.get("metadata"), "spec.template.metadata", errors)
    labels = None
    if metadata is not None:
        labels = _string_map(metadata.get("labels"), "spec.template.metadata.labels", errors)
    pod = _mapping(template.get("spec"), "spec.template.spec", errors)
    return _Template(labels, pod)


def _template_errors(template: _Template, claims: Sequence[object]) -> list[FieldError]:
    errors: list[FieldError] = []
    if template.labels is not None:
        errors.extend(_label_errors(template.labels, "spec.template.metadata.labels"))
    pod = template.pod
    if pod is None:
        return errors
    path = "spec.template.spec"
    volumes = _volume_names(pod.get("volumes"), claims, errors)
    containers = _list(pod.get("containers"), f"{path}.containers", errors)
    names: set[str] = set()
    if containers is not None:
        if not containers:
            errors.append(FieldError(f"{path}.containers", REQUIRED, ""))
        errors.extend(
            _container_errors(containers, f"{path}.containers", names=names, volumes=volumes)
        )
    init = _list(pod.get("initContainers"), f"{path}.initContainers", errors)
    if init:
        errors.extend(
            _container_errors(init, f"{path}.initContainers", names=names, volumes=volumes)
        )
    if pod.get("ephemeralContainers"):
        errors.append(FieldError(f"{path}.ephemeralContainers", FORBIDDEN, EPHEMERAL))
    return errors


def _volume_names(
    raw: object, claims: Sequence[object], errors: list[FieldError]
) -> set[str] | None:
    """The names a volumeMount may use (template volumes and volumeClaimTemplates); None
    when the volumes are malformed, so that mounts are not checked against them."""
    volumes = _list(raw, "spec.template.spec.volumes", errors)
    if volumes is None:
        return None
    named: list[tuple[str, object]] = []
    for i, volume in enumerate(volumes):
        at = f"spec.template.spec.volumes[{i}]"
        if not isinstance(volume, Mapping):
            errors.append(must_be(at, volume, "an object"))
            return None
        named.append((f"{at}.name", volume.get("name")))
    for i, claim in enumerate(claims):
        at = f"spec.volumeClaimTemplates[{i}]"
        if not isinstance(claim, Mapping):
            errors.append(must_be(at, claim, "an object"))
            return None
        claim_meta = _mapping(claim.get("metadata"), f"{at}.metadata", errors)
        if claim_meta is None:
            return None
        named.append((f"{at}.metadata.name", claim_meta.get("name")))
    names: set[str] = set()
    for at, name in named:
        if name is not None and not isinstance(name, str):
            errors.append(must_be(at, name, "a string"))
            continue
        name = name or ""
        found = [FieldError(at, REQUIRED, "")] if not name else _dns1123_label(name, at)
        if name in names:
            found.append(FieldError(at, DUPLICATE, "", name))
        if found:
            errors.extend(found)
        else:
            names.add(name)
    return names


def _container_errors(
    containers: Sequence[object],
    path: str,
    *,
    names: set[str],
    volumes: set[str] | None,
) -> list[FieldError]:
    """Name, uniqueness (``names`` carries the names taken so far), image and mounts."""
    errors: list[FieldError] = []
    for i, container in enumerate(containers):
        at = f"{path}[{i}]"
        if not isinstance(container, Mapping):
            errors.append(must_be(at, container, "an object"))
            continue
        name = container.get("name")
        if name is not None and not isinstance(name, str):
            errors.append(must_be(f"{at}.name", name, "a string"))
        else:
            name = name or ""
            if not name:
                errors.append(FieldError(f"{at}.name", REQUIRED, ""))
            else:
                errors.extend(_dns1123_label(name, f"{at}.name"))
            if name in names:
                errors.append(FieldError(f"{at}.name", DUPLICATE, "", name))
            names.add(name)
        image = container.get("image")
        if image is None or image == "":
            errors.append(FieldError(f"{at}.image", REQUIRED, ""))
        elif not isinstance(image, str):
            errors.append(must_be(f"{at}.image", image, "a string"))
        mounts = _list(container.get("volumeMounts"), f"{at}.volumeMounts", errors) or []
        for j, mount in enumerate(mounts):
            errors.extend(_mount_errors(mount, f"{at}.volumeMounts[{j}]", volumes))
    return errors


def _mount_errors(mount: object, at: str, volumes: set[str] | None) -> list[FieldError]:
    if not isinstance(mount, Mapping):
        return [must_be(at, mount, "an object")]
    errors = []
    name, mount_path = mount.get("name") or "", mount.get("mountPath") or ""
    if not name:
        errors.append(FieldError(f"{at}.name", REQUIRED, ""))
    if volumes is not None and name not in volumes:
        errors.append(FieldError(f"{at}.name", NOT_FOUND, "", name))
    if not mount_path:
        errors.append(FieldError(f"{at}.mountPath", REQUIRED, ""))
    return errors


def _template_policy_errors(pod: Mapping[str, Any]) -> list[FieldError]:
    """Rule 5: what a CloneSet's pods may not have."""
    path = "spec.template.spec"
    errors = []
    policy = pod.get("restartPolicy")
    if policy is not None and policy != "" and policy != "Always":
        errors.append(
            FieldError(f"{path}.restartPolicy", NOT_SUPPORTED, 'supported values: "Always"', policy)
        )
    if pod.get("activeDeadlineSeconds") is not None:
        errors.append(FieldError(f"{path}.activeDeadlineSeconds", FORBIDDEN, ACTIVE_DEADLINE))
    return errors


# --- 6. scaleStrategy ----------------------------------------------------------------------


def _scale_strategy_errors(
    raw: object,
    *,
    old: object,
    replicas: int,
    uid: str,
    find_pod: PodLookup | None,
) -> list[FieldError]:
    path = "spec.scaleStrategy"
    errors: list[FieldError] = []
    strategy = _mapping(raw, path, errors)
    if strategy is None:
        return errors
    to_delete = _string_list(strategy.get("podsToDelete"), f"{path}.podsToDelete", errors)
    if to_delete is not None:
        errors.extend(_pods_to_delete_errors(to_delete, old=old, uid=uid, find_pod=find_pod))
    limit = strategy.get("maxUnavailable")
    if limit is not None:
        errors.extend(
            _int_or_percent_errors(
                limit, f"{path}.maxUnavailable", "maxUnavailable", replicas=replicas
            )[1]
        )
    return errors


def _pods_to_delete_errors(
    names: list[str], *, old: object, uid: str, find_pod: PodLookup | None
) -> list[FieldError]:
    path = "spec.scaleStrategy.podsToDelete"
    seen: set[str] = set()
    duplicated = []
    for name in names:
        if name in seen:
            duplicated.append(name)
        seen.add(name)
    if duplicated:
        return [FieldError(path, INVALID, f"duplicated items [{' '.join(duplicated)}]", names)]
    if find_pod is None:
        return []
    old_names = old.get("podsToDelete") if isinstance(old, Mapping) else None
    known = set(old_names) if isinstance(old_names, list) else set()
    errors = []
    for name in sorted(seen - known):
        pod = find_pod(name)
        if pod is None:
            detail = f"find pod {name} failed: pods {_go_quote(name)} not found"
        elif pod.terminating:
            detail = f"find pod {name} already terminating"
        elif not pod.controller_uid or pod.controller_uid != uid:
            detail = f"find pod {name} owner is not this CloneSet"
        else:
            continue
        errors.append(FieldError(path, INVALID, detail, name))
    return errors


# --- 7-8. updateStrategy -------------------------------------------------------------------


def _update_strategy_errors(raw: object, replicas: int) -> list[FieldError]:
    path = "spec.updateStrategy"
    errors: list[FieldError] = []
    strategy = _mapping(raw, path, errors)
    if strategy is None:
        return errors
    type_ = strategy.get("type")
    if type_ not in UPDATE_TYPES:
        errors.append(FieldError(f"{path}.type", INVALID, BAD_UPDATE_TYPE, type_))

    partition = _int_or_str(strategy.get("partition", 0), f"{path}.partition", errors)
    if partition is not None:
        try:
            scaled = lenient_value(partition, total=replicas, round_up=True)
        except ValueError as e:
            detail = f"failed getValueFromIntOrPercent for partition: {e}"
            errors.append(FieldError(f"{path}.partition", INVALID, detail, str(partition)))
            scaled = 0
        if scaled < 0:
            errors.append(FieldError(f"{path}.partition", INVALID, NEGATIVE, scaled))

    errors.extend(_priority_errors(strategy.get("priorityStrategy"), f"{path}.priorityStrategy"))
    errors.extend(_scatter_errors(strategy.get("scatterStrategy"), f"{path}.scatterStrategy"))

    raw_unavailable = strategy.get("maxUnavailable")
    unavailable, found = _int_or_percent_errors(
        raw_unavailable,
        f"{path}.maxUnavailable",
        "maxUnavailable",
        replicas=replicas,
        at_most_100=True,
    )
    errors.extend(found)
    surge, found = _int_or_percent_errors(
        strategy.get("maxSurge"), f"{path}.maxSurge", "maxSurge", replicas=replicas
    )
    errors.extend(found)
    if type_ == IN_PLACE_ONLY and surge > 0:
        errors.append(
            FieldError(
                f"{path}.maxSurge",
                INVALID,
                SURGE_WITH_IN_PLACE_ONLY,
                str(strategy.get("maxSurge")),
            )
        )
    if replicas > 0 and unavailable < 1 and surge < 1:
        errors.append(
            FieldError(f"{path}.maxUnavailable", INVALID, BOTH_BELOW_ONE, raw_unavailable)
        )
    return errors


def _int_or_percent_errors(
    raw: object,
    path: str,
    name: str,
    *,
    replicas: int,
    at_most_100: bool = False,
) -> tuple[int, list[FieldError]]:
    """The count ``raw`` stands for out of ``replicas`` (lenient, rounding up; 0 when absent
    or unreadable) and its errors: unreadable (v1.2), negative or above 100 % (kruise-mesh)."""
    errors: list[FieldError] = []
    if raw is None:
        return 0, errors
    value = _int_or_str(raw, path, errors)
    if value is None:
        return 0, errors
    try:
        scaled = lenient_value(value, total=replicas, round_up=True)
    except ValueError as e:
        detail = f"failed getValueFromIntOrPercent for {name}: {e}"
        return 0, [FieldError(path, INVALID, detail, str(value))]
    number = value if isinstance(value, int) else int(value.replace("%", ""))
    if number < 0:
        errors.append(FieldError(path, INVALID, NEGATIVE, value))
    elif at_most_100 and isinstance(value, str) and number > 100:
        errors.append(FieldError(path, INVALID, OVER_100, value))
    return scaled, errors


def _priority_errors(raw: object, path: str) -> list[FieldError]:
    """``UpdatePriorityStrategy.FieldsValidation``: at most one error, as a Required value."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return [must_be(path, raw, "an object")]
    weights, orders = raw.get("weightPriority") or [], raw.get("orderPriority") or []
    if not isinstance(weights, list) or not isinstance(orders, list):
        return [must_be(path, raw, "an object of weightPriority and orderPriority lists")]
    message = None
    if weights and orders:
        message = "only one of weightPriority and orderPriority can be used"
    for term in weights:
        if message is not None:
            break
        message = _weight_term_message(term)
    for term in orders:
        if message is not None:
            break
        key = term.get("orderedKey") if isinstance(term, Mapping) else None
        if not key:
            message = "order key can not be empty"
    return [] if message is None else [FieldError(path, REQUIRED, message)]


def _weight_term_message(term: object) -> str | None:
    if not isinstance(term, Mapping):
        return "weight must be valid number in the range 1-100"
    weight = term.get("weight", 0)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
        return "weight must be valid number in the range 1-100"
    raw = term.get("matchSelector")
    if not raw:
        return "selector can not be empty"
    shape: list[FieldError] = []
    selector = _read_selector(raw, "matchSelector", shape)
    if selector is None:
        return f"invalid selector {shape[0].detail}"
    problems = _selector_errors(selector, "matchSelector")
    if not selector.match_labels and not selector.requirements:
        return "selector can not be empty"
    return f"invalid selector {problems[0]}" if problems else None


def _scatter_errors(raw: object, path: str) -> list[FieldError]:
    """``UpdateScatterStrategy.FieldsValidation``: at most one error, as a Required value."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return [must_be(path, raw, "a list")]
    seen: set[tuple[object, object]] = set()
    for term in raw:
        key = term.get("key") if isinstance(term, Mapping) else None
        value = term.get("value", "") if isinstance(term, Mapping) else ""
        if not key:
            return [FieldError(path, REQUIRED, "key should not be empty")]
        if (key, value) in seen:
            return [FieldError(path, REQUIRED, f"duplicated key={key} value={value}")]
        seen.add((key, value))
    return []


# --- 9. lifecycle hooks --------------------------------------------------------------------


def _lifecycle_errors(raw: object) -> list[FieldError]:
    path = "spec.lifecycle"
    errors: list[FieldError] = []
    lifecycle = _mapping(raw, path, errors)
    if lifecycle is None:
        return errors
    for hook_name in HOOKS:
        at = f"{path}.{hook_name}"
        hook = _mapping(lifecycle.get(hook_name), at, errors)
        if hook is None:
            continue
        finalizers = _string_list(hook.get("finalizersHandler"), f"{at}.finalizersHandler", errors)
        for i, finalizer in enumerate(finalizers or []):
            errors.extend(_finalizer_errors(finalizer, f"{at}.finalizersHandler[{i}]"))
        labels = _string_map(hook.get("labelsHandler"), f"{at}.labelsHandler", errors)
        if labels is not None:
            errors.extend(_label_errors(labels, f"{at}.labelsHandler"))
        mark = hook.get("markPodNotReady")
        if mark is not None and not isinstance(mark, bool):
            errors.append(must_be(f"{at}.markPodNotReady", mark, "a boolean"))
    return errors


def _finalizer_errors(name: str, path: str) -> list[FieldError]:
    """What kube-apiserver says of ``name`` as a pod's finalizer."""
    messages = _qualified(name)
    if not messages and "/" not in name and name not in STANDARD_FINALIZERS:
        messages = [NOT_QUALIFIED_FINALIZER]
    return [FieldError(path, INVALID, m, name) for m in messages]


# --- Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation) ---------------------


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``validation.RegexError``, its double spaces included."""
    shown = "".join(("" if i == 0 else " or ") + f"'{e}', " for i, e in enumerate(examples))
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME = re.compile(_QNAME_FMT)
_QNAME_ERROR = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character",
    _QNAME_FMT,
    "MyName",
    "my.name",
    "123-abc",
)
_LABEL_VALUE_ERROR = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character",
    f"({_QNAME_FMT})?",
    "MyValue",
    "my_value",
    "12345",
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_LABEL_ERROR = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character",
    _DNS1123_LABEL_FMT,
    "my-name",
    "123-abc",
)
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_ERROR = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character",
    _DNS1123_SUBDOMAIN_FMT,
    "example.com",
)


def _qualified(name: str) -> list[str]:
    """Kubernetes' ``IsQualifiedName``: ``[prefix/]name``, the prefix a DNS subdomain.

    >>> _qualified("example.io/unready-blocker"), _qualified("blocker")
    ([], [])
    >>> _qualified("a/b/c")[0][:40]
    'a qualified name must consist of alphanu'
    """
    parts = name.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {_QNAME_ERROR} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    messages = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            messages.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                messages.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                messages.append(f"prefix part {_DNS1123_SUBDOMAIN_ERROR}")
    last = parts[-1]
    if not last:
        messages.append("name part must be non-empty")
    elif len(last) > 63:
        messages.append("name part must be no more than 63 characters")
    if not _QNAME.fullmatch(last):
        messages.append(f"name part {_QNAME_ERROR}")
    return messages


def _label_value_messages(value: str) -> list[str]:
    messages = []
    if len(value) > 63:
        messages.append("must be no more than 63 characters")
    if value and not _QNAME.fullmatch(value):
        messages.append(_LABEL_VALUE_ERROR)
    return messages


def _label_errors(labels: Mapping[str, str], path: str) -> list[FieldError]:
    """Kubernetes' ``ValidateLabels``: every key a qualified name, every value a label value."""
    errors: list[FieldError] = []
    for key, value in labels.items():
        errors.extend(FieldError(path, INVALID, m, key) for m in _qualified(key))
        errors.extend(FieldError(path, INVALID, m, value) for m in _label_value_messages(value))
    return errors


def _dns1123_label(name: str, path: str) -> list[FieldError]:
    errors = []
    if len(name) > 63:
        errors.append(FieldError(path, INVALID, "must be no more than 63 characters", name))
    if not _DNS1123_LABEL.fullmatch(name):
        errors.append(FieldError(path, INVALID, _DNS1123_LABEL_ERROR, name))
    return errors


# --- reading raw JSON ----------------------------------------------------------------------


def _spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _pod_spec_of(spec: Mapping[str, Any]) -> object:
    template = spec.get("template")
    return template.get("spec") if isinstance(template, Mapping) else None


def _mapping(value: object, path: str, errors: list[FieldError]) -> Mapping[str, Any] | None:
    """An object field: absent or null reads as ``{}``, another type adds an error (None)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    errors.append(must_be(path, value, "an object"))
    return None


def _list(value: object, path: str, errors: list[FieldError]) -> list[Any] | None:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    errors.append(must_be(path, value, "a list"))
    return None


def _string_list(value: object, path: str, errors: list[FieldError]) -> list[str] | None:
    items = _list(value, path, errors)
    if items is None:
        return None
    if not all(isinstance(item, str) for item in items):
        errors.append(must_be(path, value, "a list of strings"))
        return None
    return items


def _string_map(value: object, path: str, errors: list[FieldError]) -> Mapping[str, str] | None:
    mapping = _mapping(value, path, errors)
    if mapping is None:
        return None
    if not all(isinstance(v, str) for v in mapping.values()):
        errors.append(must_be(path, value, "an object of strings"))
        return None
    return mapping


def _int32(value: object, path: str, errors: list[FieldError]) -> int | None:
    """An int32 field; None when absent or malformed (an error added when malformed)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in _INT32:
        return value
    errors.append(must_be(path, value, "a 32-bit integer"))
    return None


def _int_or_str(value: object, path: str, errors: list[FieldError]) -> IntOrStr | None:
    if isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool) and value in _INT32
    ):
        return value
    errors.append(must_be(path, value, "a 32-bit integer or a percentage string"))
    return None


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text names hold (JSON string escaping)."""
    return json.dumps(text, ensure_ascii=False)
