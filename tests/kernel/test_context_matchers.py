"""match.parent, match.user and match.cwd decided in the kernel, and their event fields.

Every canary is a copy of /bin/true: if blocking failed it would only exit 0.  The agent is
scoped to the test's cgroup.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.conftest import harmless_copy

NOBODY = 65534
POLICY = """\
version: 1
scope:
  cgroups: [{cgroup}]
rules:
  - id: canary-under-parent
    description: the canary only under the special shell
    severity: high
    action: block
    tags: [attack.t1059.004, attack.execution]
    match:
      executable: [edrctx-parent-canary]
      parent: {{executable: [edrctx-sh-{tag}]}}
  - id: canary-under-parent-path
    description: the canary only under that file, by any name
    severity: high
    action: block
    match:
      executable: [edrctx-path-canary]
      parent: {{executable: ["{parent_path}"]}}
  - id: canary-in-dir
    description: the canary only in a directory under the prefix
    severity: high
    action: block
    match:
      executable: [edrctx-cwd-canary]
      cwd: ["{prefix}/"]
  - id: canary-in-shm
    description: across mounts (/dev/shm is a tmpfs on a devtmpfs on /)
    severity: high
    action: block
    match:
      executable: [edrctx-shm-canary]
      cwd: [/dev/shm]
  - id: canary-by-name
    description: only the user nobody, by name
    severity: medium
    action: block
    match:
      executable: [edrctx-user-canary]
      user: [nobody]
  - id: canary-any-exe-in-dir
    description: a rule for any executable (wildcard group) with a cwd
    severity: high
    action: block
    match:
      cmdline: 'edrctx-wild-marker'
      cwd: ["{prefix}"]
  - id: canary-everything
    description: all three at once
    severity: medium
    action: block
    match:
      executable: [edrctx-all-canary]
      parent: {{executable: [edrctx-sh-{tag}]}}
      user: [root]
      cwd: ["{prefix}"]
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-readable scratch directory (nobody must be able to run what is in it)."""
    d = Path(f"/tmp/edrctx-{uuid.uuid4().hex[:8]}")
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ctx(start_agent, cgroup, shared):
    tag = uuid.uuid4().hex[:6]
    bindir = shared / "bin"
    bindir.mkdir(mode=0o755)
    for name in ("parent", "path", "cwd", "shm", "user", "all"):
        dst = bindir / f"edrctx-{name}-canary"
        harmless_copy(dst)
        dst.chmod(0o755)
    sh = bindir / f"edrctx-sh-{tag}"
    harmless_copy(sh, "/bin/dash")
    other_sh = shared / "path-parent"
    harmless_copy(other_sh, "/bin/dash")
    prefix = shared / "inside"
    (prefix / "sub").mkdir(parents=True)
    text = POLICY.format(cgroup=cgroup.name, tag=tag, parent_path=other_sh, prefix=prefix)
    agent = start_agent(text)
    return agent, bindir, sh, other_sh, prefix


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def under(cgroup, shell: Path | str, canary: Path, linger: str = "",
          **kw) -> subprocess.CompletedProcess:
    """Run the canary as a child of ``shell`` (dash forks for a command followed by more)."""
    return cgroup.run([str(shell), "-c", f"{canary}; echo rc=$?{linger}"], text=True, **kw)


def under_until_seen(cgroup, shell: Path, canary: Path, agent, rule_id: str,
                     tmp: Path) -> tuple[str, list[dict]]:
    """Run the canary as a child of ``shell``, which stays (blocked on a FIFO) until the
    agent has written the rule's event: the agent reads the parent's path from /proc, and a
    parent gone by then leaves the field empty - a loaded machine must not make that so."""
    fifo = tmp / f"go-{uuid.uuid4().hex[:6]}"
    os.mkfifo(fifo)
    proc = subprocess.Popen([str(shell), "-c", f"{canary}; echo rc=$?; read _ < {fifo}"],
                            preexec_fn=cgroup.enter, stdout=subprocess.PIPE, text=True)
    try:
        evs = agent.wait_events(lambda e: e["rule.id"] == rule_id, timeout=30)
    finally:
        while proc.poll() is None:  # let the shell go (it may not be at its read yet)
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else ""
    return out, evs


def test_a_canary_is_killed_only_under_the_named_parent(ctx, cgroup, tmp_path):
    agent, bindir, sh, _, _ = ctx
    canary = bindir / "edrctx-parent-canary"
    out, evs = under_until_seen(cgroup, sh, canary, agent, "canary-under-parent", tmp_path)
    assert "rc=137" in out
    assert "rc=0" in under(cgroup, "/bin/sh", canary).stdout
    assert cgroup.run([str(canary)]).returncode == 0  # parent: python
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-under-parent", timeout=5)
    assert ev["process.parent.executable"] == str(sh)
    assert ev["process.parent.name"] == sh.name
    assert ev["threat.technique.id"] == ["T1059.004"]
    assert ev["tags"] == ["attack.t1059.004", "attack.execution"]


def test_a_parent_named_by_path_is_matched_by_inode_under_any_name(ctx, cgroup, shared):
    agent, bindir, _, other_sh, _ = ctx
    canary = bindir / "edrctx-path-canary"
    link = shared / "innocent-name"
    os.link(other_sh, link)
    assert "rc=137" in under(cgroup, other_sh, canary).stdout
    assert "rc=137" in under(cgroup, link, canary).stdout
    lookalike = shared / "path-parent-copy"
    shutil.copy2(other_sh, lookalike)
    assert "rc=0" in under(cgroup, lookalike, canary).stdout


def test_a_canary_is_killed_only_in_a_directory_under_the_prefix(ctx, cgroup, shared):
    agent, bindir, _, _, prefix = ctx
    canary = str(bindir / "edrctx-cwd-canary")
    assert killed(cgroup.run([canary], cwd=prefix))
    assert killed(cgroup.run([canary], cwd=prefix / "sub"))
    lookalike = shared / "inside-not"
    lookalike.mkdir()
    for cwd in (shared, lookalike, Path("/")):
        assert cgroup.run([canary], cwd=cwd).returncode == 0, cwd
    evs = agent.wait_events(lambda e: e["rule.id"] == "canary-in-dir", count=2, timeout=20)
    assert sorted(e["process.working_directory"] for e in evs) == [str(prefix),
                                                                   str(prefix / "sub")]


def test_the_cwd_walk_crosses_mounts_and_names_the_path(ctx, cgroup):
    agent, bindir, _, _, _ = ctx
    canary = str(bindir / "edrctx-shm-canary")
    d = Path(f"/dev/shm/edrctx-{uuid.uuid4().hex[:6]}")
    (d / "a" / "b").mkdir(parents=True)
    try:
        assert killed(cgroup.run([canary], cwd=d / "a" / "b"))
        assert cgroup.run([canary], cwd="/dev").returncode == 0
    finally:
        shutil.rmtree(d)
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-in-shm", timeout=20)
    assert ev["process.working_directory"] == str(d / "a" / "b")


def test_a_cwd_deeper_than_the_walk_fails_closed(ctx, cgroup):
    agent, bindir, _, _, prefix = ctx
    deep = prefix.joinpath(*["d"] * 40)
    deep.mkdir(parents=True)
    assert killed(cgroup.run([str(bindir / "edrctx-cwd-canary")], cwd=deep))
    evs = agent.wait_events(lambda e: e["process.working_directory"].startswith("..."), timeout=20)
    assert evs and evs[0]["process.working_directory"].endswith("/d/d/d")


def test_a_user_named_in_the_policy_is_resolved_on_the_host(ctx, cgroup):
    agent, bindir, _, _, _ = ctx
    canary = str(bindir / "edrctx-user-canary")

    def as_nobody():
        cgroup.enter()
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    assert cgroup.run([canary]).returncode == 0
    res = subprocess.run([canary], preexec_fn=as_nobody, cwd="/", timeout=30)
    assert res.returncode == -9
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-by-name", timeout=20)
    assert (ev["user.id"], ev["user.name"]) == (str(NOBODY), "nobody")


def test_parent_user_and_cwd_together(ctx, cgroup):
    agent, bindir, sh, _, prefix = ctx
    canary = bindir / "edrctx-all-canary"
    assert "rc=137" in under(cgroup, sh, canary, cwd=prefix / "sub").stdout
    assert "rc=0" in under(cgroup, sh, canary, cwd="/").stdout
    assert "rc=0" in under(cgroup, "/bin/sh", canary, cwd=prefix).stdout


def test_a_rule_for_any_executable_decides_the_cwd_too(ctx, cgroup):
    agent, _, _, _, prefix = ctx
    argv = ["/bin/true", "edrctx-wild-marker"]
    assert killed(cgroup.run(argv, cwd=prefix / "sub"))
    assert cgroup.run(argv, cwd=prefix.parent).returncode == 0
    assert cgroup.run(["/bin/true", "other"], cwd=prefix).returncode == 0
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-any-exe-in-dir", timeout=20)
    assert ev["process.executable"] == os.path.realpath("/bin/true")


RELOAD_POLICY = """\
version: 1
scope:
  cgroups: [{cgroup}]
rules:
  - id: plain
    description: no user, parent or cwd matcher anywhere (their code is compiled out)
    severity: low
    action: block
    match:
      executable: [edrctx-nothing-{tag}]
"""
RELOAD_ADDS = """\
  - id: reload-parent
    description: a parent matcher arriving by reload
    severity: high
    action: block
    match:
      executable: [{canary}]
      parent: {{executable: [{shell}]}}
  - id: reload-user
    description: a user matcher arriving by reload
    severity: high
    action: block
    match:
      executable: [{canary}]
      user: [nobody]
"""


def test_a_reload_adding_parent_and_user_matchers_builds_a_program_that_holds_them(
        start_agent, cgroup, shared):
    tag = uuid.uuid4().hex[:6]
    canary, sh = shared / f"edrctx-reload-canary-{tag}", shared / f"edrctx-sh-{tag}"
    harmless_copy(canary)
    harmless_copy(sh, "/bin/dash")
    first = RELOAD_POLICY.format(cgroup=cgroup.name, tag=tag)
    agent = start_agent(first)
    assert "rc=0" in under(cgroup, sh, canary).stdout
    agent.policy.write_text(first + RELOAD_ADDS.format(canary=canary.name, shell=sh.name))
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while agent.status().get("generation", 1) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agent.status()["generation"] == 2, agent.status()
    assert "rc=137" in under(cgroup, sh, canary, linger="; sleep 1").stdout
    assert cgroup.run([str(canary)]).returncode == 0  # parent python, user root: both fail

    def as_nobody():
        cgroup.enter()
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    assert subprocess.run([str(canary)], preexec_fn=as_nobody, cwd="/", timeout=30).returncode == -9
