"""simulate (bundle tables) and reference_decide (policy + re): decisions and identities."""

from __future__ import annotations

import pytest

from edrfleet.policy import (
    Decision,
    PolicyError,
    compile_policy,
    dump_bundle,
    load_bundle,
    reference_decide,
    simulate,
)
from tests.unit.helpers.policy_helpers import FS, PATH, policy_of_rules, rule_yaml

RULES = policy_of_rules(
    rule_yaml("rm-log", "log", "{executable: [rm]}", "low"),
    rule_yaml("rm-root", "block", "{executable: [rm], args: [{any: [-rf, -fr]}, {glob: '/*'}]}"),
    rule_yaml("rm-any-root", "block", "{executable: [rm], args: [{glob: '/*'}]}"),
    rule_yaml("rm-tmp-ok", "allow", "{executable: [rm], args: [{regex: '^/tmp/'}]}"),
    rule_yaml("dd-disk", "block", "{executable: [/usr/bin/dd], args: [{glob: 'of=/dev/*'}]}"),
    rule_yaml("root-shell", "log", "{cmdline: '^(ba)?sh -i', uid: [0]}"),
    rule_yaml("user-wget", "block", "{executable: [wget], uid: [1000, 1001]}"),
)
BUNDLE = compile_policy(RULES)


def decide_both(argv, **kw):
    kw.setdefault("stat", FS)
    kw.setdefault("path", PATH)
    got = simulate(BUNDLE, argv, **kw)
    assert got == reference_decide(RULES, argv, **kw)
    return got


CASES = [
    ("nothing matched allows with no rule", ["ls", "-l"], {},
     Decision("allow", None, ())),
    ("a log rule alone logs", ["rm", "x"], {},
     Decision("log", "rm-log", ("rm-log",))),
    ("block wins over log, reported with the first block rule", ["rm", "-rf", "/etc"], {},
     Decision("block", "rm-root", ("rm-log", "rm-root", "rm-any-root"))),
    ("every condition of a rule must hold", ["rm", "-r", "/etc"], {},
     Decision("block", "rm-any-root", ("rm-log", "rm-any-root"))),
    ("allow wins over block", ["rm", "-rf", "/tmp/x"], {},
     Decision("allow", "rm-tmp-ok", ("rm-log", "rm-root", "rm-any-root", "rm-tmp-ok"))),
    ("argv[0] is never an argument", ["/tmp/rm"], {"filename": "/usr/bin/rm"},
     Decision("log", "rm-log", ("rm-log",))),
    ("a path rule matches the same inode under another path", ["/bin/dd", "of=/dev/sda"], {},
     Decision("block", "dd-disk", ("dd-disk",))),
    ("a path rule does not match another file of the same name",
     ["/opt/tools/dd", "of=/dev/sda"], {}, Decision("allow", None, ())),
    ("a name rule matches a hard link through the search path",
     ["/usr/bin/unlink-rm", "-rf", "/"], {},
     Decision("block", "rm-root", ("rm-log", "rm-root", "rm-any-root"))),
    ("a name without a slash is looked up on PATH", ["dd", "of=/dev/sda"], {},
     Decision("block", "dd-disk", ("dd-disk",))),
    ("an explicit identity wins over stat", ["/opt/tools/wipe", "of=/dev/sdb"],
     {"identity": (8, 200)}, Decision("block", "dd-disk", ("dd-disk",))),
    ("a name matches by basename even when the file is unknown", ["/nowhere/rm", "x"], {},
     Decision("log", "rm-log", ("rm-log",))),
    ("a uid list restricts a rule", ["wget", "http://x"], {"uid": 0},
     Decision("allow", None, ())),
    ("a listed uid matches", ["wget", "http://x"], {"uid": 1001},
     Decision("block", "user-wget", ("user-wget",))),
    ("cmdline rules apply to every executable", ["sh", "-i"], {"uid": 0},
     Decision("log", "root-shell", ("root-shell",))),
    ("cmdline anchors at the start of argv[0]", ["/bin/sh", "-i"], {"uid": 0},
     Decision("allow", None, ())),
]


@pytest.mark.parametrize(("argv", "kw", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_simulate_and_reference_decide_the_same(argv, kw, expected):
    assert decide_both(argv, **kw) == expected


def test_a_bundle_read_back_from_json_decides_the_same():
    again = load_bundle(dump_bundle(BUNDLE))
    for _, argv, kw, expected in CASES:
        assert simulate(again, argv, stat=FS, path=PATH, **kw) == expected


def test_monitor_mode_does_not_change_the_decision():
    monitor = compile_policy(policy_of_rules(rule_yaml("r", match="{executable: [rm]}"),
                                             header="version: 1\nmode: monitor\n"))
    assert monitor["mode"] == "monitor"
    assert simulate(monitor, ["rm"], stat=FS, path=PATH).action == "block"


def test_str_arguments_are_utf8_with_surrogateescape():
    pol = policy_of_rules(rule_yaml("caf", match="{args: [{any: ['café']}]}"))
    bundle = compile_policy(pol)
    assert simulate(bundle, ["x", "café"], stat=FS).rule == "caf"
    assert simulate(bundle, [b"x", "café".encode()], stat=FS).rule == "caf"
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert simulate(bundle, ["x", raw], stat=FS).rule is None


def test_an_argument_with_nul_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        simulate(BUNDLE, ["rm", "a\0b"], stat=FS)
    with pytest.raises(ValueError, match="NUL"):
        reference_decide(RULES, ["rm", "a\0b"], stat=FS)


def test_an_empty_argv_needs_a_filename():
    with pytest.raises(ValueError, match="filename"):
        simulate(BUNDLE, [], stat=FS)
    assert simulate(BUNDLE, [], filename="/usr/bin/rm", stat=FS).rule == "rm-log"


def test_the_decision_serializes_for_the_cli():
    assert Decision("block", "a", ("a", "b")).to_json() == {
        "action": "block", "rule": "a", "rules": ["a", "b"]}


FILELESS = policy_of_rules(
    rule_yaml("memfd-any", "log", "{fileless: true}", "high"),
    rule_yaml("memfd-rm", "block", "{executable: [rm], fileless: true, args: [{any: [-rf]}]}"),
    rule_yaml("rm-log", "log", "{executable: [rm]}", "low"),
)


@pytest.mark.parametrize(("argv", "fileless", "expected"), [
    (["anything"], False, Decision("allow", None, ())),
    (["anything"], True, Decision("log", "memfd-any", ("memfd-any",))),
    (["rm", "-rf", "x"], False, Decision("log", "rm-log", ("rm-log",))),
    (["rm", "-rf", "x"], True, Decision("block", "memfd-rm", ("memfd-any", "memfd-rm", "rm-log"))),
])
def test_fileless_rules_hold_only_for_fileless_execs(argv, fileless, expected):
    bundle = compile_policy(FILELESS)
    kw = {"stat": FS, "path": PATH, "fileless": fileless}
    got = simulate(bundle, argv, **kw)
    assert got == reference_decide(FILELESS, argv, **kw)
    assert got == expected


def test_fileless_rules_without_an_executable_get_their_own_group_list():
    bundle = compile_policy(FILELESS)
    exes = bundle["executables"]
    assert exes["wildcard"] == [] and len(exes["fileless"]) == 1
    assert bundle["rules"][0]["fileless"] is True and "fileless" not in bundle["rules"][2]
    assert "fileless" not in compile_policy(RULES)["executables"]  # unchanged without it


def test_too_many_fileless_groups_are_refused_with_a_fix(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "EDR_GROUPS_PER_KEY", 8)  # fewer rules to compile
    match = "{{fileless: true, args: [{{any: [a{}]}}]}}"
    many = policy_of_rules(*(rule_yaml(f"f{i}", "log", match.format(i)) for i in range(600)))
    with pytest.raises(PolicyError, match="fileless rules without 'executable' need 10 groups"):
        compile_policy(many)


def test_fileless_and_wildcard_groups_together_must_fit_one_exec(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 8)  # fewer rules to compile
    # two-byte literals: too short to prefilter, so these groups run for every exec
    abc = "abcdefghijklmnopqrstuvwxyz0123456789"
    wild = [rule_yaml(f"w{i}", "log", f"{{args: [{{any: [{abc[i // 36]}{abc[i % 36]}]}}]}}")
            for i in range(300)]
    mem = [rule_yaml(f"f{i}", "log", f"{{fileless: true, args: [{{any: [f{i}]}}]}}")
           for i in range(300)]
    with pytest.raises(PolicyError, match="an exec of a fileless executable would run 10 rule "
                                          "groups"):
        compile_policy(policy_of_rules(*wild, *mem))
