"""Pure functions for what an API server does to JSON: the three patch types and label/field selectors."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Strategic merge patch merges these lists item by item on the given key (a subset of the Kubernetes
# `patchMergeKey` tags, enough for Deployments and Pods as `kubectl apply`/`kubectl edit` patch them).
# Any other list is replaced whole, as a JSON merge patch does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
}


class PatchError(ValueError):
    """The patch cannot be applied; the API server answers 422 (or 400 for a malformed body)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, `null` deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes' strategic merge: a merge patch whose known lists merge by key, honouring `$` directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name) or [] if item not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering and pruning hints only
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list):
            result[key] = [_strip_directives(item) for item in value]
        else:
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"list item {item!r} has no merge key {merge_key!r}")
        index = next((i for i, old in enumerate(result) if old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 through the `jsonpatch` package (a dependency of kmock)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        result: dict[str, Any] = jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(str(exc)) from exc
    return result


def apply_patch(content_type: str, target: dict[str, Any], body: Any) -> dict[str, Any]:
    """Dispatch on the request's Content-Type as the API server does; raises `LookupError` if unsupported."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_PATCH:
        return json_patch(target, body)
    if not isinstance(body, dict):
        raise PatchError("the patch body must be a JSON object")
    if media_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise LookupError(media_type)
    merge = merge_patch if media_type == MERGE_PATCH else strategic_merge_patch
    result: dict[str, Any] = merge(target, body)
    return result


# --- selectors -----------------------------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=,()]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def match_labels(selector: str | None, labels: dict[str, str] | None) -> bool:
    """The label selector grammar of `?labelSelector=`: `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`."""
    labels = labels or {}
    for term in _split_terms(selector or ""):
        if m := _SET_TERM.match(term):
            values = {v.strip() for v in m["values"].split(",")}
            present = m["key"] in labels and labels[m["key"]] in values
            if present != (m["op"] == "in"):
                return False
        elif m := _EQ_TERM.match(term):
            equal = labels.get(m["key"]) == m["value"]
            if equal != (m["op"] != "!="):
                return False
        elif m := _EXISTS_TERM.match(term):
            if (m["key"] in labels) == bool(m["neg"]):
                return False
        else:
            raise PatchError(f"unable to parse requirement: {term!r}")
    return True


def match_fields(selector: str | None, obj: dict[str, Any]) -> bool:
    """Field selectors (`metadata.name=x,status.phase!=Running`) over dotted paths."""
    for term in _split_terms(selector or ""):
        m = _EQ_TERM.match(term)
        if m is None:
            raise PatchError(f"unable to parse field selector: {term!r}")
        value: Any = obj
        for part in m["key"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        equal = ("" if value is None else str(value)) == m["value"]
        if equal != (m["op"] != "!="):
            return False
    return True


def selector_string(match_labels_: dict[str, str] | None) -> str:
    """A Deployment's `spec.selector.matchLabels` as the `status.selector` string of its Scale."""
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels_ or {}).items()))
