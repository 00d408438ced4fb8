"""Seeded random inventories for comparing edrfleet with ansible-core on shapes nobody wrote.

Groups form a random DAG (children only among later groups, so no loops); hosts, vars with
colliding names, ansible_group_priority, host:port, group_vars/host_vars files and directories
are sprinkled in. The same seed always writes the same files.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

GROUP_NAMES = ["Alpha", "alpha", "beta", "B", "gamma_1", "Zed", "delta", "db", "web", "x"]
KEYS = ["k1", "k2", "k3", "k4"]


def write_random_inventory(root: Path, seed: int) -> tuple[Path, list[str]]:
    """Write inventory.yml (+ vars dirs) under ``root``; return its path and three patterns:
    an intersection, a union with an exclusion, and slices (order-dependent, see the test)."""
    rnd = random.Random(seed)
    groups = rnd.sample(GROUP_NAMES, rnd.randint(4, len(GROUP_NAMES)))
    hosts = [f"h{i}" for i in range(rnd.randint(4, 12))]
    children = {g: [c for c in groups[i + 1:] if rnd.random() < 0.25]
                for i, g in enumerate(groups)}
    members = {g: rnd.sample(hosts, rnd.randint(0, min(4, len(hosts)))) for g in groups}
    ports = {h: 2200 + i for i, h in enumerate(hosts) if rnd.random() < 0.2}
    defined: set[str] = set()
    seen_host: set[str] = set()

    def host_entry(h: str, g: str) -> tuple[str, Any]:
        key = f"{h}:{ports[h]}" if h in ports and rnd.random() < 0.7 else h
        hv = {k: f"{h}@{g}" for k in rnd.sample(KEYS, rnd.randint(0, 2))}
        seen_host.add(h)
        return key, hv or None

    def emit(g: str) -> dict[str, Any] | None:
        if g in defined:
            return None
        defined.add(g)
        body: dict[str, Any] = {}
        gv = {k: f"{g}-inv" for k in rnd.sample(KEYS, rnd.randint(0, 3))}
        if rnd.random() < 0.3:
            gv["ansible_group_priority"] = rnd.randint(-2, 5)
        if gv:
            body["vars"] = gv
        if members[g]:
            body["hosts"] = dict(host_entry(h, g) for h in members[g])
        if children[g]:
            body["children"] = {c: emit(c) for c in children[g]}
        return body or None

    top: dict[str, Any] = {}
    all_body: dict[str, Any] = {"vars": {k: "all-inv" for k in rnd.sample(KEYS, 2)}}
    all_children = {}
    for g in groups:
        if g in defined:
            continue
        if rnd.random() < 0.5:
            all_children[g] = emit(g)
        else:
            top[g] = emit(g)
    loose = [h for h in hosts if h not in seen_host]
    if loose:
        all_body["hosts"] = {h: None for h in loose}
    all_body["children"] = all_children
    top["all"] = all_body
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(top, sort_keys=False))
    _vars_files(root, rnd, ["all", *groups], "group_vars")
    _vars_files(root, rnd, hosts, "host_vars")
    patterns = [
        f"{rnd.choice(groups)}:&{rnd.choice(groups)}",
        f"{rnd.choice(groups)},{rnd.choice(hosts)}:!{rnd.choice(groups)}",
        f"{rnd.choice(groups)}[0:1]:{rnd.choice(groups)}[-1]",
    ]
    return path, patterns


def _vars_files(root: Path, rnd: random.Random, names: list[str], sub: str) -> None:
    base = root / sub
    base.mkdir(exist_ok=True)
    for name in names:
        roll = rnd.random()
        data = {k: f"{name}-{sub}" for k in rnd.sample(KEYS, rnd.randint(1, 3))}
        if roll < 0.3:
            (base / f"{name}{rnd.choice(['', '.yml', '.yaml'])}").write_text(yaml.safe_dump(data))
        elif roll < 0.45:
            (base / name).mkdir()
            (base / name / "b.yml").write_text(yaml.safe_dump(data))
            (base / name / "a.yml").write_text(yaml.safe_dump({KEYS[0]: f"{name}-dir-a"}))


# INI values as written and what makes them interesting (literal or not, quoting, spaces).
INI_VALUES = ["1", "'1'", "0.5", "True", "yes", "none", "None", "[1, 'a']", "{'k': [1, 2]}",
              "'a b'", '"x=y"', "a#b", "''", "-3", "0x1F", "(1, 2)"]


def _host_word(value: str) -> str:
    """A value on a host line, which is split like a shell line: quote what has spaces."""
    return f'"{value}"' if " " in value else value


def write_random_ini(root: Path, seed: int) -> Path:
    """Write ``hosts`` (an INI inventory, no extension) and vars dirs under ``root``: sections in
    random order, children named before their section, ``:vars`` before the group's own
    section, ports, ranges and literal values of every kind."""
    rnd = random.Random(seed)
    groups = rnd.sample(GROUP_NAMES, rnd.randint(3, len(GROUP_NAMES)))
    hosts = [f"h{i}" for i in range(rnd.randint(3, 10))]
    sections: list[list[str]] = []
    loose = [h for h in hosts if rnd.random() < 0.2]
    for i, g in enumerate(groups):
        lines = []
        for h in rnd.sample(hosts, rnd.randint(0, min(4, len(hosts)))):
            port = f":{2200 + hosts.index(h)}" if rnd.random() < 0.2 else ""
            words = [f"{k}={_host_word(rnd.choice(INI_VALUES))}"
                     for k in rnd.sample(KEYS, rnd.randint(0, 2))]
            lines.append(" ".join([h + port, *words]))
        if rnd.random() < 0.15:
            lines.append(f"r{i}-[1:3]")
        sections.append([f"[{g}]", *lines])
        kids = [c for c in groups[i + 1:] if rnd.random() < 0.25]
        if kids:
            sections.append([f"[{g}:children]", *kids])
        gv = [f"{k} = {rnd.choice(INI_VALUES)}" for k in rnd.sample(KEYS, rnd.randint(0, 3))]
        if rnd.random() < 0.3:
            gv.append(f"ansible_group_priority={rnd.randint(-2, 5)}")
        if gv:
            sections.append([f"[{g}:vars]", *gv])
    rnd.shuffle(sections)
    all_vars = ["[all:vars]", *(f"{k}={rnd.choice(INI_VALUES)}" for k in rnd.sample(KEYS, 2))]
    text = "\n".join(["# random INI inventory", *loose, *(ln for s in sections for ln in s),
                      *all_vars]) + "\n"
    path = root / "hosts"
    path.write_text(text)
    _vars_files(root, rnd, ["all", *groups], "group_vars")
    _vars_files(root, rnd, hosts, "host_vars")
    return path
