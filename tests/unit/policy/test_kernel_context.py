"""Multi-call applets, match.ancestor and match.inet_stdio: schema, bundle, simulator ==
reference, and what the packer writes for the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet.agent.maps import pack_bundle
from edrfleet.kernel_abi import load_header
from edrfleet.policy import PolicyError, compile_policy, reference_decide, simulate
from edrfleet.policy.limits import EDR_ANCESTOR_DEPTH, EDR_APPLET_SCAN
from tests.unit.helpers.policy_helpers import PATH, fake_stat, policy_of_rules, rule_yaml

H = load_header(Path(__file__).resolve().parents[3] / "bpf")
FS = fake_stat({
    "/usr/bin/rm": (8, 100), "/bin/rm": (8, 100),
    "/usr/bin/busybox": (8, 300), "/bin/busybox": (8, 300), "/opt/bb/box": (8, 300),
    "/usr/bin/toybox": (8, 310), "/usr/bin/bash": (8, 500), "/bin/bash": (8, 500),
    "/usr/sbin/cron": (8, 800), "/usr/bin/timeout": (8, 810), "/bin/sh": (8, 700),
})
MULTI = "version: 1\nmulticall: [busybox, /usr/bin/toybox]\n"
POLICY = policy_of_rules(
    rule_yaml("rm-rf", "block", "{executable: [rm], args: [{any: [-rf]}]}"),
    rule_yaml("rm-by-path", "block", "{executable: [/usr/bin/rm], args: [{any: [-x]}]}"),
    rule_yaml("rm-under-cron", "block", "{executable: [rm], ancestor: {executable: [cron]}}"),
    rule_yaml("bash-on-socket", "block", "{executable: [bash], inet_stdio: [self, parent]}"),
    rule_yaml("bash-parent-socket", "log", "{executable: [bash], inet_stdio: [parent]}"),
    header=MULTI)
BUNDLE = compile_policy(POLICY)


def both(argv, **kw):
    kw = {"stat": FS, "path": PATH, **kw}
    got = simulate(BUNDLE, argv, **kw)
    assert got == reference_decide(POLICY, argv, **kw)
    return got.rules


CASES = [
    ("busybox called by its own name runs argv[1]",
     ["busybox", "rm", "-rf", "x"], {}, ("rm-rf",)),
    ("busybox /path/applet: the basename", ["busybox", "/bin/rm", "-rf", "x"], {}, ("rm-rf",)),
    ("exec -a rm busybox: argv[0]", ["rm", "-rf", "x"], {"filename": "/usr/bin/busybox"},
     ("rm-rf",)),
    ("busybox under another name (same inode) is still multi-call",
     ["box", "rm", "-rf", "x"], {"filename": "/opt/bb/box"}, ("rm-rf",)),
    ("toybox marked by path", ["toybox", "rm", "-rf", "x"], {"filename": "/usr/bin/toybox"},
     ("rm-rf",)),
    ("an applet matches name keys only, never a path key",
     ["busybox", "rm", "-x"], {}, ()),
    ("another applet", ["busybox", "ls", "-rf"], {}, ()),
    ("the applet must be argv[1], not a later argument", ["busybox", "-rf", "rm"], {}, ()),
    ("not multi-call: argv[0] is only a name", ["rm", "-rf"], {"filename": "/usr/bin/bash"},
     ()),
    ("ancestor: the parent itself", ["rm", "a"], {"parent": "/usr/sbin/cron"},
     ("rm-under-cron",)),
    ("ancestor through timeout and sh",
     ["rm", "a"], {"parent": "/usr/bin/timeout", "ancestors": ["/bin/sh", "/usr/sbin/cron"]},
     ("rm-under-cron",)),
    ("ancestor beyond the depth is not seen",
     ["rm", "a"], {"parent": "/bin/sh",
                   "ancestors": ["/bin/sh"] * (EDR_ANCESTOR_DEPTH - 1) + ["/usr/sbin/cron"]},
     ()),
    ("ancestor at the depth is seen",
     ["rm", "a"], {"parent": "/bin/sh",
                   "ancestors": ["/bin/sh"] * (EDR_ANCESTOR_DEPTH - 2) + ["/usr/sbin/cron"]},
     ("rm-under-cron",)),
    ("socket on its own streams", ["bash"], {"inet_stdio": ["self"]}, ("bash-on-socket",)),
    ("socket on the parent's streams", ["bash"], {"inet_stdio": ["parent"]},
     ("bash-on-socket", "bash-parent-socket")),
    ("no socket", ["bash"], {}, ()),
]


@pytest.mark.parametrize(("argv", "kw", "rules"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_applets_ancestors_and_sockets_decide_like_the_reference(argv, kw, rules):
    assert both(argv, **kw) == rules


def test_an_applet_name_the_kernel_cannot_read_is_not_looked_up():
    long_first = "/" + "d" * EDR_APPLET_SCAN + "/rm"  # argv[0] ends past the applet scan
    assert both([long_first, "-rf"], filename="/usr/bin/busybox") == ()
    assert both(["busybox", long_first, "-rf"]) == ()


def test_the_bundle_carries_the_new_fields_only_when_used():
    assert BUNDLE["executables"]["multicall"] == {"names": ["busybox"],
                                                  "paths": ["/usr/bin/toybox"]}
    by_id = {r["id"]: r for r in BUNDLE["rules"]}
    assert by_id["rm-under-cron"]["ancestors"] == ["cron"]
    assert by_id["bash-on-socket"]["inet_stdio"] == ["self", "parent"]
    plain = compile_policy(policy_of_rules(rule_yaml("a")))
    assert "multicall" not in plain["executables"]
    assert all("ancestors" not in r and "inet_stdio" not in r for r in plain["rules"])


def test_the_packer_writes_bits_flags_and_multicall_keys():
    files = {p: (8, i) for p, i in (("/usr/bin/busybox", 300), ("/bin/busybox", 300),
                                     ("/usr/bin/toybox", 310), ("/usr/sbin/cron", 800))}
    p = pack_bundle(BUNDLE, H, identity=files.get, cgroup_id=lambda _: 1)
    assert p.mcnames == [b"busybox"]
    assert sorted(p.mcinodes) == [(8, 300), (8, 310)]
    rules = {r["id"]: p.rules[i] for i, r in enumerate(BUNDLE["rules"])}
    assert rules["rm-under-cron"].ancestors == 1 << p.context.parent_bit["cron"]
    assert rules["bash-on-socket"].inet_stdio == H["EDR_STDIO_SELF"] | H["EDR_STDIO_PARENT"]
    assert rules["bash-parent-socket"].inet_stdio == H["EDR_STDIO_PARENT"]
    flags = {f for g in p.groups for f in g.flags}
    assert H["EDR_CTX_ANCESTORS"] in flags and H["EDR_CTX_STDIO"] in flags
    needs = p.needs(H)
    assert needs["EDR_WITH_ANCESTORS"] == needs["EDR_WITH_STDIO"] == needs["EDR_WITH_CTX"] == 1
    assert needs["EDR_WITH_MULTICALL"] == 1
    plain = pack_bundle(compile_policy(policy_of_rules(rule_yaml("a"))), H,
                        identity=files.get, cgroup_id=lambda _: 1).needs(H)
    assert not any(plain[k] for k in ("EDR_WITH_ANCESTORS", "EDR_WITH_STDIO",
                                      "EDR_WITH_MULTICALL", "EDR_WITH_CTX"))


@pytest.mark.parametrize(("match", "message"), [
    ("{executable: [bash], inet_stdio: [child]}",
     "bad inet_stdio entry 'child' in rule 'r' (fix: write one or both of: self, parent)"),
    ("{executable: [bash], inet_stdio: []}", "'inet_stdio' in rule 'r' is an empty list"),
    ("{executable: [rm], ancestor: [cron]}",
     "'ancestor' in rule 'r' must be a mapping, not a list (fix: write "
     "'ancestor: {executable: [bash, /usr/sbin/sshd]}')"),
    ("{executable: [rm], ancestor: {executable: [usr/bin/cron]}}",
     "executable 'usr/bin/cron' in rule 'r' is neither a basename nor an absolute path"),
])
def test_bad_matchers_are_refused_with_a_fix(match, message):
    with pytest.raises(PolicyError) as exc:
        policy_of_rules(rule_yaml("r", "block", match))
    assert message in exc.value.format()


def test_a_bad_multicall_entry_is_refused():
    with pytest.raises(PolicyError, match="executable 'bin/busybox' at the top level is "
                                          "neither a basename nor an absolute path"):
        policy_of_rules(rule_yaml("a"), header="version: 1\nmulticall: [bin/busybox]\n")
