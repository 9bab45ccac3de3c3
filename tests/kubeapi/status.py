"""`Status` errors as the API server words them (k8s.io/apimachinery/pkg/api/errors), one builder each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp.web

from tests.kubeapi.resources import ResourceType

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.retry_after = code, message, details or {}, retry_after
        self.reason = reason or _REASONS.get(code, "Unknown")

    def body(self) -> dict[str, Any]:
        details = dict(self.details)
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if details:  # `details` is omitempty in the Go type
            body["details"] = details
        body["code"] = self.code
        return body

    def response(self) -> aiohttp.web.Response:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return aiohttp.web.json_response(self.body(), status=self.code, headers=headers)


@dataclass(frozen=True)
class FieldError:
    """One `field.Error` of a validation: `<field>: Invalid value: <value>: <detail>`."""

    field: str
    value: Any
    detail: str
    type: str = "FieldValueInvalid"

    @property
    def body(self) -> str:
        """What Go's `field.Error.ErrorBody()` prints: strings quoted, numbers bare."""
        if self.type == "FieldValueRequired":
            return f"Required value: {self.detail}"
        return f"Invalid value: {json.dumps(self.value)}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def _details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"group": rt.group, "kind": rt.plural}
    if name:
        details = {"name": name, **details}
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.group_resource} "{name}" not found', details=_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, f'{rt.group_resource} "{name}" already exists', reason="AlreadyExists", details=_details(rt, name)
    )


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details=_details(rt, name),
    )


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 as `errors.NewInvalid` builds it: `Kind.group "name" is invalid: <one error or [a, b]>`."""
    qualified = f"{kind}.{group}" if group else kind
    summary = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    causes = [{"reason": e.type, "message": e.body, "field": e.field} for e in errors]
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {summary}',
        details={"name": name, "group": group, "kind": kind, "causes": causes},
    )


def undecodable(rt: ResourceType, error: str) -> ApiError:
    """400 for a body the server's JSON decoder refuses (e.g. a time that is not RFC 3339)."""
    return ApiError(400, f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {error}')


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized")


def forbidden(group: str, resource: str, name: str | None, reason: str) -> ApiError:
    """403 as `errors.NewForbidden` builds it for the authorizer's refusal `reason`."""
    if not resource:  # a non-resource URL
        return ApiError(403, f"forbidden: {reason}", details={})
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    details: dict[str, Any] = {"group": group, "kind": resource}
    if name:
        details = {"name": name, **details}
    return ApiError(403, f"{subject} is forbidden: {reason}", details=details)
