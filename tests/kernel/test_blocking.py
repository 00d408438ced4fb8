"""Real blocking on this kernel: canaries are killed before they run, look-alikes are not."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from tests.kernel.conftest import harmless_copy
from tests.unit.helpers.ecs_validate import problems

CANARY_POLICY = """\
version: 1
mode: {mode}
scope:
  cgroups: [{cgroup}]
rules:
  - id: canary-rm-recursive
    description: recursive delete of a canary directory
    severity: critical
    action: block
    match:
      executable: [rm]
      args:
        - regex: '^(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)$'
        - glob: "/tmp/edrfleet-canary-*"
  - id: canary-rm-exception
    description: this canary may go
    severity: low
    action: allow
    match:
      executable: [rm]
      args:
        - any: ["{allowed}"]
  - id: canary-binary
    description: a file that must never run, by any name
    severity: high
    action: block
    match:
      executable: ["{binary}"]
  - id: canary-cmdline
    description: a command line marker anywhere
    severity: high
    action: block
    match:
      cmdline: 'edrfleet-canary-marker-[0-9]+'
  - id: canary-nobody
    description: only uid 65534 may not run it
    severity: medium
    action: block
    match:
      executable: [edr-uid-canary]
      uid: [65534]
  - id: canary-logged
    description: reported, not blocked
    severity: low
    action: log
    match:
      executable: [edr-log-canary]
"""


@pytest.fixture
def agent(start_agent, cgroup, canary_binary, tmp_path):
    allowed = "/tmp/edrfleet-canary-allowed"
    text = CANARY_POLICY.format(
        mode="enforce", cgroup=cgroup.name, binary=canary_binary, allowed=allowed
    )
    return start_agent(text)


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def rule_events(agent, rule_id: str, count: int = 1) -> list[dict]:
    return agent.wait_events(lambda e: e["rule.id"] == rule_id, count=count)


def test_status_says_enforcing_with_the_policy_hash(agent):
    st = agent.status()
    assert st["state"] == "enforcing"
    assert st["backend"] == "sigkill"
    assert len(st["policy_sha256"]) == 64
    assert st["rules"] == 6
    assert st["start_seconds"] < 10


def test_recursive_rm_of_a_canary_is_killed_and_the_canary_survives(agent, cgroup, canary_dir):
    res = cgroup.run(["rm", "-rf", str(canary_dir)])
    assert killed(res), res
    assert (canary_dir / "precious").read_text() == "still here\n"
    (ev,) = rule_events(agent, "canary-rm-recursive")
    assert ev["event.action"] == "blocked"
    assert ev["process.args"] == ["rm", "-rf", str(canary_dir)]
    assert ev["process.command_line"] == f"rm -rf {canary_dir}"
    assert ev["process.executable"] == os.path.realpath(shutil.which("rm"))
    assert ev["edrfleet.backend"] == "sigkill"
    assert ev["host.name"] == "kernel-test"
    assert ev["edrfleet.severity"] == "critical" and ev["event.severity"] == 99
    assert ev["edrfleet.policy_sha256"] == agent.status()["policy_sha256"]
    assert (ev["event.kind"], ev["event.type"], ev["event.outcome"]) == (
        "alert", ["start", "denied"], "failure")
    assert ev["process.parent.executable"].startswith("/")  # a path, never a bare name
    assert os.path.basename(ev["process.parent.executable"]) == ev["process.parent.name"]
    # the event as the agent wrote it is a valid ECS document
    (raw,) = [e for e in agent.raw_events() if ecs.get(e, ecs.EVENT_ID) == ev["event.id"]]
    assert problems(raw) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "-r", "-f", "{d}"],
        ["rm", "-f", "--recursive", "{d}"],
        ["rm", "{d}", "-fR"],  # reordered
        ["rm", "--", "-x", "-r", "{d}"],
    ],
)
def test_every_spelling_of_recursive_rm_is_killed(agent, cgroup, canary_dir, argv):
    res = cgroup.run([a.format(d=canary_dir) for a in argv])
    assert killed(res), res
    assert canary_dir.exists()


def test_the_shell_reports_killed_and_status_137(agent, cgroup, canary_dir):
    res = cgroup.run(["sh", "-c", f"rm -rf {canary_dir}; echo after=$?"], text=True)
    assert "after=137" in res.stdout
    assert canary_dir.exists()


def test_rm_through_symlink_hardlink_relative_path_and_env(agent, cgroup, canary_dir, tmp_path):
    rm = os.path.realpath(shutil.which("rm"))
    link = tmp_path / "innocent-name"
    link.symlink_to(rm)
    hard = Path("/usr/local/bin") / "edrfleet-test-hardlink"
    try:
        os.link(rm, hard)
    except OSError:
        hard = None
    cases = [
        [str(link), "-rf", str(canary_dir)],
        ["env", "rm", "-rf", str(canary_dir)],
        ["sh", "-c", f"cd {os.path.dirname(rm)} && ./rm -rf {canary_dir}"],
        ["sh", "-c", f"PATH=/usr/bin:/bin exec rm -rf {canary_dir}"],
    ]
    if hard is not None:
        cases.append([str(hard), "-rf", str(canary_dir)])
    try:
        for argv in cases:
            res = cgroup.run(argv)
            assert killed(res) or res.returncode == 137, (argv, res)
            assert canary_dir.exists(), argv
    finally:
        if hard is not None:
            hard.unlink()


def test_a_file_named_by_path_is_blocked_by_any_name_and_by_descriptor(
    agent, cgroup, canary_binary, tmp_path
):
    link = tmp_path / "harmless"
    link.symlink_to(canary_binary)
    hard = tmp_path / "also-harmless"
    os.link(canary_binary, hard)
    for argv in ([str(canary_binary)], [str(link)], [str(hard)]):
        assert killed(cgroup.run(argv)), argv
    # execveat on a descriptor (fexecve): the real executable is the same inode
    code = (
        f"import os; fd = os.open({str(canary_binary)!r}, os.O_RDONLY); "
        "os.execve(fd, ['whatever'], {})"
    )
    res = cgroup.run(["python3", "-c", code])
    assert killed(res), res
    assert len(rule_events(agent, "canary-binary", count=4)) >= 4


def test_look_alikes_run_untouched(agent, cgroup, canary_dir, tmp_path):
    victim = tmp_path / "not-a-canary"
    victim.mkdir()
    assert cgroup.run(["rm", "-rf", str(victim)]).returncode == 0
    assert not victim.exists()
    assert cgroup.run(["rm", "-f", str(canary_dir / "nothing")]).returncode == 0
    assert cgroup.run(["echo", "rm", "-rf", str(canary_dir)]).returncode == 0
    assert cgroup.run(["true", "edrfleet-canary-marker-x"]).returncode == 0
    assert canary_dir.exists()


def test_allow_rule_wins_over_block(agent, cgroup):
    allowed = Path("/tmp/edrfleet-canary-allowed")
    allowed.mkdir(exist_ok=True)
    res = cgroup.run(["rm", "-rf", str(allowed)])
    assert res.returncode == 0, res
    assert not allowed.exists()


def test_cmdline_regex_blocks_any_executable(agent, cgroup):
    res = cgroup.run(["sh", "-c", "true edrfleet-canary-marker-42"])
    assert killed(res)
    ev = rule_events(agent, "canary-cmdline")[0]
    assert ev["process.args"][:2] == ["sh", "-c"]


def test_uid_condition(agent, cgroup):
    shared = Path(f"/tmp/edrfleet-uid-{os.getpid()}")
    shared.mkdir(mode=0o755, exist_ok=True)
    canary = shared / "edr-uid-canary"
    harmless_copy(canary)
    canary.chmod(0o755)

    def as_nobody():
        cgroup.enter()
        os.setgid(65534)
        os.setuid(65534)

    assert cgroup.run([str(canary)]).returncode == 0
    res = subprocess.run([str(canary)], preexec_fn=as_nobody, timeout=30)
    assert res.returncode == -9
    ev = rule_events(agent, "canary-nobody")[0]
    shutil.rmtree(shared)
    assert ev["user.id"] == "65534"


def test_log_rule_reports_without_blocking(agent, cgroup, standins):
    res = cgroup.run([str(standins("edr-log-canary")), "arg"])
    assert res.returncode == 0
    ev = rule_events(agent, "canary-logged")[0]
    assert ev["event.action"] == "logged"
    assert ev["process.args"] == [str(standins("edr-log-canary")), "arg"]


def test_long_argv_padding_does_not_hide_the_target(agent, cgroup, canary_dir):
    padding = ["x" * 200] * 100  # 20 KiB of harmless arguments before the real ones
    res = cgroup.run(["rm", *padding, "-rf", str(canary_dir)])
    assert killed(res)
    assert canary_dir.exists()
    ev = rule_events(agent, "canary-rm-recursive")[0]
    assert ev["edrfleet.args_truncated"] is True
    assert ev["edrfleet.args_bytes"] > 20000


def test_argv_beyond_the_scan_budget_is_blocked_for_block_rules(agent, cgroup, canary_dir):
    padding = ["y" * 1000] * 200  # 200 KB: more than the kernel scans
    res = cgroup.run(["rm", *padding, "-rf", str(canary_dir)])
    assert killed(res)
    assert canary_dir.exists()
    ev = agent.wait_events(lambda e: e["edrfleet.reason"] == "unscanned")[0]
    assert ev["rule.id"] == "edrfleet-unscanned-args"
    # a long argv for an executable no rule names is not affected (only wildcard rules apply)
    assert cgroup.run(["true", *padding]).returncode == 0


def test_processes_outside_the_scope_are_never_judged(agent, canary_dir):
    res = subprocess.run(["sh", "-c", "true edrfleet-canary-marker-7"], timeout=30)
    assert res.returncode == 0


def test_sudo_does_not_hide_the_command(agent, cgroup, canary_dir):
    if not shutil.which("sudo"):
        pytest.skip("sudo is not installed")
    res = cgroup.run(["sudo", "-n", "rm", "-rf", str(canary_dir)])
    assert res.returncode != 0
    assert canary_dir.exists()
    assert rule_events(agent, "canary-rm-recursive")


def test_monitor_mode_reports_would_block_and_blocks_nothing(
    start_agent, cgroup, canary_binary, tmp_path
):
    victim = Path(f"/tmp/edrfleet-canary-monitor-{os.getpid()}")
    victim.mkdir()
    text = CANARY_POLICY.format(
        mode="monitor", cgroup=cgroup.name, binary=canary_binary, allowed="/nonexistent"
    )
    agent = start_agent(text)
    assert agent.status()["state"] == "monitoring"
    assert cgroup.run(["rm", "-rf", str(victim)]).returncode == 0
    assert not victim.exists()
    ev = rule_events(agent, "canary-rm-recursive")[0]
    assert ev["event.action"] == "would_block"


def test_a_static_binary_is_caught_like_any_other(agent, cgroup, tmp_path):
    if not shutil.which("gcc") or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        pytest.skip("needs gcc and a static libc to build the canary")
    src = tmp_path / "t.c"
    src.write_text("int main(void) { return 0; }\n")
    static = tmp_path / "edr-uid-canary-static"
    subprocess.run(["gcc", "-static", "-o", str(static), str(src)], check=True)
    # the cmdline marker rule names no executable: it applies to a static binary too
    res = cgroup.run([str(static), "edrfleet-canary-marker-1"])
    assert killed(res)
    assert cgroup.run([str(static), "harmless"]).returncode == 0
