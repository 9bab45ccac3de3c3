"""What the API server validates in the objects this project writes, worded as apimachinery words it.

`check(rt, obj, creating=...)` raises a 422 Invalid `ApiError` listing every `FieldError` (object metadata,
Lease spec, the Pod deletion cost annotation), or a 400 when the body would not even decode (a Lease time
that is not an RFC 3339 MicroTime).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from tests.kubeapi.resources import ResourceType
from tests.kubeapi.status import FieldError, invalid, undecodable

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = f"({_QUALIFIED})?"
_INT32 = re.compile(r"[+-]?[0-9]+")
_MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_ELEMENTS = (  # Go's layout elements and what each accepts
    ("2006", r"\d{4}"),
    ("-", "-"),
    ("01", r"\d{2}"),
    ("-", "-"),
    ("02", r"\d{2}"),
    ("T", "T"),
    ("15", r"\d{2}"),
    (":", ":"),
    ("04", r"\d{2}"),
    (":", ":"),
    ("05", r"\d{2}"),
    (".000000", r"[.,]\d{6}"),
    ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    """apimachinery's `RegexError`, examples and all (its odd double spaces included)."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _name_errors(value: str, limit: int, pattern: str, message: str, *examples: str) -> list[str]:
    errors = [f"must be no more than {limit} characters"] if len(value) > limit else []
    if not _matches(pattern, value):
        errors.append(_regex_error(message, pattern, *examples))
    return errors


def _qualified_error() -> str:
    return _regex_error(
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character",
        _QUALIFIED,
        "MyName",
        "my.name",
        "123-abc",
    )


def dns1123_subdomain(value: str) -> list[str]:
    message = (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character"
    )
    return _name_errors(value, 253, _SUBDOMAIN, message, "example.com")


def dns1123_label(value: str) -> list[str]:
    message = (
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character"
    )
    return _name_errors(value, 63, _LABEL, message, "my-name", "123-abc")


def dns1035_label(value: str) -> list[str]:
    message = (
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character"
    )
    return _name_errors(value, 63, _DNS1035, message, "my-name", "abc-123")


def path_segment(value: str) -> list[str]:
    """RBAC object names (e.g. `system:discovery`) need only be a URL path segment."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def qualified_name(value: str) -> list[str]:
    """A label key or annotation key: an optional DNS subdomain prefix, '/', and a name of up to 63."""
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _qualified_error()
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        errors += (
            ["prefix part must be non-empty"] if not prefix else [f"prefix part {m}" for m in dns1123_subdomain(prefix)]
        )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _matches(_QUALIFIED, name):
        errors.append("name part " + _qualified_error())
    return errors


def label_value(value: str) -> list[str]:
    errors = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _matches(_LABEL_VALUE, value):
        errors.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character",
                _LABEL_VALUE,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errors


def _name_rule(rt: ResourceType) -> Callable[[str], list[str]]:
    if rt.group == "rbac.authorization.k8s.io":
        return path_segment
    return {"namespaces": dns1123_label, "services": dns1035_label}.get(rt.plural, dns1123_subdomain)


def _metadata(rt: ResourceType, meta: dict[str, Any], *, creating: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    if creating:
        name = meta.get("name", "")
        errors += [FieldError("metadata.name", name, m) for m in _name_rule(rt)(name)]
    for key, value in (meta.get("labels") or {}).items():
        errors += [FieldError("metadata.labels", key, m) for m in qualified_name(key)]
        errors += [FieldError("metadata.labels", value, m) for m in label_value(str(value))]
    for key in meta.get("annotations") or {}:
        errors += [FieldError("metadata.annotations", key, m) for m in qualified_name(key.lower())]
    return errors


def _lease_spec(spec: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
    if isinstance(duration, int) and duration <= 0:
        errors.append(FieldError("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    if isinstance(transitions, int) and transitions < 0:
        errors.append(FieldError("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    return errors


def _micro_time_error(value: Any) -> str | None:
    """Why Go's `metav1.MicroTime` would not decode `value` (None when it would), in Go's `time.Parse` words:
    the layout wants exactly six fractional digits, so "10:00:00Z" fails at ".000000"."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"json: cannot unmarshal {type(value).__name__} into Go struct field of type string"
    rest = value
    for element, pattern in _MICRO_ELEMENTS:
        found = re.match(pattern, rest)
        if found is None:
            return f'parsing time "{value}" as "{_MICRO_LAYOUT}": cannot parse "{rest}" as "{element}"'
        rest = rest[found.end() :]
    if rest:
        return f'parsing time "{value}": extra text: "{rest}"'
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        return f'parsing time "{value}": {exc}'
    return None


def _pod_annotations(meta: dict[str, Any]) -> list[FieldError]:
    cost = (meta.get("annotations") or {}).get(DELETION_COST)
    if cost is None or (_INT32.fullmatch(cost) and -(2**31) <= int(cost) < 2**31):
        return []
    return [FieldError(f"metadata.annotations[{DELETION_COST}]", cost, "must be a 32bit integer")]


def _legacy_event(obj: dict[str, Any]) -> list[FieldError]:
    """A core/v1 Event without `eventTime` (as recorders write them): its namespace must be its object's."""
    involved = obj.get("involvedObject") or {}
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    if obj.get("eventTime") or not involved.get("namespace") or involved["namespace"] == namespace:
        return []
    return [FieldError("involvedObject.namespace", involved["namespace"], "does not match event.namespace")]


def check(rt: ResourceType, obj: dict[str, Any], *, creating: bool) -> None:
    """Raise the error a real server answers for `obj` (about to be created, or the result of an update)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    if rt.kind == "Lease":
        for key in ("acquireTime", "renewTime"):
            if (problem := _micro_time_error(spec.get(key))) is not None:
                raise undecodable(rt, problem)
    errors = _metadata(rt, meta, creating=creating)
    if rt.kind == "Lease":
        errors += _lease_spec(spec)
    if rt.kind == "Pod":
        errors += _pod_annotations(meta)
    if rt.kind == "Event" and rt.group == "":
        errors += _legacy_event(obj)
    if errors:
        raise invalid(rt.group, rt.kind, meta.get("name", ""), errors)
