"""Events the agent writes are valid ECS: checked against ECS's published field definitions.

The events are made by the agent's own code path (``ecs.to_ecs`` fed with kernel records laid
out as ``bpf/edrfleet.h`` declares them) for every kind of decision; the definitions are those
of the ``@elastic/ecs`` npm package pinned in ``tests/unit/data/ecs/`` (see its README).
"""

from __future__ import annotations

import json

import pytest

from edrfleet.agent import ecs
from tests.unit.helpers.ecs_validate import definitions, problems
from tests.unit.helpers.event_record import record

RULES = [
    {"id": "rm-recursive-root", "description": "recursive delete of /", "severity": "critical",
     "tags": ["attack.t1485", "attack.impact"]},
    {"id": "log-curl", "description": "downloads", "severity": "low", "tags": []},
    {"id": "dd-disk", "description": "raw disk writes", "severity": "medium"},
    {"id": "nc-shell", "description": "reverse shell", "severity": "high",
     "tags": ["attack.t1059.004"]},
]
GENERATION = ecs.Generation(sha256="5e" * 32, rules=RULES)
RM = [b"rm", b"-rf", b"/tmp/edrfleet-canary-1"]

# name -> (record fields, executable, parent executable)
CASES = {
    "blocked by sigkill": (dict(args=RM, filename=b"/usr/bin/rm", rule=0), "/usr/bin/rm",
                           "/usr/bin/bash"),
    "blocked by the lsm hook": (dict(args=RM, filename=b"rm", rule=0, backend=2, stage=2),
                                "/usr/bin/rm", "/usr/bin/bash"),
    "would block (monitor)": (dict(args=[b"nc", b"-e", b"/bin/sh"], rule=3, action=2),
                              "/usr/bin/nc.openbsd", "/usr/bin/bash"),
    "logged": (dict(args=[b"curl", b"http://x"], rule=1, action=3), "/usr/bin/curl", ""),
    "logged, rule without tags field": (dict(args=[b"dd", b"of=/dev/sda"], rule=2, action=3),
                                        "/usr/bin/dd", "/usr/sbin/sshd"),
    "unscanned argv": (dict(args=[b"x" * 100], rule=0xFFFFFFFF, reason=3, flags=4 | 1,
                            args_total=300_000), "/usr/bin/x", ""),
    "fileless, odd bytes": (dict(args=[b"rm", b"\xff\xfe", b"caf\xc3\xa9"], exe_name=b"memfd:rm",
                                 filename=b"/dev/fd/3", flags=32, rule=0, parent_name=b""),
                            "/memfd:rm (deleted)", ""),
    "unknown uid, cwd deeper than the walk": (
        dict(args=RM, rule=0, uid=4_000_000_000, gid=4_000_000_000, cwd=b"/d/d", flags=16),
        "/usr/bin/rm", "/usr/bin/bash"),
    "a shell on a socket": (dict(args=[b"sh", b"-i"], rule=3, flags=128 | 256), "/usr/bin/dash",
                            "/usr/bin/python3.11"),
    "no argv": (dict(args=[], rule=0), "/usr/bin/rm", "/usr/bin/bash"),
    "generation unknown": (dict(args=RM, rule=0, gen=9), "/usr/bin/rm", "/usr/bin/bash"),
}


def make(name: str) -> dict:
    fields, exe, parent = CASES[name]
    generation = None if name == "generation unknown" else GENERATION
    ev = record(**fields)
    out = ecs.to_ecs(ev, host="web1", generation=generation, clock=ecs.Clock(1.7e9),
                     boot_id="0123456789abcdef", executable=exe, parent_executable=parent)
    # as the spool writes it and every reader reads it
    return json.loads(json.dumps(out, ensure_ascii=False))


@pytest.mark.parametrize("name", CASES)
def test_agent_events_are_valid_ecs(name):
    assert problems(make(name)) == []


def test_the_definitions_are_the_pinned_release_of_the_agent_ecs_version():
    assert definitions()["ecs_version"] == ecs.ECS_VERSION
    assert definitions()["package"] == f"@elastic/ecs@{ecs.ECS_VERSION}"


def test_events_are_nested_objects_with_every_field_a_siem_keys_on():
    e = make("blocked by sigkill")
    assert not [k for k in e if "." in k]
    flat = ecs.flatten(e)
    for name in ("@timestamp", "ecs.version", "event.id", "event.kind", "event.category",
                 "event.type", "event.outcome", "event.severity", "event.action", "host.name",
                 "agent.type", "agent.version", "process.pid", "process.executable",
                 "process.name", "process.command_line", "process.args", "process.args_count",
                 "process.working_directory", "process.parent.pid",
                 "process.parent.executable", "process.parent.name", "user.id", "user.name",
                 "group.id", "rule.id", "rule.name", "rule.description", "threat.technique.id",
                 "edrfleet.severity", "edrfleet.args_truncated", "edrfleet.backend"):
        assert name in flat, name
    assert "rule.severity" not in flat and "process.args_truncated" not in flat
    assert ecs.get(e, ecs.TECHNIQUE_ID) == ["T1485"]


@pytest.mark.parametrize("name, kind, category, type_, outcome", [
    ("blocked by sigkill", "alert", ["process", "intrusion_detection"], ["start", "denied"],
     "failure"),
    ("blocked by the lsm hook", "alert", ["process", "intrusion_detection"],
     ["start", "denied"], "failure"),
    ("would block (monitor)", "alert", ["process", "intrusion_detection"],
     ["start", "allowed"], "success"),
    ("logged", "event", ["process"], ["start"], "success"),
])
def test_each_action_is_classified_as_ecs_expects(name, kind, category, type_, outcome):
    e = make(name)["event"]
    assert (e["kind"], e["category"], e["type"], e["outcome"]) == (kind, category, type_,
                                                                   outcome)


def test_severity_is_numeric_from_the_rule_word_and_the_word_is_kept():
    got = {name: (ecs.get(make(name), ecs.EVENT_SEVERITY), ecs.get(make(name), ecs.SEVERITY))
           for name in ("blocked by sigkill", "would block (monitor)", "logged",
                        "logged, rule without tags field", "unscanned argv")}
    assert got == {"blocked by sigkill": (99, "critical"), "would block (monitor)": (73, "high"),
                   "logged": (21, "low"), "logged, rule without tags field": (47, "medium"),
                   "unscanned argv": (99, "critical")}


def test_args_count_and_truncation():
    e = make("unscanned argv")
    assert ecs.get(e, ("process", "args_count")) == 1
    assert ecs.get(e, ecs.ARGS_TRUNCATED) is True and ecs.get(e, ecs.UNSCANNED) is True
    assert ecs.get(e, ecs.RULE_ID) == ecs.UNSCANNED_RULE_ID
    assert ecs.get(make("no argv"), ecs.ARGS) == []


def test_sockets_on_standard_streams_are_named_only_when_found():
    assert make("a shell on a socket")["edrfleet"]["inet_stdio"] == ["self", "parent"]
    assert "inet_stdio" not in make("logged")["edrfleet"]


def test_unknown_context_is_omitted_not_invented():
    e = make("fileless, odd bytes")
    assert e["process"]["parent"] == {"pid": 4241}
    assert e["process"]["args"] == ["rm", "\\xff\\xfe", "café"]
    assert "tags" not in make("logged") and "threat" not in make("logged")
    assert e["user"] == {"id": "0", "name": "root"}
    assert make("unknown uid, cwd deeper than the walk")["user"] == {"id": "4000000000"}


# --- the validator itself: each kind of defect is found ----------------------------------------

def broken(change) -> list[str]:
    e = make("blocked by sigkill")
    change(e)
    return problems(e)


@pytest.mark.parametrize("change, found", [
    (lambda e: e.update({"event.id": "x"}), "event.id: a flat dotted key"),
    (lambda e: e["process"].update({"made.up": "x"}), "process.made.up: a flat dotted key"),
    (lambda e: e["process"].update(title_="x"), "process.title_: not an ECS 9.4.0 field"),
    (lambda e: e["rule"].update(severity="critical"), "rule.severity: not an ECS"),
    (lambda e: e["process"].update(args_truncated=False), "process.args_truncated: not an ECS"),
    (lambda e: e["edrfleet"].update(made_up=1), "edrfleet.made_up: not a documented"),
    (lambda e: e["process"].update(pid="4242"), "process.pid: '4242' is not of type long"),
    (lambda e: e["event"].update(severity=True), "event.severity: True is not of type long"),
    (lambda e: e["user"].update(id=0), "user.id: 0 is not of type keyword"),
    (lambda e: e.update({"@timestamp": "yesterday"}), "@timestamp: 'yesterday' is not of type"),
    (lambda e: e["host"].update(name=["a", "b"]), "host.name: an array"),
    (lambda e: e["event"].update(kind="block"), "event.kind: 'block' is not one of its allowed"),
    (lambda e: e["event"].update(outcome="blocked"), "event.outcome: 'blocked' is not one"),
    (lambda e: e["event"].update(category=["process"]),
     "event.type 'denied': ECS expects it with none of the categories"),
    (lambda e: e["ecs"].update(version="8.0.0"), "ecs.version '8.0.0'"),
    (lambda e: e.pop("ecs"), "ecs.version: required field missing"),
    (lambda e: e["edrfleet"].update(fileless="no"), "edrfleet.fileless: 'no' is not of type"),
])
def test_the_validator_finds(change, found):
    got = broken(change)
    assert any(p.startswith(found) for p in got), got


def test_the_flat_layout_of_older_agents_is_not_valid_ecs():
    assert problems(ecs.flatten(make("logged"))) != []


def test_a_flood_of_logged_execs_is_valid_ecs_with_its_count_and_summary():
    from edrfleet.agent.logfold import LogFolds

    ev = record(args=[b"curl", b"http://x"], rule=1, action=3, count=40, agg_seq=72, agg_cpu=1)
    doc = ecs.to_ecs(ev, host="web1", generation=GENERATION, clock=ecs.Clock(1.7e9),
                     boot_id="0123456789abcdef", executable="/usr/bin/curl")
    folds = LogFolds(window_ns=1)
    folds.on_event(ev, doc)
    tail = type("V", (), {"seen": 80, "sent": 72, "window_ns": 0})
    (summary,) = folds.sweep([((ev.gen, 1, ev.dev, ev.ino, 3), [tail, tail])], 5,
                             "2026-12-07T00:00:00.000000Z")
    assert ecs.get(doc, ("edrfleet", "count")) == 40
    assert ecs.get(summary, ("edrfleet", "count")) == 16  # 8 on each of two CPUs
    assert problems(doc) == [] and problems(summary) == []
    assert ecs.get(make("blocked by sigkill"), ("edrfleet", "count")) == 1
