"""Relative path arguments joined to the working directory (issue 13), on this kernel.

A ``path:`` matcher names absolute paths; the kernel finds the cwd's class (the nearest of the
cwd, its parent and grandparent that is an anchor directory of the policy, by inode) and the
automaton reads a relative argument as if the class's directory came before it.  Canary rules
written the documented way (``path:`` on a tree under /tmp) take the real programs (shred, rm,
chmod, truncate) aimed at canary files; the default policy's rules take harmless stand-ins
(copies of /bin/true).  Each attack has a twin that runs: the same command from another tree.
One agent (default policy + canary rules, scoped to a test cgroup) serves the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.render import render_policy
from edrfleet.policy import compile_policy, load_policy_text, simulate
from tests.kernel.conftest import Cgroup, RunningAgent, fresh_cgroup, resident_agent
from tests.kernel.test_spellings import wait_event

TAG = uuid.uuid4().hex[:8]
CANARY = Path(f"/tmp/edrfleet-canary-cwd-{TAG}")
TWIN = Path(f"/tmp/edrfleet-twin-cwd-{TAG}")
CANARY_RULES = [
    {"id": "canary-file-destroyed", "description": "the canary's files, any spelling",
     "severity": "high", "action": "block", "tags": ["T1485"],
     "match": {"executable": ["rm", "shred", "truncate", "chmod"],
               "args": [{"path": [str(CANARY / "shadow"), str(CANARY / "log/app.log")]}]}},
    {"id": "canary-tree-recursive", "description": "recursive rm/chmod of the canary tree",
     "severity": "high", "action": "block", "tags": ["T1485"],
     "match": {"executable": ["rm", "chmod"],
               "args": [{"option": {"short": ["r", "R"], "long": "recursive"}},
                        {"path": [str(CANARY), str(CANARY / "ssh")]}]}},
]
STANDINS = ("rm", "shred", "truncate", "chmod")


def make_tree(root: Path) -> None:
    for d in ("ssh", "log", "deep/a/b"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("shadow", "ssh/sshd_config", "ssh/shadow", "log/app.log"):
        (root / f).write_text("still here\n")
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def intact(root: Path) -> bool:
    return all((root / f).exists() and (root / f).read_text() == "still here\n"
               for f in ("shadow", "ssh/sshd_config", "log/app.log"))


@pytest.fixture(scope="module")
def cgroup() -> Iterator[Cgroup]:
    with fresh_cgroup() as cg:
        yield cg


@pytest.fixture(scope="module")
def policy_text(cgroup: Cgroup) -> str:
    make_tree(CANARY)  # the anchors are resolved to inodes when the agent fills its maps
    make_tree(TWIN)
    return render_policy({"edrfleet_scope_cgroups": [cgroup.name],
                          "edrfleet_extra_rules": CANARY_RULES})


@pytest.fixture(scope="module")
def agent(policy_text: str, tmp_path_factory) -> Iterator[RunningAgent]:
    try:
        with resident_agent(policy_text, tmp_path_factory.mktemp("cwdjoin-spool"),
                            timeout=300) as running:
            yield running
    finally:
        shutil.rmtree(CANARY, ignore_errors=True)
        shutil.rmtree(TWIN, ignore_errors=True)


@pytest.fixture(scope="module")
def bundle(policy_text: str) -> dict:
    return compile_policy(load_policy_text(policy_text, "policy.yaml"))


@pytest.fixture(scope="module")
def bindir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cwd-standin-bin")
    for name in STANDINS:
        shutil.copy2("/bin/true", d / name)
    return d


@pytest.fixture
def trees() -> Iterator[None]:
    make_tree(CANARY)
    make_tree(TWIN)
    yield
    make_tree(CANARY)
    make_tree(TWIN)


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


# (directory under the tree, argv): real programs; on CANARY the kernel kills them, on TWIN
# the same command runs (it changes the twin's files, remade after each test)
REAL = [
    ("ssh", ["shred", "-u", "../shadow"]),  # cd /etc/ssh && shred ../shadow
    ("ssh", ["rm", "-f", "../shadow"]),
    ("ssh", ["chmod", "777", "../shadow"]),
    ("", ["chmod", "-R", "000", "."]),  # chmod -R 000 . from /etc
    ("", ["rm", "-rf", "ssh"]),  # rm -rf ssh from /etc
    ("log", ["truncate", "-s0", "app.log"]),  # truncate -s0 auth.log from /var/log
    ("deep/a", ["shred", "-u", "../../shadow"]),  # two levels below the anchor
    ("ssh", ["rm", "-f", "./../shadow"]),
    ("ssh", ["shred", "-u", "/proc/self/cwd/../shadow"]),  # fails closed
    ("ssh", ["shred", "-u", "/proc/thread-self/cwd/../shadow"]),
]


@pytest.mark.parametrize(("where", "argv"), REAL, ids=[f"{w or '.'}: {' '.join(a)}"
                                                       for w, a in REAL])
def test_relative_argument_naming_the_canary_is_blocked(agent, cgroup, trees, where,
                                                        argv) -> None:
    res = cgroup.run(argv, cwd=CANARY / where)
    assert killed(res), (where, argv, res)
    assert intact(CANARY)


@pytest.mark.parametrize(("where", "argv"), [r for r in REAL if "/proc/" not in r[1][-1]],
                         ids=[f"{w or '.'}: {' '.join(a)}" for w, a in REAL
                              if "/proc/" not in a[-1]])
def test_same_command_in_the_twin_tree_runs(agent, cgroup, trees, where, argv) -> None:
    res = cgroup.run(argv, cwd=TWIN / where)
    assert res.returncode == 0, (where, argv, res)
    assert intact(CANARY)


# the shape on the real system paths, by the default policy: stand-ins only
DEFAULT = [
    ("/etc/ssh", ["shred", "-u", "../shadow"], "system-file-destroyed"),
    ("/etc/ssh", ["rm", "-f", "../passwd"], "system-file-destroyed"),
    ("/etc", ["shred", "-u", "./shadow/"], "system-file-destroyed"),
    ("/usr/share", ["rm", "-rf", "../bin"], "rm-recursive-root"),
    ("/usr/share/doc", ["rm", "-rf", "../../lib"], "rm-recursive-root"),
    ("/etc", ["chmod", "-R", "000", "."], "chmod-chown-recursive-root-path"),
    ("/", ["chmod", "--recursive", "000", "usr/./lib/"], "chmod-chown-recursive-root-path"),
    # the auth and audit logs by path: relative from a sibling directory, detours, /proc
    ("/var/log/apt", ["truncate", "-s0", "../auth.log"], "log-file-destroyed-path"),
    ("/var/log", ["shred", "-u", "journal/../wtmp"], "log-file-destroyed-path"),
    ("/tmp", ["rm", "-f", "/var/log/./auth.log"], "log-file-destroyed-path"),
    ("/tmp", ["truncate", "-s0", "/proc/self/root/var/log/btmp"], "log-file-destroyed-path"),
]
# the same commands from a directory of the twin tree (its own shadow, its own ".")
DEFAULT_TWINS = [("ssh", ["shred", "-u", "../shadow"]), ("ssh", ["rm", "-f", "../passwd"]),
                 ("", ["shred", "-u", "./shadow/"]), ("deep", ["rm", "-f", "../bin"]),
                 ("deep/a", ["shred", "-u", "../../passwd"]), ("", ["chmod", "-R", "000", "."]),
                 ("ssh", ["truncate", "-s0", "../log/app.log"]),
                 ("log", ["shred", "-u", "../ssh/../log/./app.log"])]
# (rm -r of ../bin or ../../lib is blocked in any directory by its shape:
# rm-recursive-dotdot-sysdir; the attacks above are checked to be blocked by the joined rule)


@pytest.mark.parametrize(("cwd", "argv", "rule"), DEFAULT,
                         ids=[f"{c}: {' '.join(a)}" for c, a, _ in DEFAULT])
def test_default_policy_joins_relative_system_paths(agent, cgroup, bindir, cwd, argv,
                                                    rule) -> None:
    if not Path(cwd).is_dir():
        pytest.skip(f"{cwd} is not a directory here")
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd=cwd)
    assert killed(res), (cwd, argv, res)
    want = json.dumps(argv[1:])
    assert wait_event(agent, lambda e: e.get("rule.id") == rule
                      and json.dumps(e.get("process.args", [])[1:]) == want), (rule, argv)


@pytest.mark.parametrize(("where", "argv"), DEFAULT_TWINS,
                         ids=[f"{w or '.'}: {' '.join(a)}" for w, a in DEFAULT_TWINS])
def test_default_policy_twin_elsewhere_runs(agent, cgroup, bindir, where, argv) -> None:
    res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd=TWIN / where)
    assert res.returncode == 0, (where, argv, res)


def _cases() -> list[tuple[str, list[str]]]:
    dirs = ["", "ssh", "log", "deep", "deep/a", "deep/a/b"]
    args = ["shadow", "../shadow", "../../shadow", "../../../shadow", "./shadow", "ssh", "ssh/",
            ".", "..", "../ssh", "log/app.log", "../log/app.log", "app.log", "x/../shadow",
            "ssh/../shadow", "/proc/self/cwd/shadow", "", "-", "sshd_config", "../.."]
    out = []
    for i, d in enumerate(dirs):
        for j, a in enumerate(args):
            prog = STANDINS[(i + j) % len(STANDINS)]
            flag = "-R" if (i + j) % 2 else "-f"
            out.append((d, [prog, flag, a]))
    return out


def test_kernel_agrees_with_simulate_on_generated_cwds_and_arguments(agent, cgroup, bindir,
                                                                     bundle) -> None:
    """kernel == `policy test` (simulate) on (cwd, argv) in the canary and twin trees."""
    disagree = []
    blocked = 0
    for root in (CANARY, TWIN):
        for where, argv in _cases():
            cwd = root / where
            res = cgroup.run([str(bindir / argv[0]), *argv[1:]], cwd=cwd)
            want = simulate(bundle, argv, filename=str(bindir / argv[0]), cwd=str(cwd))
            blocked += killed(res)
            if killed(res) != (want.action == "block"):
                disagree.append((str(cwd), argv, res.returncode, want.action, want.rule))
    assert not disagree, disagree
    assert blocked >= 20  # the set holds attacks, not only benign commands
