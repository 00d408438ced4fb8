"""Validation of events against ECS's published field definitions (``tests/unit/data/ecs/``).

:func:`problems` lists what makes one event not a valid ECS document of the pinned release:
a field ECS does not define (custom fields belong under ``edrfleet.*``, listed in
:data:`EDRFLEET_FIELDS`), a value of the wrong type, an array where ECS wants one value, a
value outside a field's allowed values, an ``event.type`` that ECS expects with none of the
event's categories, or a missing required field.  The event is read as written: nested
objects, so a flat dotted key (``{"event.id": …}``) is a field ECS does not define.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from edrfleet.agent import ecs

DATA = Path(__file__).resolve().parent.parent / "data" / "ecs" / "ecs_fields.json"

# the custom fields, with ECS's type names
EDRFLEET_FIELDS = {
    "edrfleet.severity": "keyword", "edrfleet.backend": "keyword",
    "edrfleet.policy_sha256": "keyword", "edrfleet.as_executed": "keyword",
    "edrfleet.stage": "keyword", "edrfleet.reason": "keyword",
    "edrfleet.args_truncated": "boolean", "edrfleet.args_bytes": "long",
    "edrfleet.unscanned": "boolean", "edrfleet.fileless": "boolean",
    "edrfleet.loader": "boolean", "edrfleet.cgroup_id": "unsigned_long",
    "edrfleet.count": "long", "edrfleet.summary": "boolean", "edrfleet.inet_stdio": "keyword",
}
EDRFLEET_ARRAYS = {"edrfleet.inet_stdio"}  # edrfleet.* fields that hold a list
REQUIRED = ("@timestamp", "ecs.version")
_TEXT = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword"}
_INTEGER = {"long", "integer", "short", "byte", "unsigned_long"}
_NUMBER = {"float", "double", "half_float", "scaled_float"}


@functools.cache
def definitions() -> dict[str, Any]:
    return json.loads(DATA.read_text())


def _fits(kind: str, value: Any) -> bool:
    if kind in _TEXT:
        return isinstance(value, str)
    if kind in _INTEGER:
        return isinstance(value, int) and not isinstance(value, bool) and (
            value >= 0 or kind != "unsigned_long")
    if kind in _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        try:
            return isinstance(value, str) and datetime.fromisoformat(value) is not None
        except ValueError:
            return False
    if kind == "ip":
        try:
            return isinstance(value, str) and ipaddress.ip_address(value) is not None
        except ValueError:
            return False
    return False  # object, nested, flattened, geo_point, ...: no edrfleet event uses them


def problems(event: dict[str, Any]) -> list[str]:
    """What keeps ``event`` from being valid ECS; [] when it is."""
    defs = definitions()
    fields = defs["fields"]
    flat = ecs.flatten(event)
    out = [f"{name}: a flat dotted key; ECS documents nest objects" for name in _dotted(event)]
    out += [f"{name}: required field missing" for name in REQUIRED if name not in flat]
    if flat.get("ecs.version", defs["ecs_version"]) != defs["ecs_version"]:
        out.append(f"ecs.version {flat['ecs.version']!r}: the definitions are ECS "
                   f"{defs['ecs_version']}")
    for name, value in flat.items():
        if name.startswith("edrfleet."):
            d = {"type": EDRFLEET_FIELDS.get(name), "array": name in EDRFLEET_ARRAYS}
            if d["type"] is None:
                out.append(f"{name}: not a documented edrfleet.* field")
                continue
        elif name in fields:
            d = fields[name]
        else:
            out.append(f"{name}: not an ECS {defs['ecs_version']} field")
            continue
        if isinstance(value, list) and not d["array"]:
            out.append(f"{name}: an array, ECS wants one {d['type']}")
        for item in value if isinstance(value, list) else [value]:
            if not _fits(d["type"], item):
                out.append(f"{name}: {item!r} is not of type {d['type']}")
            elif "allowed" in d and item not in d["allowed"]:
                out.append(f"{name}: {item!r} is not one of its allowed values")
    return out + _pairing_problems(flat, fields)


def _dotted(event: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the keys, at any depth, that hold a dot."""
    out = []
    for key, value in event.items():
        if "." in key:
            out.append(prefix + key)
        if isinstance(value, dict):
            out += _dotted(value, f"{prefix}{key}.")
    return out


def _pairing_problems(flat: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    """Each event.type value must be one ECS expects with one of the event's categories."""
    expected_by = fields["event.category"].get("expected_event_types", {})
    categories = flat.get("event.category") or []
    expected = {t for c in categories for t in expected_by.get(c, ())}
    return [f"event.type {t!r}: ECS expects it with none of the categories {categories}"
            for t in flat.get("event.type") or [] if t not in expected]
