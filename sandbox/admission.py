"""Admission webhook dispatch for the sandbox API server, as kube-apiserver does it.

``WebhookDispatcher`` implements ``sandbox.admission_types.Dispatcher``. For every
write the REST layer hands it an ``AdmissionAttributes``; the dispatcher reads the
``admissionregistration.k8s.io/v1`` Mutating/ValidatingWebhookConfigurations and
the Namespaces through an ``ObjectSource`` at call time, picks the webhooks whose
rules, namespaceSelector and objectSelector match, and POSTs an
``admission.k8s.io/v1 AdmissionReview`` to each over HTTPS:

- mutating webhooks run one after another (configurations sorted by name, then
  webhook order), each seeing the object as patched by the ones before;
- validating webhooks run concurrently on the final object.

Outcomes, as the apiserver turns them into API errors (``sandbox.errors.ApiError``)::

    denial (allowed: false)            the webhook's Status, code < 400 raised to 400,
                                       message "admission webhook "<n>" denied the request..."
    call failure, failurePolicy Fail   500 InternalError "failed calling webhook "<n>": ..."
    call failure, failurePolicy Ignore webhook skipped, logged
    bad JSONPatch document             500 InternalError (not subject to failurePolicy)
    dryRun + sideEffects Some/Unknown  400 BadRequest "... does not support dry run"

Warnings. A webhook answer's ``warnings`` must reach the HTTP response as one
``Warning: 299 - "<text>"`` header each. The dispatcher appends them to a list
held in a module-level ``ContextVar``: the REST handler calls ``begin_request()``
at the start of each request (aiohttp runs each request in its own task, hence
its own context), then reads ``current_warnings()`` when it writes the response
and formats each with ``warning_header()``. Without ``begin_request()`` warnings
are dropped (logged at debug level).

Client certificate. kube-apiserver can prove itself to webhooks with a client
certificate (its AdmissionConfiguration's kubeconfig names one per webhook host);
with ``client_identity`` (``write_client_identity``: a CA of its own and a client
certificate it issued) the dispatcher presents one on every call, so a gateway
started with ``--webhook-client-ca`` can tell the API server from anyone else.

Known simplifications (the sandbox is a test double): ``matchPolicy: Equivalent``
is treated as ``Exact``; ``reinvocationPolicy: IfNeeded`` is ignored (no second
pass); a webhook with ``matchConditions`` (CEL) is treated as not matching and a
warning is logged; when several validating webhooks deny, the first in webhook
order wins (the apiserver reports whichever finished first); a namespace missing
from the source is matched with only its automatic ``kubernetes.io/metadata.name``
label.

The matching and response-reading code is pure (module-level functions, no I/O);
``WebhookDispatcher`` is the shell that reads the source and talks HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import errno
import logging
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jsonpatch
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.admission_types import AdmissionAttributes, ObjectSource
from sandbox.errors import ApiError, bad_request
from services.kit.certs import CertPair, generate_ca, write_pair

__all__ = [
    "ClientIdentity",
    "ServiceResolver",
    "Webhook",
    "WebhookDispatcher",
    "begin_request",
    "current_warnings",
    "warning_header",
    "write_client_identity",
]

log = logging.getLogger(__name__)

ServiceResolver = Callable[[str, str, int], "str | None"]
"""``(namespace, name, port) -> base URL`` (e.g. ``https://127.0.0.1:8443``) or None."""

ADMISSION_GROUP = "admissionregistration.k8s.io"
REVIEW_API_VERSION = "admission.k8s.io/v1"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_TIMEOUT_SECONDS = 10

# The apiserver never sends these to webhooks, so a bad webhook cannot lock itself in.
_EXEMPT_RESOURCES = frozenset(
    {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    }
)

# --------------------------------------------------------------------------- warnings

_WARNINGS: ContextVar[list[str] | None] = ContextVar("sandbox_admission_warnings", default=None)


def begin_request() -> list[str]:
    """Start collecting webhook warnings for the request running in this context."""
    warnings: list[str] = []
    _WARNINGS.set(warnings)
    return warnings


def current_warnings() -> list[str]:
    """The warnings collected since ``begin_request()`` (empty if it was not called)."""
    warnings = _WARNINGS.get()
    return warnings if warnings is not None else []


def warning_header(text: str) -> str:
    """The ``Warning`` header value for one warning: ``299 - "<text>"``, quotes escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _add_warnings(texts: Iterable[Any]) -> None:
    warnings = _WARNINGS.get()
    for text in texts:
        if not isinstance(text, str) or not text:
            continue
        if warnings is None:
            log.debug("webhook warning outside a request: %s", text)
        elif text not in warnings:
            warnings.append(text)


# --------------------------------------------------------------------------- parsed config

Requirement = tuple[str, str, frozenset[str]]
"""One label requirement: ``(key, operator, values)``; operator In/NotIn/Exists/DoesNotExist."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``rules[]`` entry. ``resources`` holds ``(resource, subresource)`` pairs."""

    operations: frozenset[str]
    api_groups: frozenset[str]
    api_versions: frozenset[str]
    resources: tuple[tuple[str, str], ...]
    scope: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of a configuration, with its defaults applied.

    ``namespace_selector``/``object_selector`` are None when empty (match all).
    ``url`` is set for ``clientConfig.url``; otherwise ``service`` is
    ``(namespace, name, port, path)``. ``error`` is set when the configuration
    could not be parsed (for example an invalid selector operator).
    """

    name: str
    configuration: str
    mutating: bool
    rules: tuple[Rule, ...]
    namespace_selector: tuple[Requirement, ...] | None
    object_selector: tuple[Requirement, ...] | None
    failure_policy: Literal["Fail", "Ignore"]
    side_effects: str
    timeout_seconds: int
    review_versions: tuple[str, ...]
    url: str | None
    service: tuple[str, str, int, str] | None
    ca_bundle: str
    has_match_conditions: bool
    error: str = ""


def parse_selector(selector: Mapping[str, Any] | None) -> tuple[Requirement, ...] | None:
    """Compile a metav1 LabelSelector. None for an empty (match-everything) selector.

    Pure. Raises ValueError for an unknown operator or a values list that does
    not fit the operator.
    """
    if not selector:
        return None
    requirements: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        requirements.append((key, "In", frozenset({str(value)})))
    for expr in selector.get("matchExpressions") or ():
        key = str(expr.get("key", ""))
        op = str(expr.get("operator", ""))
        values = frozenset(str(v) for v in expr.get("values") or ())
        if op in ("In", "NotIn"):
            if not values:
                raise ValueError(f"{op}: values must be non-empty for key {key!r}")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                raise ValueError(f"{op}: values must be empty for key {key!r}")
        else:
            raise ValueError(f"{op!r} is not a valid label selector operator")
        requirements.append((key, op, values))
    return tuple(requirements) or None


def selector_matches(
    requirements: tuple[Requirement, ...] | None, labels: Mapping[str, str]
) -> bool:
    """Pure: whether ``labels`` satisfy every requirement (None matches everything)."""
    if requirements is None:
        return True
    for key, op, values in requirements:
        present = key in labels
        if op == "In":
            ok = present and labels[key] in values
        elif op == "NotIn":
            ok = not present or labels[key] not in values
        elif op == "Exists":
            ok = present
        else:
            ok = not present
        if not ok:
            return False
    return True


def _split_resource(text: str) -> tuple[str, str]:
    resource, _, sub = text.partition("/")
    return resource, sub


def _parse_rule(raw: Mapping[str, Any]) -> Rule:
    return Rule(
        operations=frozenset(raw.get("operations") or ()),
        api_groups=frozenset(raw.get("apiGroups") or ()),
        api_versions=frozenset(raw.get("apiVersions") or ()),
        resources=tuple(_split_resource(str(r)) for r in raw.get("resources") or ()),
        scope=str(raw.get("scope") or "*"),
    )


def parse_configuration(config: Mapping[str, Any], *, mutating: bool) -> list[Webhook]:
    """Pure: the webhooks of one Mutating/ValidatingWebhookConfiguration, defaults applied."""
    config_name = str((config.get("metadata") or {}).get("name", ""))
    hooks: list[Webhook] = []
    for raw in config.get("webhooks") or ():
        client = raw.get("clientConfig") or {}
        service_raw = client.get("service")
        service = None
        if service_raw:
            service = (
                str(service_raw.get("namespace", "")),
                str(service_raw.get("name", "")),
                int(service_raw.get("port") or 443),
                str(service_raw.get("path") or ""),
            )
        error = ""
        try:
            ns_selector = parse_selector(raw.get("namespaceSelector"))
            obj_selector = parse_selector(raw.get("objectSelector"))
        except ValueError as e:
            ns_selector = obj_selector = None
            error = str(e)
        policy: Literal["Fail", "Ignore"] = (
            "Ignore" if raw.get("failurePolicy") == "Ignore" else "Fail"
        )
        hooks.append(
            Webhook(
                name=str(raw.get("name", "")),
                configuration=config_name,
                mutating=mutating,
                rules=tuple(_parse_rule(r) for r in raw.get("rules") or ()),
                namespace_selector=ns_selector,
                object_selector=obj_selector,
                failure_policy=policy,
                side_effects=str(raw.get("sideEffects") or "Unknown"),
                timeout_seconds=int(raw.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
                review_versions=tuple(raw.get("admissionReviewVersions") or ()),
                url=client.get("url"),
                service=service,
                ca_bundle=str(client.get("caBundle") or ""),
                has_match_conditions=bool(raw.get("matchConditions")),
                error=error,
            )
        )
    return hooks


# --------------------------------------------------------------------------- matching


def _is_namespace_request(attrs: AdmissionAttributes) -> bool:
    return attrs.resource.group == "" and attrs.resource.resource == "namespaces"


def rule_matches(rule: Rule, attrs: AdmissionAttributes) -> bool:
    """Pure: whether one rule covers the request (operation, group, version, resource, scope).

    ``*`` matches every main resource but no subresource; ``pods/*`` every
    subresource of pods; ``*/*`` everything; ``*/status`` every status subresource.
    """
    if "*" not in rule.operations and attrs.operation not in rule.operations:
        return False
    if "*" not in rule.api_groups and attrs.resource.group not in rule.api_groups:
        return False
    if "*" not in rule.api_versions and attrs.resource.version not in rule.api_versions:
        return False
    resource, sub = attrs.resource.resource, attrs.subresource
    if not any((r == "*" or r == resource) and (s == "*" or s == sub) for r, s in rule.resources):
        return False
    if rule.scope == "Namespaced":
        return not _is_namespace_request(attrs) and attrs.namespace != ""
    if rule.scope == "Cluster":
        return _is_namespace_request(attrs) or attrs.namespace == ""
    return True


def _labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, str] | None:
    if obj is None:
        return None
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def object_selector_matches(hook: Webhook, obj: Mapping[str, Any] | None, old: Any) -> bool:
    """Pure: the objectSelector matches the new object or the old one (either suffices)."""
    if hook.object_selector is None:
        return True
    for candidate in (obj, old):
        labels = _labels_of(candidate)
        if labels is not None and selector_matches(hook.object_selector, labels):
            return True
    return False


def is_exempt(attrs: AdmissionAttributes) -> bool:
    """Pure: webhook configurations and admission policies are never sent to webhooks."""
    return attrs.resource.group == ADMISSION_GROUP and attrs.resource.resource in _EXEMPT_RESOURCES


# --------------------------------------------------------------------------- wire


def build_review(
    attrs: AdmissionAttributes, *, uid: str, obj: dict[str, Any] | None
) -> dict[str, Any]:
    """Pure: the AdmissionReview v1 body, keys in the apiserver's order.

    ``subResource``/``requestSubResource`` only when set, ``name`` and
    ``namespace`` only when non-empty; ``obj`` replaces ``attrs.object`` (the
    mutating chain passes the object as patched so far).
    """
    kind = {"group": attrs.kind.group, "version": attrs.kind.version, "kind": attrs.kind.kind}
    resource = {
        "group": attrs.resource.group,
        "version": attrs.resource.version,
        "resource": attrs.resource.resource,
    }
    request: dict[str, Any] = {"uid": uid, "kind": kind, "resource": resource}
    if attrs.subresource:
        request["subResource"] = attrs.subresource
    request["requestKind"] = kind
    request["requestResource"] = resource
    if attrs.subresource:
        request["requestSubResource"] = attrs.subresource
    if attrs.name:
        request["name"] = attrs.name
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    request["operation"] = attrs.operation
    request["userInfo"] = attrs.user_info
    request["object"] = obj
    request["oldObject"] = attrs.old_object
    request["dryRun"] = attrs.dry_run
    request["options"] = attrs.options
    return {"kind": "AdmissionReview", "apiVersion": REVIEW_API_VERSION, "request": request}


class CallFailed(Exception):
    """A webhook call failed; ``str()`` is the apiserver's text after the webhook name."""


def read_response(body: bytes, *, uid: str, mutating: bool) -> dict[str, Any]:
    """Pure: decode and verify an AdmissionReview answer; return its ``response``.

    Raises ``CallFailed`` for an undecodable body ("failed to call webhook: ...")
    and for a well-formed but wrong answer ("received invalid webhook response: ...").
    A returned patch is already base64-decoded, under the key ``patch``.
    """
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise CallFailed(f"failed to call webhook: {e}") from e
    if not isinstance(review, dict):
        raise CallFailed("failed to call webhook: response body is not a JSON object")
    gvk = f"{review.get('apiVersion', '')}, Kind={review.get('kind', '')}"
    if gvk != f"{REVIEW_API_VERSION}, Kind=AdmissionReview":
        raise CallFailed(
            "received invalid webhook response: expected webhook response of "
            f"{REVIEW_API_VERSION}, Kind=AdmissionReview, got {gvk}"
        )
    response = review.get("response")
    if not isinstance(response, dict):
        raise CallFailed("received invalid webhook response: webhook response was absent")
    got = response.get("uid", "")
    if got != uid:
        raise CallFailed(
            f'received invalid webhook response: expected response.uid="{uid}", got "{got}"'
        )
    patch = response.get("patch")
    patch_type = response.get("patchType")
    if not mutating:
        if patch:
            raise CallFailed(
                "received invalid webhook response: validating webhook may not return "
                "response.patch"
            )
        if patch_type is not None:
            raise CallFailed(
                "received invalid webhook response: validating webhook may not return "
                "response.patchType"
            )
        return response
    if patch:
        try:
            decoded = base64.b64decode(str(patch), validate=True)
        except binascii.Error as e:
            raise CallFailed(f"failed to call webhook: illegal base64 data: {e}") from e
        if patch_type is None:
            raise CallFailed(
                "received invalid webhook response: webhook returned response.patch but "
                "not response.patchType"
            )
        if patch_type != "JSONPatch":
            raise CallFailed(
                "received invalid webhook response: webhook returned invalid "
                f'response.patchType of "{patch_type}"'
            )
        response = {**response, "patch": decoded}
    return response


def denial_error(webhook_name: str, status: Mapping[str, Any] | None) -> ApiError:
    """Pure: the API error for ``allowed: false``, as the apiserver builds it.

    The webhook's Status is kept (reason, details), the code is raised to 400 if
    missing or below, and the message gets the ``admission webhook "<n>" denied
    the request`` prefix (then the message, else the reason, else "without
    explanation").
    """
    status = status or {}
    denied_by = f'admission webhook "{webhook_name}" denied the request'
    message = str(status.get("message") or "")
    reason = str(status.get("reason") or "")
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    try:
        code = int(status.get("code") or 0)
    except (TypeError, ValueError):
        code = 0
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": status.get("metadata") or {},
        "status": status.get("status") or "Failure",
        "message": text,
    }
    if reason:
        body["reason"] = reason
    if status.get("details"):
        body["details"] = status["details"]
    body["code"] = max(code, 400)
    return ApiError(body)


def internal_error(message: str) -> ApiError:
    """500 InternalError with the apiserver's ``Internal error occurred:`` prefix."""
    return ApiError.status(
        code=500,
        reason="InternalError",
        message=f"Internal error occurred: {message}",
        details={"causes": [{"message": message}]},
    )


def apply_patch(obj: dict[str, Any] | None, patch: bytes) -> dict[str, Any]:
    """Pure: apply a decoded JSONPatch document to a copy of ``obj``.

    Raises ``ValueError`` when the document is not a JSON patch or does not apply.
    """
    if obj is None:
        raise ValueError("cannot apply a patch to a request without an object")
    try:
        ops = orjson.loads(patch)
        result = jsonpatch.JsonPatch(ops).apply(obj, in_place=False)
    except (
        orjson.JSONDecodeError,
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
    ) as e:
        raise ValueError(str(e) or type(e).__name__) from e
    if not isinstance(result, dict):
        raise ValueError("patched object is not a JSON object")
    return result


def _transport_detail(url: str, error: BaseException) -> str:
    """The Go-style text for a failed POST (``Post "<url>": ...``)."""
    if isinstance(error, TimeoutError):
        return f'Post "{url}": context deadline exceeded'
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f'Post "{url}": tls: failed to verify certificate: {error.certificate_error}'
    if isinstance(error, aiohttp.ClientConnectorError):
        address = f"{error.host}:{error.port}"
        os_error = error.os_error
        if os_error.errno == errno.ECONNREFUSED:
            return f'Post "{url}": dial tcp {address}: connect: connection refused'
        if isinstance(os_error, ssl.SSLError):
            return f'Post "{url}": remote error: tls: {os_error.reason or os_error}'
        return f'Post "{url}": dial tcp {address}: {os_error.strerror or os_error}'
    return f'Post "{url}": {error}'


# --------------------------------------------------------------------------- client certificate

CLIENT_COMMON_NAME = "kube-apiserver-admission"


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The client certificate the dispatcher presents, and the CA that issued it (the file
    a webhook server trusts: the gateway's ``--webhook-client-ca``)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def ready_fields(self) -> dict[str, str]:
        """For the sandbox's ready line: ``webhookClientCA``, ``webhookClientCert``, ``...Key``."""
        return {
            "webhookClientCA": str(self.ca_file),
            "webhookClientCert": str(self.cert_file),
            "webhookClientKey": str(self.key_file),
        }


def issue_client_cert(*, ca: CertPair, common_name: str) -> CertPair:
    """A client-auth-only certificate (ECDSA P-256, one year) for ``common_name``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("CA key must be an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def write_client_identity(directory: str | Path) -> ClientIdentity:
    """A fresh CA and a client certificate it issued, written into ``directory``
    (``webhook-client-ca.crt``, ``webhook-client.crt``, ``webhook-client.key``; the CA's key
    is not kept)."""
    ca = generate_ca(common_name="kruise-mesh-sandbox-webhook-client-ca")
    client = issue_client_cert(ca=ca, common_name=CLIENT_COMMON_NAME)
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    ca_file = base / "webhook-client-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    cert_file, key_file = write_pair(base, "webhook-client", client)
    return ClientIdentity(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


# --------------------------------------------------------------------------- dispatcher


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    server_hostname: str | None


class WebhookDispatcher:
    """Calls the admission webhooks configured in an ``ObjectSource``; see the module doc."""

    def __init__(
        self,
        source: ObjectSource,
        *,
        service_resolver: ServiceResolver | None = None,
        client_identity: ClientIdentity | None = None,
    ) -> None:
        self._source = source
        self._resolve_service = service_resolver
        self._client = client_identity
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._parsed: dict[tuple[bool, str], tuple[str, list[Webhook]]] = {}
        self._warned_conditions: set[tuple[str, str]] = set()

    async def close(self) -> None:
        """Close every HTTP session (one per CA bundle)."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def __aenter__(self) -> WebhookDispatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- Dispatcher

    async def mutate(self, attrs: AdmissionAttributes) -> dict[str, Any] | None:
        """Run matching mutating webhooks in order; return the final object."""
        obj = attrs.object
        if is_exempt(attrs):
            return obj
        namespaces: dict[str, Mapping[str, str]] = {}
        for hook in self._webhooks(mutating=True):
            if not self._should_call(hook, attrs, obj=obj, namespaces=namespaces):
                continue
            response = await self._call_or_skip(hook, attrs, obj=obj)
            if response is None:
                continue
            patch = response.get("patch")
            if patch:
                try:
                    obj = apply_patch(obj, patch)
                except ValueError as e:
                    raise internal_error(str(e)) from e
        return obj

    async def validate(self, attrs: AdmissionAttributes) -> None:
        """Run matching validating webhooks concurrently; raise ``ApiError`` on denial."""
        if is_exempt(attrs):
            return
        namespaces: dict[str, Mapping[str, str]] = {}
        hooks = [
            hook
            for hook in self._webhooks(mutating=False)
            if self._should_call(hook, attrs, obj=attrs.object, namespaces=namespaces)
        ]
        if not hooks:
            return
        results = await asyncio.gather(
            *(self._call_or_skip(hook, attrs, obj=attrs.object) for hook in hooks),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # ---------------------------------------------------------------- configuration

    def _webhooks(self, *, mutating: bool) -> list[Webhook]:
        resource = (
            "mutatingwebhookconfigurations" if mutating else "validatingwebhookconfigurations"
        )
        configs = self._source.list_objects(group=ADMISSION_GROUP, resource=resource)
        configs = sorted(configs, key=lambda c: str((c.get("metadata") or {}).get("name", "")))
        hooks: list[Webhook] = []
        seen: set[tuple[bool, str]] = set()
        for config in configs:
            meta = config.get("metadata") or {}
            key = (mutating, str(meta.get("name", "")))
            seen.add(key)
            version = str(meta.get("resourceVersion") or "")
            cached = self._parsed.get(key)
            if version and cached is not None and cached[0] == f"{meta.get('uid')}/{version}":
                hooks.extend(cached[1])
                continue
            parsed = parse_configuration(config, mutating=mutating)
            if version:
                self._parsed[key] = (f"{meta.get('uid')}/{version}", parsed)
            hooks.extend(parsed)
        for stale in [k for k in self._parsed if k[0] == mutating and k not in seen]:
            del self._parsed[stale]
        return hooks

    def _namespace_labels(
        self, attrs: AdmissionAttributes, namespaces: dict[str, Mapping[str, str]]
    ) -> Mapping[str, str]:
        if _is_namespace_request(attrs) and not attrs.subresource:
            labels = _labels_of(attrs.object if attrs.object is not None else attrs.old_object)
            return {**(labels or {}), NAMESPACE_NAME_LABEL: attrs.name}
        name = attrs.namespace
        cached = namespaces.get(name)
        if cached is not None:
            return cached
        ns = self._source.get_object(group="", resource="namespaces", namespace=None, name=name)
        labels = dict(_labels_of(ns) or {})
        labels.setdefault(NAMESPACE_NAME_LABEL, name)
        namespaces[name] = labels
        return labels

    def _should_call(
        self,
        hook: Webhook,
        attrs: AdmissionAttributes,
        *,
        obj: dict[str, Any] | None,
        namespaces: dict[str, Mapping[str, str]],
    ) -> bool:
        if not any(rule_matches(rule, attrs) for rule in hook.rules):
            return False
        if hook.error:
            raise internal_error(f'webhook "{hook.name}": {hook.error}')
        cluster_scoped = attrs.namespace == "" and not _is_namespace_request(attrs)
        if hook.namespace_selector is not None and not cluster_scoped:
            labels = self._namespace_labels(attrs, namespaces)
            if not selector_matches(hook.namespace_selector, labels):
                return False
        if not object_selector_matches(hook, obj, attrs.old_object):
            return False
        if hook.has_match_conditions:
            key = (hook.configuration, hook.name)
            if key not in self._warned_conditions:
                self._warned_conditions.add(key)
                log.warning(
                    "webhook %r uses matchConditions, which the sandbox does not evaluate; "
                    "treating it as not matching",
                    hook.name,
                )
            return False
        return True

    # ---------------------------------------------------------------- calling

    async def _call_or_skip(
        self, hook: Webhook, attrs: AdmissionAttributes, *, obj: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Call one webhook: its verified response, None if skipped, or raise ApiError."""
        if attrs.dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
            raise bad_request(f'admission webhook "{hook.name}" does not support dry run')
        try:
            response = await self._call(hook, attrs, obj=obj)
        except CallFailed as e:
            message = f'failed calling webhook "{hook.name}": {e}'
            if hook.failure_policy == "Ignore":
                log.warning("%s (failurePolicy Ignore: skipped)", message)
                return None
            raise internal_error(message) from e
        _add_warnings(response.get("warnings") or ())
        if response.get("allowed") is not True:
            raise denial_error(hook.name, response.get("status"))
        return response

    async def _call(
        self, hook: Webhook, attrs: AdmissionAttributes, *, obj: dict[str, Any] | None
    ) -> dict[str, Any]:
        if "v1" not in hook.review_versions:
            raise CallFailed(
                "failed to call webhook: webhook does not accept known AdmissionReview "
                f"versions: accepted {list(hook.review_versions)}, supported [v1]"
            )
        target = self._target(hook)
        uid = str(uuid.uuid4())
        body = orjson.dumps(build_review(attrs, uid=uid, obj=obj))
        try:
            session = self._session(hook.ca_bundle)
        except (ValueError, ssl.SSLError) as e:
            raise CallFailed(f"failed to call webhook: invalid caBundle: {e}") from e
        try:
            async with asyncio.timeout(hook.timeout_seconds):
                async with session.post(
                    target.url,
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json, */*",
                        "User-Agent": "kube-apiserver-admission",
                    },
                    server_hostname=target.server_hostname,
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise CallFailed(f"failed to call webhook: {_transport_detail(target.url, e)}") from e
        if status != 200:
            raise CallFailed(
                f"failed to call webhook: the server responded with the status code {status} "
                "but did not return more information"
            )
        return read_response(payload, uid=uid, mutating=hook.mutating)

    def _target(self, hook: Webhook) -> _Target:
        query = f"?timeout={hook.timeout_seconds}s"
        if hook.url:
            return _Target(url=hook.url + query, server_hostname=None)
        if hook.service is None:
            raise CallFailed("failed to call webhook: clientConfig has neither url nor service")
        namespace, name, port, path = hook.service
        host = f"{name}.{namespace}.svc"
        base = self._resolve_service(namespace, name, port) if self._resolve_service else None
        if base is None:
            url = f"https://{host}:{port}{path}{query}"
            raise CallFailed(
                f'failed to call webhook: Post "{url}": dial tcp: lookup {host}: no such host'
            )
        return _Target(url=base.rstrip("/") + (path or "/") + query, server_hostname=host)

    def _session(self, ca_bundle: str) -> aiohttp.ClientSession:
        session = self._sessions.get(ca_bundle)
        if session is None or session.closed:
            if ca_bundle:
                pem = base64.b64decode(ca_bundle, validate=True).decode("ascii")
                context = ssl.create_default_context(cadata=pem)
            else:
                context = ssl.create_default_context()
            if self._client is not None:
                context.load_cert_chain(self._client.cert_file, self._client.key_file)
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
            self._sessions[ca_bundle] = session
        return session
