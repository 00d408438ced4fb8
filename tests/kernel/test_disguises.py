"""Disguised execs on this kernel: descriptors, interpreters and fileless copies.

test_blocking.py covers symlinks, hard links under other names, relative paths, PATH and
fexecve on an O_RDONLY descriptor; here: execveat on an O_PATH descriptor and relative to a
directory descriptor, a script whose interpreter is the blocked file, and copies run from
memory (memfd_create) or from a deleted file, which no path or inode rule can name and the
``fileless`` matcher catches.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.kernel.conftest import harmless_copy

POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: canary-binary
    description: a file that must never run, by any name
    severity: high
    action: block
    match:
      executable: ["{binary}"]
  - id: canary-rm
    description: the rm stand-in with a canary marker
    severity: high
    action: block
    match:
      executable: [rm]
      args:
        - any: [edrfleet-canary-marker]
  - id: fileless-marked
    description: a fileless exec carrying the block marker
    severity: critical
    action: block
    match:
      fileless: true
      args:
        - any: [edrfleet-fileless-marker]
  - id: fileless-exec
    description: any fileless exec is reported
    severity: high
    action: log
    match:
      fileless: true
"""


@pytest.fixture
def agent(start_agent, cgroup, canary_binary):
    return start_agent(POLICY.format(cgroup=cgroup.name, binary=canary_binary))


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def py(cgroup, code: str) -> subprocess.CompletedProcess:
    return cgroup.run(["python3", "-c", code])


def test_execveat_on_an_o_path_descriptor_is_the_same_file(agent, cgroup, canary_binary):
    res = py(cgroup, f"import os; fd = os.open({str(canary_binary)!r}, os.O_PATH); "
                     "os.execve(fd, ['innocent'], {})")
    assert killed(res), res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-binary")
    assert ev["edrfleet.as_executed"].startswith("/dev/fd/")
    assert ev["process.executable"] == str(canary_binary)


def test_execveat_relative_to_a_directory_descriptor(agent, cgroup, tmp_path):
    """execveat(dirfd, "rm", ...): the as-executed name is the path relative to the dirfd."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    harmless_copy(d / "rm")
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"fd = os.open({str(d)!r}, os.O_PATH | os.O_DIRECTORY)\n"
        "argv = (ctypes.c_char_p * 3)(b'rm', b'edrfleet-canary-marker', None)\n"
        "envp = (ctypes.c_char_p * 1)(None)\n"
        "libc.syscall(322, fd, b'rm', argv, envp, 0)\n"  # SYS_execveat on x86_64
        "raise SystemExit(f'execveat failed: {os.strerror(ctypes.get_errno())}')\n"
    )
    res = py(cgroup, code)
    assert killed(res), res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-rm")
    assert ev["process.args"] == ["rm", "edrfleet-canary-marker"]


def test_a_script_whose_interpreter_is_the_blocked_file(agent, cgroup, canary_binary, tmp_path):
    script = tmp_path / "harmless.sh"
    script.write_text(f"#!{canary_binary}\n")
    script.chmod(0o755)
    res = cgroup.run([str(script)])
    assert killed(res), res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "canary-binary")
    assert ev["edrfleet.as_executed"] == str(script)  # the real executable is the interpreter
    assert ev["process.executable"] == str(canary_binary)


MEMFD_RUN = (
    "import os, sys\n"
    "fd = os.memfd_create('rm', 0)\n"
    "os.write(fd, open('/bin/true', 'rb').read())\n"
    "os.execve(fd, sys.argv[1:], {})\n"
)


def test_a_memfd_copy_is_fileless_and_reported(agent, cgroup):
    res = cgroup.run(["python3", "-c", MEMFD_RUN, "rm", "-rf", "/tmp/not-a-canary"])
    assert res.returncode == 0, res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "fileless-exec")
    assert ev["event.action"] == "logged"
    assert ev["edrfleet.fileless"] is True
    assert ev["process.name"] == "memfd:rm"
    assert ev["edrfleet.as_executed"].startswith("/dev/fd/")
    # /proc/PID/exe while the process lives, else the descriptor path (never the agent's fd)
    assert ev["process.executable"].startswith(("/memfd:rm", "/dev/fd/")), ev
    assert ev["process.args"] == ["rm", "-rf", "/tmp/not-a-canary"]


def test_a_fileless_block_rule_kills_the_memfd_copy(agent, cgroup):
    res = cgroup.run(["python3", "-c", MEMFD_RUN, "rm", "edrfleet-fileless-marker"])
    assert killed(res), res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "fileless-marked")
    assert ev["event.action"] == "blocked" and ev["edrfleet.reason"] == "rule"
    assert ev["edrfleet.fileless"] is True


def test_a_deleted_file_run_by_descriptor_is_fileless(agent, cgroup, tmp_path):
    victim = tmp_path / "soon-gone"
    harmless_copy(victim)
    code = (f"import os; fd = os.open({str(victim)!r}, os.O_RDONLY); os.unlink({str(victim)!r});"
            " os.execve(fd, ['soon-gone', 'edrfleet-fileless-marker'], {})")
    res = py(cgroup, code)
    assert killed(res), res
    assert agent.wait_events(lambda e: e["rule.id"] == "fileless-marked")


def test_an_o_tmpfile_copy_run_through_proc_self_fd_is_fileless(agent, cgroup, tmp_path):
    """Never linked at all; executed by path (/proc/self/fd/N), not by descriptor."""
    code = (
        "import os\n"
        f"w = os.open({str(tmp_path)!r}, os.O_TMPFILE | os.O_RDWR, 0o755)\n"
        "os.write(w, open('/bin/true', 'rb').read())\n"
        "r = os.open(f'/proc/self/fd/{w}', os.O_RDONLY)\n"
        "os.close(w)  # a file open for writing cannot be executed (ETXTBSY)\n"
        "os.execv(f'/proc/self/fd/{r}', ['tmp-true', 'edrfleet-fileless-marker'])\n"
    )
    res = py(cgroup, code)
    assert killed(res), res
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "fileless-marked")
    assert ev["edrfleet.as_executed"].startswith("/proc/self/fd/")
    assert ev["edrfleet.fileless"] is True


def test_an_ordinary_file_is_not_fileless(agent, cgroup, tmp_path):
    b = tmp_path / "plain"
    harmless_copy(b)
    assert cgroup.run([str(b), "edrfleet-fileless-marker"]).returncode == 0
    os.link(b, tmp_path / "plain2")  # a second link is still a link
    assert cgroup.run([str(tmp_path / "plain2"), "x"]).returncode == 0
    # the python3 of the other tests is not fileless either: only memfd/deleted execs reported
    assert not agent.wait_events(lambda e: e["rule.id"].startswith("fileless"), timeout=1.0)
