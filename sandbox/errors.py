"""Kubernetes API errors as the sandbox raises and serves them.

Every failure a handler can produce is an ``ApiError`` carrying the exact
``meta/v1 Status`` body a real kube-apiserver would send (see
``shared/fixtures/real-apiserver/errors``)::

    ApiError                      any Status with code >= 400
    ├── status(...)               build one from code/reason/message/details
    ├── not_found(...)            404 NotFound
    ├── already_exists(...)       409 AlreadyExists
    ├── conflict(...)             409 Conflict
    ├── invalid(...)              422 Invalid
    ├── bad_request(...)          400 BadRequest
    ├── gone(...)                 410 Expired
    └── too_many_requests(...)    429 TooManyRequests
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer of the API server: ``code`` and the Status ``body``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.code = int(body.get("code", 500))
        super().__init__(f"{self.code} {body.get('reason', '')}: {body.get('message', '')}")

    @classmethod
    def status(
        cls,
        *,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> ApiError:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
        }
        if details is not None:
            body["details"] = details
        body["code"] = code
        return cls(body)


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError.status(
        code=404,
        reason="NotFound",
        message=f'{_qualified(resource, group)} "{name}" not found',
        details=_details(name, group, resource),
    )


def already_exists(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError.status(
        code=409,
        reason="AlreadyExists",
        message=f'{_qualified(resource, group)} "{name}" already exists',
        details=_details(name, group, resource),
    )


def conflict(*, resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError.status(
        code=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        details=_details(name, group, resource),
    )


def invalid(*, kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    text = ", ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes)
    details = _details(name, group, kind)
    details["causes"] = causes
    return ApiError.status(
        code=422,
        reason="Invalid",
        message=f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}',
        details=details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError.status(code=400, reason="BadRequest", message=message)


def gone(message: str) -> ApiError:
    return ApiError.status(code=410, reason="Expired", message=message)


def too_many_requests(message: str, *, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError.status(code=429, reason="TooManyRequests", message=message, details=details)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError.status(code=415, reason="UnsupportedMediaType", message=message)
