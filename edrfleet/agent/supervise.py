"""``agent.pyz supervise``: keep the agent running on hosts without systemd (stdlib only), and
``agent.pyz service start|restart|stop|reload``: drive it under the supervisor or systemd (below).

    python3 agent.pyz supervise --pidfile /run/edrfleet/supervisor.pid \\
        --agent-pidfile /run/edrfleet/agent.pid --log /var/lib/edrfleet/agent.log -- run ARGS…

The command returns once the supervisor is running in the background (double fork, new
session, stdio on the log file) and its pidfile is written; it fails if another supervisor
holds the pidfile.  The supervisor then

* starts ``<python> <this zipapp> ARGS…`` (so ``current/agent.pyz`` is looked up again on every
  start: a restart after a release swap runs the new release) and writes the agent's pid;
* restarts the agent whenever it exits, waiting 1, 2, 4 … 30 s between quick failures (the
  wait goes back to 1 s after a run of 60 s or more), like systemd's ``Restart=always``;
* forwards SIGHUP to the agent (policy reload) and, on SIGTERM/SIGINT, sends the agent SIGTERM,
  waits up to 10 s (then SIGKILL), removes both pidfiles and exits.

The pidfile stays locked (``flock``) for the supervisor's life: that lock, not the pid in it,
is what "already running" means, so a stale pidfile after a crash never blocks a start.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
from collections.abc import Sequence

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the backoff
STOP_GRACE = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pidfile", required=True, help="the supervisor's pidfile (locked while up)")
    p.add_argument("--agent-pidfile", default=None, help="where the agent's pid is written")
    p.add_argument("--log", default=os.devnull, help="stdout/stderr of supervisor and agent")
    p.add_argument("--foreground", action="store_true", help="do not detach (for tests)")
    p.add_argument("agent_args", nargs=argparse.REMAINDER, metavar="-- run ARGS",
                   help="-- then the agent arguments (run --policy …)")


class Supervisor:
    def __init__(self, argv: list[str], agent_pidfile: str | None) -> None:
        self.argv = argv
        self.agent_pidfile = agent_pidfile
        self.child: int | None = None
        self.stopping = False

    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, self._forward_hup)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _forward_hup(self, *_: object) -> None:
        if self.child is not None:
            _kill(self.child, signal.SIGHUP)

    def _stop(self, *_: object) -> None:
        self.stopping = True
        if self.child is not None and not _kill(self.child, signal.SIGTERM):
            # backend lsm: the agent refuses our signals (bpf/guard.c) but reads this request
            from edrfleet.agent.pinned.selfguard import request_stop

            request_stop(_spool_of(self.argv))

    def spawn(self) -> int:
        pid = os.fork()
        if pid == 0:  # the agent: default signal handling, its own argv
            try:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                os.execv(sys.executable, self.argv)
            finally:
                os._exit(127)
        self.child = pid
        if self.agent_pidfile:
            _write_pidfile(self.agent_pidfile, pid)
        return pid

    def wait_child(self) -> int:
        """Wait for the agent to exit (signals are handled meanwhile); returns its status."""
        assert self.child is not None
        stop_deadline: float | None = None
        while True:
            pid, status = os.waitpid(self.child, os.WNOHANG)
            if pid:
                self.child = None
                return status
            if self.stopping:
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE
                if time.monotonic() > stop_deadline:
                    _kill(self.child, signal.SIGKILL)
            time.sleep(0.1)

    def loop(self) -> int:
        backoff = BACKOFF_FIRST
        while not self.stopping:
            started = time.monotonic()
            self.spawn()
            status = self.wait_child()
            if self.stopping:
                break
            ran = time.monotonic() - started
            backoff = BACKOFF_FIRST if ran >= HEALTHY_AFTER else backoff
            _log(f"agent exited ({_describe(status)}) after {ran:.1f} s; restart in {backoff:g} s")
            self._sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
        if self.agent_pidfile:
            _unlink(self.agent_pidfile)
        _log("stopped")
        return 0

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(0.1)


def _kill(pid: int, sig: int) -> bool:
    """False when the agent's guard refused the signal."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    return True


def _spool_of(argv: list[str]) -> str:
    """The agent's --spool in its argv (the agent's default otherwise)."""
    for i, arg in enumerate(argv):
        if arg == "--spool" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--spool="):
            return arg.split("=", 1)[1]
    return "/var/lib/edrfleet"


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.WEXITSTATUS(status)}"


def _log(msg: str) -> None:
    print(f"edrfleet-supervise[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def _write_pidfile(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    _unlink(tmp)  # a crash's leftover; then created exclusively, never through a link
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{pid}\n")
    os.rename(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _lock_pidfile(path: str) -> int:
    """Open and lock the pidfile; OSError names the holder when another supervisor runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise OSError(f"{path}: a supervisor is already running (pid {holder or '?'})") from None
    return fd


def _daemonize(log: str) -> int | None:
    """Double fork.  Returns the read end of a pipe in the parent (None in the daemon)."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        return r
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    os.environ["EDRFLEET_SUPERVISE_READY_FD"] = str(w)
    return None


def _tell_parent(message: str) -> None:
    fd = os.environ.pop("EDRFLEET_SUPERVISE_READY_FD", None)
    if fd is not None:
        os.write(int(fd), message.encode())
        os.close(int(fd))


def _self_command() -> list[str]:
    """How to start this agent again: the zipapp path as given (``current/agent.pyz``, looked
    up anew at every start), or ``-m edrfleet.agent`` when run from a checkout."""
    if sys.argv[0].endswith("__main__.py"):
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(sys.argv[0]))))
        os.environ["PYTHONPATH"] = package_root  # the daemon runs from /
        return ["-m", "edrfleet.agent"]
    return [sys.argv[0]]


def supervise(args: argparse.Namespace) -> int:
    command = list(args.agent_args)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("supervise: give the agent arguments after '--' (run --policy …)", file=sys.stderr)
        return 2
    if not args.foreground:
        ready = _daemonize(args.log)
        if ready is not None:  # the caller: wait until the daemon says it holds the pidfile
            with os.fdopen(ready, "rb") as f:
                message = f.read().decode(errors="replace")
            if message != "ok":
                print(f"supervise: {message or 'the supervisor died at start'}", file=sys.stderr)
                return 1
            return 0
    try:
        lock_fd = _lock_pidfile(args.pidfile)
    except OSError as exc:
        _tell_parent(str(exc))
        return 1
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    sup = Supervisor([sys.executable, *_self_command(), *command], args.agent_pidfile)
    sup.install_signals()
    _tell_parent("ok")
    try:
        return sup.loop()
    finally:
        _unlink(args.pidfile)
        os.close(lock_fd)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edrfleet-agent supervise")
    add_arguments(p)
    return supervise(p.parse_args(argv))


# --- `agent.pyz service`: start, stop, restart or reload the agent, as the host runs it -------
# One copy of the supervise command line and of the stop loop, for deploy's host scripts and
# the Ansible role alike.  Prints "started" / "stopped" when it changed something; on failure
# the last line on stderr says what failed.  Under systemd, stopping is refused by the default
# policy while it enforces: callers first reload a policy without rules (deploy) or in monitor
# mode (the role).  Signals go out with os.kill: no exec for the agent's own rules to judge.
SERVICE_ACTIONS = ("start", "restart", "stop", "reload")
STOP_WAIT = 30.0


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=SERVICE_ACTIONS,
                   help="start (unless running), restart, stop or reload (SIGHUP: the policy)")
    p.add_argument("--manager", choices=("supervisor", "systemd"), default="supervisor",
                   help="who keeps the agent running (default %(default)s)")
    p.add_argument("--install-dir", default="/opt/edrfleet", help="(default %(default)s)")
    p.add_argument("--config-dir", default="/etc/edrfleet", help="(default %(default)s)")
    p.add_argument("--spool", default="/var/lib/edrfleet", help="(default %(default)s)")
    p.add_argument("--run-dir", default="/run/edrfleet", help="(default %(default)s)")
    p.add_argument("--unit", default="edrfleet-agent.service", help="(default %(default)s)")
    p.add_argument("--host-name", default=None, help="host.name in events (default: hostname)")


class ServiceError(Exception):
    pass


def supervise_argv(args: argparse.Namespace) -> list[str]:
    """The supervised agent's command line.  ``current/`` is named, not this zipapp's own path:
    every restart after a release swap then runs the release in force."""
    current = os.path.join(args.install_dir, "current")
    argv = [sys.executable, os.path.join(current, "agent.pyz"), "supervise",
            "--pidfile", os.path.join(args.run_dir, "supervisor.pid"),
            "--agent-pidfile", os.path.join(args.run_dir, "agent.pid"),
            "--log", os.path.join(args.spool, "agent.log"),
            "--", "run", "--policy", os.path.join(args.config_dir, "policy.json"),
            "--spool", args.spool, "--bpf-dir", os.path.join(current, "bpf"),
            "--outputs", os.path.join(args.config_dir, "outputs.json")]
    return argv + (["--host-name", args.host_name] if args.host_name else [])


def supervisor_pid(run_dir: str) -> int:
    """The pid of the live supervisor (0 when none): the one holding the pidfile's lock.  The
    pid alone proves nothing: after a crash it may belong to any process, which a stop or
    restart would then signal."""
    try:
        fd = os.open(os.path.join(run_dir, "supervisor.pid"),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a supervisor is up, and it wrote its pid there
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        return 0  # nobody holds the lock: no supervisor, whatever pid the file names
    finally:
        os.close(fd)  # drops our shared lock, if we took it


def _supervisor(action: str, args: argparse.Namespace) -> None:
    pid = supervisor_pid(args.run_dir)
    if action == "reload":
        if not pid:
            raise ServiceError("no supervisor running to reload")
        os.kill(pid, signal.SIGHUP)
        return
    if action == "start" and pid:
        return
    if pid and action in ("stop", "restart"):
        _kill(pid, signal.SIGTERM)
        end = time.monotonic() + STOP_WAIT
        while _alive(pid):
            if time.monotonic() > end:
                raise ServiceError(f"supervisor {pid} did not stop in {STOP_WAIT:g} s")
            time.sleep(0.1)
        print("stopped", flush=True)
    if action == "stop":
        return
    os.makedirs(args.run_dir, mode=0o700, exist_ok=True)
    os.chmod(args.run_dir, 0o700)
    import subprocess

    if subprocess.run(supervise_argv(args), check=False).returncode:
        raise ServiceError(f"the supervisor did not start (see {args.spool}/agent.log)")
    print("started", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, only not ours
        return True
    return True


def _systemctl(*argv: str) -> bool:
    import subprocess

    return subprocess.run(["systemctl", *argv], check=False).returncode == 0


def _systemd(action: str, args: argparse.Namespace) -> None:
    unit = args.unit
    if action == "reload":
        if not _systemctl("reload", unit):
            raise ServiceError(f"systemctl reload {unit} failed")
        return
    active = _systemctl("is-active", "--quiet", unit)
    if action == "stop":
        if active:
            if not _systemctl("stop", unit):
                raise ServiceError(f"systemctl stop {unit} failed")
            print("stopped", flush=True)
        return
    if action == "start" and active:
        return
    if not (_systemctl("enable", "--quiet", unit) and _systemctl(action, unit)):
        raise ServiceError(f"systemctl {action} {unit} failed")
    print("started", flush=True)


def service(args: argparse.Namespace) -> int:
    try:
        (_systemd if args.manager == "systemd" else _supervisor)(args.action, args)
    except (ServiceError, OSError) as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    return 0
