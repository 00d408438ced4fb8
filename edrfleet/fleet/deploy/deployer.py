"""``edrfleet deploy``: facts from every host, every policy compiled, then only what differs.

Order, and why:

1. **Facts** from every selected host, in a bounded pool (one SSH round trip each; reads only).
2. **Every host's policy** rendered, validated and compiled on the controller.  One bad policy
   stops the deploy here with a :class:`HostPolicyError` naming host, rule and fix — before any
   host was changed.
3. **Plan** per host (fleet/deploy/operations.py): an empty plan is ``ok`` and sends nothing.
4. **Apply** in ``serial`` batches, each in the pool: one round trip sends the payload, installs
   atomically, starts/restarts/reloads and waits on the host for the new policy in force; a
   failure rolls that host back (previous release + policy) and reports the agent's
   last_error.  A batch whose failures exceed ``max_fail_percent`` stops the later batches.

Every host ends with a :class:`HostResult`; nothing one host does aborts another.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.fleet.deploy.facts import HostPaths, gather_facts
from edrfleet.fleet.deploy.hostpolicy import CompileCache, host_policy
from edrfleet.fleet.deploy.hostscripts import (
    apply_script,
    build_payload,
    parse_output,
    rollback_script,
)
from edrfleet.fleet.deploy.operations import (
    Desired,
    HostFailed,
    plan,
    render_unit,
    service_manager,
)
from edrfleet.fleet.deploy.outputs import output_files
from edrfleet.fleet.deploy.release import Release, build_release
from edrfleet.fleet.deploy.results import HostResult, Session, error_result, one_line
from edrfleet.fleet.transport.connection import connector
from edrfleet.fleet.transport.pool import DEFAULT_FORKS, batches, exceeded, run_pool
from edrfleet.fleet.transport.settings import as_bool  # Ansible's booleans: true/yes/on/1

Event = Callable[[str, str], None]  # (host, phase): "facts", "policy", "apply", "done"


@dataclass
class DeployOptions:
    forks: int = DEFAULT_FORKS
    serial: int | float | None = None
    max_fail_percent: float | None = None
    check: bool = False
    diff: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    start_timeout: float = 90.0


@dataclass
class DeployReport:
    results: list[HostResult]
    seconds: float
    stopped: str = ""  # why later batches did not run

    @property
    def failed(self) -> list[HostResult]:
        return [r for r in self.results if r.failed]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


class Deployer:
    def __init__(self, inventory_dir: Path, opts: DeployOptions, *,
                 connect: Callable[[Any, Path], Any] | None = None,
                 on_event: Event | None = None, compiler: CompileCache | None = None,
                 release: Release | None = None) -> None:
        self.inventory_dir = inventory_dir
        self.opts = opts
        self.connect = connect or connector(opts.connect_timeout)
        self.on_event = on_event or (lambda host, phase: None)
        self.compiler = compiler or CompileCache()
        self.release = release or build_release()

    # -- phases ------------------------------------------------------------------------------
    def gather(self, s: Session) -> HostResult | None:
        self.on_event(s.name, "facts")
        paths = HostPaths.from_vars(s.host.vars)  # a bad path is refused before connecting
        s.transport = self.connect(s.host, self.inventory_dir)
        s.facts = gather_facts(s.transport, paths, want_release=self.release.id,
                               want_yaml=self.opts.diff, timeout=self.opts.command_timeout)
        return None

    def prepare(self, s: Session) -> None:
        """Render + compile (HostPolicyError propagates: it stops the deploy), then plan."""
        assert s.facts is not None
        self.on_event(s.name, "policy")
        hv = s.host.vars
        policy = host_policy(self.compiler, hv, s.name, s.facts, tuple(s.host.groups))
        try:
            paths = HostPaths.from_vars(hv)
            manager = service_manager(hv, s.facts)
            s.desired = Desired(
                name=s.name, paths=paths, release=self.release, policy=policy, manager=manager,
                unit=render_unit(paths, s.name) if manager == "systemd" else None,
                install_packages=as_bool(hv.get("edrfleet_install_packages", False),
                                         host=s.name, var="edrfleet_install_packages"),
                start_timeout=_seconds(hv, "edrfleet_start_timeout", self.opts.start_timeout),
                outputs=output_files(hv, paths.config_dir),
            )
            s.plan = plan(s.facts, s.desired)
        except (HostFailed, ValueError) as exc:  # ValueError: a bad variable of this host
            s.finish("failed", str(exc))

    def apply(self, s: Session) -> HostResult:
        assert s.plan is not None and s.desired is not None and s.facts is not None
        diff = self._diff(s) if self.opts.diff and s.plan.write_policy else ""
        if not s.plan.changed:
            return s.finish("ok")
        if self.opts.check:
            return s.finish("changed", "would change: " + "; ".join(s.plan.reasons),
                            changes=list(s.plan.reasons), diff=diff)
        self.on_event(s.name, "apply")
        payload = build_payload(s.desired, s.plan)
        script = apply_script(s.desired, s.plan, payload is not None)
        res = s.transport.run_script(script, input=payload.data if payload else None,
                                     timeout=self.opts.command_timeout + s.desired.start_timeout,
                                     check=False)
        out = parse_output(res.stdout)
        if res.rc == 0 and out.get("result") == "ok":
            return s.finish("changed", "; ".join(s.plan.reasons), changes=list(s.plan.reasons),
                            diff=diff, agent=out.get("status"))
        error = out.get("error") or _tail(res.stderr) or f"apply exited {res.rc}"
        old = out.get("old_release", s.facts.get("release_id", ""))
        return s.finish("failed", f"{error}; {self._rollback(s, old, out)}",
                        changes=list(s.plan.reasons), diff=diff, agent=out.get("status"))

    def _rollback(self, s: Session, old_release: str, out: dict[str, Any]) -> str:
        """Undo what the apply script says it did (nothing, if it failed before any change)."""
        assert s.desired is not None and s.plan is not None
        touched = {k for k in ("release", "policy", "unit", "service")
                   if out.get(f"touched_{k}") == "1"}
        if not touched:
            return "nothing was changed on the host"
        restart = bool(touched & {"release", "unit"}) or s.plan.service != "reload"
        script = rollback_script(s.desired, old_release, "policy" in touched, restart=restart,
                                 restore_unit="unit" in touched)
        try:
            res = s.transport.run_script(
                script, timeout=self.opts.command_timeout + s.desired.start_timeout,
                check=False)
        except Exception as exc:
            return f"rollback failed: {one_line(exc)}"
        out = parse_output(res.stdout)
        if out.get("result") == "stopped":
            return "nothing to roll back to (first install): agent stopped"
        if out.get("result") == "ok":
            return f"rolled back to release {old_release}"
        return f"rollback failed: {out.get('error') or _tail(res.stderr)}"

    def _diff(self, s: Session) -> str:
        assert s.facts is not None and s.desired is not None
        old = s.facts.get("policy_yaml") or ""
        where = f"{s.desired.paths.config_dir}/policy.yaml"
        return "".join(difflib.unified_diff(
            old.splitlines(keepends=True), s.desired.policy.yaml_text.splitlines(keepends=True),
            fromfile=f"{s.name}:{where}", tofile=f"{s.name}:{where} (new)"))

    # -- the run -----------------------------------------------------------------------------
    def run(self, hosts: Sequence[Any]) -> DeployReport:
        t0 = time.monotonic()
        sessions = [Session(h) for h in hosts]
        done = self._done
        try:
            run_pool(sessions, self.gather, forks=self.opts.forks, on_error=error_result,
                     on_done=lambda s, r: r is not None and done(s, r))
            for s in sessions:  # every policy before any change: a bad one raises here
                if s.result is None:
                    self.prepare(s)
                    if s.result is not None:
                        done(s, s.result)
            stopped = ""
            todo = batches(sessions, self.opts.serial)
            for i, batch in enumerate(todo):
                pending = [s for s in batch if s.result is None]
                if stopped:
                    for s in pending:
                        done(s, s.finish("failed", f"not deployed: {stopped}"))
                    continue
                run_pool(pending, self.apply, forks=self.opts.forks, on_error=error_result,
                         on_done=done)
                failed = sum(bool(s.result and s.result.failed) for s in batch)
                if i + 1 < len(todo) and exceeded(failed, len(batch),
                                                  self.opts.max_fail_percent):
                    stopped = (f"{failed} of {len(batch)} hosts of an earlier batch failed"
                               + (f" (--max-fail-percent {self.opts.max_fail_percent:g})"
                                  if self.opts.max_fail_percent is not None else ""))
        finally:
            for s in sessions:
                s.close()
        results = [s.result or s.finish("failed", "no result") for s in sessions]
        return DeployReport(results, round(time.monotonic() - t0, 3), stopped)

    def _done(self, s: Session, result: HostResult) -> None:
        self.on_event(s.name, "done")


def _seconds(hv: dict[str, Any], var: str, default: float) -> float:
    value = hv.get(var, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{var}: {value!r} is not a number of seconds (fix: e.g. 90)")
    return seconds


def _tail(data: bytes, n: int = 300) -> str:
    text = " ".join(data.decode(errors="replace").split())
    return text[-n:]


def deploy(inventory: Any, limit: str | None, opts: DeployOptions, **kw: Any) -> DeployReport:
    """Deploy to the hosts ``limit`` selects from ``inventory`` (a fleet.inventory.Inventory)."""
    hosts = inventory.select(limit)
    return Deployer(inventory.base_dir, opts, **kw).run(hosts)
