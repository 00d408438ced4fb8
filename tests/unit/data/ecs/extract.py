"""Regenerate ``ecs_fields.json`` from the ``@elastic/ecs`` package on the npm registry.

    python3 tests/unit/data/ecs/extract.py            # the pinned VERSION
    python3 tests/unit/data/ecs/extract.py --version 9.5.0

Needs ``npm`` and ``node``.  The package ships ECS's flat field definitions (``ecs_flat.yml``
as a JavaScript object, ``EcsFlat`` in ``build/commonjs/ecs_flat.js``); this keeps, for every
field of the field sets an edrfleet event uses (``FIELD_SETS``), what a validator needs: its
type, whether it may be an array (``normalize: [array]``), its allowed values, and for
``event.category`` the event types ECS expects with each category.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

VERSION = "9.4.0"
PACKAGE = "@elastic/ecs"
FIELD_SETS = ("@timestamp", "agent", "ecs", "event", "group", "host", "process", "rule", "tags",
              "threat", "user")
OUT = Path(__file__).with_name("ecs_fields.json")


def load_flat(version: str) -> dict:
    """EcsFlat of the package at ``version``, as JSON (node evaluates the module)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", f"{PACKAGE}@{version}"], cwd=tmp, check=True,
                       capture_output=True)
        (tarball,) = Path(tmp).glob("*.tgz")
        subprocess.run(["tar", "xzf", tarball.name], cwd=tmp, check=True)
        module = Path(tmp) / "package" / "build" / "commonjs" / "ecs_flat.js"
        dump = subprocess.run(
            ["node", "-e", "process.stdout.write(JSON.stringify(require(process.argv[1]).EcsFlat))",
             str(module)], check=True, capture_output=True, text=True)
    return json.loads(dump.stdout)


def extract(flat: dict, version: str) -> dict:
    fields = {}
    for name, d in sorted(flat.items()):
        if name.split(".")[0] not in FIELD_SETS:
            continue
        out = {"type": d["type"], "array": "array" in (d.get("normalize") or [])}
        if d.get("allowed_values"):
            out["allowed"] = sorted(v["name"] for v in d["allowed_values"])
            expected = {v["name"]: v["expected_event_types"] for v in d["allowed_values"]
                        if "expected_event_types" in v}
            if expected:
                out["expected_event_types"] = expected
        fields[name] = out
    return {"package": f"{PACKAGE}@{version}", "ecs_version": version,
            "source": "build/commonjs/ecs_flat.js (EcsFlat)", "field_sets": list(FIELD_SETS),
            "fields": fields}


def dumps(data: dict) -> str:
    """JSON with one line per field, so a regeneration's diff shows each changed field."""
    head = {k: v for k, v in data.items() if k != "fields"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "fields": {']
    rows = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
            for k, v in data["fields"].items()]
    return "\n".join(lines) + "\n" + ",\n".join(rows) + "\n}}\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--version", default=VERSION)
    args = p.parse_args()
    data = extract(load_flat(args.version), args.version)
    OUT.write_text(dumps(data))
    print(f"{OUT}: {len(data['fields'])} fields of ECS {args.version}")


if __name__ == "__main__":
    main()
