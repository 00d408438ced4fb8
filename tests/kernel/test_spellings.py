"""Issue 13's evasion classes on this kernel: option spellings, path spellings and rule
content, against the default policy (rendered from templates/policy.yaml.j2, scoped to a test
cgroup) and rules written the documented way (``option:`` / ``path:``) on canaries.

Default-policy rules about system paths are exercised with harmless stand-ins (copies of
/bin/true named rm, tar, sed ...): the kernel judges the argv, the program does nothing.  The
real ``rm`` is only ever aimed at a canary directory under /tmp.  Every attack has a benign
twin that must run.  One agent serves the whole module (a BCC compile costs seconds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.fleet.deploy.render import render_policy
from tests.kernel.conftest import Cgroup, RunningAgent, fresh_cgroup, resident_agent

CANARY = Path(f"/tmp/edrfleet-canary-spell-{uuid.uuid4().hex[:8]}")
CANARY_RULES = [
    {"id": "canary-rm-recursive", "description": "recursive rm of the canary, any spelling",
     "severity": "high", "action": "block", "tags": ["T1485"],
     "match": {"executable": ["rm"],
               "args": [{"option": {"short": ["r", "R"], "long": "recursive"}},
                        {"path": {"is": [str(CANARY)], "below": True}}]}},
    {"id": "canary-rm-relative", "description": "recursive rm of the canary named from /tmp",
     "severity": "high", "action": "block", "tags": ["T1485"],
     "match": {"executable": ["rm"], "cwd_is": [str(CANARY.parent)],
               "args": [{"option": {"short": ["r", "R"], "long": "recursive"}},
                        {"regex": rf"^(\./+)*{CANARY.name}/*$"}]}},
]
STANDINS = ("rm", "tar", "sed", "ncat", "pkill", "systemctl", "dd", "cp", "find", "mv", "shred",
            "python3", "sh", "truncate")

# (argv, rule id) — run through a stand-in named argv[0]; the kernel must kill it.
ATTACKS = [
    # option spellings
    (["rm", "--recur", "--force", "/"], "rm-recursive-root"),
    (["rm", "/etc", "-vfR"], "rm-recursive-root"),
    (["ncat", "--ex", "/bin/sh", "127.0.0.1", "9"], "netcat-exec"),
    (["tar", "-cf", "--", "--remove-files", "/boot"], "tar-remove-files-system"),
    (["sed", "-ni.bak", "/x/!p", "/var/log/auth.log"], "log-file-edited-in-place"),
    # path spellings
    (["rm", "-rf", "/tmp/../etc"], "rm-recursive-root"),
    (["rm", "-rf", "//usr/./bin/"], "rm-recursive-root"),
    (["rm", "-rf", "/proc/self/root/boot"], "rm-recursive-root"),
    (["rm", "-rf", "bin", "boot", "etc", "usr", "var"], "rm-recursive-root-expanded"),
    (["rm", "-rf", "../../etc"], "rm-recursive-root"),  # joined to the cwd: /etc
    (["shred", "-u", "/etc/./shadow"], "system-file-destroyed"),
    # `..` deeper than the automaton places detours: fails closed (docs/policy.md)
    (["rm", "-rf", "/tmp/a/b/c/../../../etc"], "rm-recursive-root"),
    (["rm", "-rf", "/tmp/a/b/c/d/e/../../../../../../usr"], "rm-recursive-root"),
    (["rm", "-rf", "../../../../../../boot"], "rm-recursive-root"),
    (["shred", "-u", "/var/a/b/../../../etc/shadow"], "system-file-destroyed"),
    # rule content
    (["find", "/", "-delete", "-print"], "find-delete-root"),
    (["find", "-files0-from", "/tmp/list", "-delete"], "find-files0-from-delete"),
    (["dd", "if=/dev/full", "of=/dev/sda"], "dd-wipe-block-device"),
    (["dd", "if=/dev/zero", "of=/dev/block/8:0"], "dd-wipe-block-device"),
    (["sh", "-c", "dd of=/dev/sda < /dev/zero"], "shell-write-block-device"),
    (["sh", "-c", ": > /var/log/wt''mp"], "shell-truncate-log-quoted"),
    (["pkill", "f[a]lco"], "kill-security-agent-pattern"),
    (["systemctl", "stop", "falco*"], "kill-security-agent-pattern"),  # the first matching rule
    (["systemctl", "disable", "f?lco.service"], "systemctl-stop-security-service-glob"),
    (["mv", "/etc/passwd", "/tmp/p"], "system-file-moved"),
    (["python3", "-c", "import shutil; shutil.rmtree('/')"], "script-tree-removal-root"),
    (["cp", "/dev/zero", "/dev/sda"], "cp-zero-block-device"),
]
# Benign twins: the same programs and shapes, which must run (exit 0: the stand-in is true).
TWINS = [
    ["rm", "--", "-rf"], ["rm", "--force", "/etc"], ["rm", "-rf", "/tmp/../tmp/build"],
    ["ncat", "--ssl", "127.0.0.1", "9"], ["ncat", "--", "--exec"],
    ["tar", "-cf", "x.tar", "--remove-files", "build"], ["sed", "-n", "p", "/var/log/auth.log"],
    ["rm", "-rf", "bin", "obj"], ["rm", "-rf", "../build"], ["shred", "-u", "/tmp/x"],
    ["rm", "-rf", "/tmp/a/b/../../tmp/build"], ["rm", "-rf", "../../build"],
    ["shred", "-u", "/tmp/a/../b/..c/x"],
    ["find", "/tmp", "-name", "x", "-delete"], ["dd", "if=/dev/zero", "of=/tmp/img"],
    ["sh", "-c", ": > /tmp/wt''mp"], ["pkill", "-HUP", "rsyslogd"],
    ["systemctl", "stop", "nginx*"], ["mv", "/etc/hosts.new", "/etc/hosts"],
    ["python3", "-c", "import shutil; shutil.rmtree('/tmp/b')"], ["cp", "/dev/null", "/tmp/e"],
]


@pytest.fixture(scope="module")
def cgroup() -> Iterator[Cgroup]:
    with fresh_cgroup() as cg:
        yield cg


@pytest.fixture(scope="module")
def agent(cgroup: Cgroup, tmp_path_factory) -> Iterator[RunningAgent]:
    text = render_policy({"edrfleet_scope_cgroups": [cgroup.name],
                          "edrfleet_extra_rules": CANARY_RULES})
    with resident_agent(text, tmp_path_factory.mktemp("spell-spool"), timeout=240) as running:
        yield running


@pytest.fixture(scope="module")
def bindir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("standin-bin")
    for name in STANDINS:
        shutil.copy2("/bin/true", d / name)
    return d


@pytest.fixture
def canary() -> Iterator[Path]:
    CANARY.mkdir()
    (CANARY / "precious").write_text("still here\n")
    yield CANARY
    shutil.rmtree(CANARY, ignore_errors=True)


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def wait_event(agent: RunningAgent, pred, timeout: float = 10.0) -> list[dict]:
    """Events matching ``pred``; a line the agent is still writing is skipped, not an error
    (RunningAgent.events parses the whole file and raced with the writer under load)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        f = agent.spool / "events.jsonl"
        for line in (f.read_text().splitlines() if f.exists() else []):
            try:
                event = ecs.flatten(json.loads(line))
            except json.JSONDecodeError:
                continue
            if pred(event):
                found.append(event)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize(("argv", "rule"), ATTACKS, ids=[" ".join(a) for a, _ in ATTACKS])
def test_evasion_is_blocked_in_the_kernel(agent, cgroup, bindir, argv, rule) -> None:
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd="/tmp")
    assert killed(res), (argv, res)
    want = json.dumps(argv[1:])
    evs = wait_event(agent, lambda e: e.get("rule.id") == rule
                     and json.dumps(e.get("process.args", [])[1:]) == want)
    assert evs, (rule, argv)


@pytest.mark.parametrize("argv", TWINS, ids=[" ".join(a) for a in TWINS])
def test_benign_twin_runs(agent, cgroup, bindir, argv) -> None:
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd="/tmp")
    assert res.returncode == 0, (argv, res)


@pytest.mark.parametrize("spelling", [
    ["-rf", "{c}"], ["--recur", "--force", "{c}/"], ["-f", "{c}/./precious/..", "-R"],
    ["-rf", "/tmp/../{c}"], ["-rf", "/proc/self/root{c}"], ["-rf", "//{c}//precious"],
    ["-rf", "/tmp/a/b/c/../../..{c}"], ["-rf", "{c}/precious/x/y/../../../../{n}"],
])
def test_real_rm_on_the_canary_is_blocked_in_every_spelling(agent, cgroup, canary,
                                                            spelling) -> None:
    argv = ["rm", *(a.replace("{c}", str(canary)).replace("{n}", canary.name)
                    for a in spelling)]
    res = cgroup.run(argv)
    assert killed(res), (argv, res)
    assert (canary / "precious").read_text() == "still here\n"


def test_real_rm_after_double_dash_is_an_operand_and_runs(agent, cgroup, canary) -> None:
    """``rm -- -r`` removes a file named -r in the canary: an operand, not the option."""
    (canary / "-r").write_text("x")
    res = cgroup.run(["rm", "--", "-r"], cwd=canary)
    assert res.returncode == 0, res
    assert not (canary / "-r").exists() and (canary / "precious").exists()


# Relative names from their directory: joined to the cwd by the path rules (which come first
# in the policy; the cwd_is rules match too) or by name: (cwd, argv, rule)
RELATIVE = [
    ("/", ["rm", "-rf", "etc"], "rm-recursive-root"),
    ("/", ["rm", "-r", "./usr/"], "rm-recursive-root"),
    ("/", ["rm", "--recur", "boot//"], "rm-recursive-root"),
    ("/etc", ["shred", "-u", "shadow"], "system-file-destroyed"),
    ("/etc", ["rm", "-f", "./sudoers"], "system-file-destroyed"),
    ("/var/log", ["truncate", "-s0", "auth.log"], "log-file-destroyed-path"),
]


@pytest.mark.parametrize(("cwd", "argv", "rule"), RELATIVE,
                         ids=[f"{c}: {' '.join(a)}" for c, a, _ in RELATIVE])
def test_relative_name_from_its_directory_is_blocked(agent, cgroup, bindir, cwd, argv,
                                                     rule) -> None:
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd=cwd)
    assert killed(res), (cwd, argv, res)
    want = json.dumps(argv[1:])
    assert wait_event(agent, lambda e: e.get("rule.id") == rule
                      and json.dumps(e.get("process.args", [])[1:]) == want), (rule, argv)


@pytest.mark.parametrize("argv", [a for c, a, _ in RELATIVE if c != "/var/log"],
                         ids=[" ".join(a) for c, a, _ in RELATIVE if c != "/var/log"])
def test_same_relative_name_elsewhere_runs(agent, cgroup, bindir, tmp_path, argv) -> None:
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd=tmp_path)
    assert res.returncode == 0, (argv, res)


def test_real_rm_of_the_canary_by_relative_name_is_blocked(agent, cgroup, canary) -> None:
    for name in (canary.name, f"./{canary.name}/", f"{canary.name}//"):
        res = cgroup.run(["rm", "-rf", name], cwd=canary.parent)
        assert killed(res), (name, res)
        assert (canary / "precious").read_text() == "still here\n"


def test_real_rm_of_a_twin_by_the_same_name_elsewhere_runs(agent, cgroup, tmp_path) -> None:
    twin = tmp_path / CANARY.name
    twin.mkdir()
    (twin / "precious").write_text("a build tree\n")
    res = cgroup.run(["rm", "-rf", CANARY.name], cwd=tmp_path)
    assert res.returncode == 0, res
    assert not twin.exists()
