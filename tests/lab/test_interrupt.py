"""Ctrl-C in the middle of a deploy (lab hosts, real SSH, real agents): the host being applied
finishes its apply, the others are not touched, and the last line says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from edrfleet.cli.main import main


def test_ctrl_c_mid_apply_leaves_no_half_applied_host(lab_hosts):
    names = lab_hosts.names
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.Popen([sys.executable, "-m", "edrfleet.cli.main", "deploy",
                             str(lab_hosts.inventory), "-f", "1", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line.rstrip("\n"))
            if line.startswith(f"edrfleet deploy: {names[0]}: apply"):
                time.sleep(0.2)  # the apply script is running on the host now
                proc.send_signal(signal.SIGINT)
                break
        else:
            raise AssertionError(f"no apply line: {seen}")
        rest = proc.stderr.read()
        assert proc.wait(timeout=300) == 130, rest
        last = rest.strip().splitlines()[-1]
        assert last.startswith("edrfleet: interrupted: deploy stopped with 0 of 3 hosts done; "
                               "in flight, let finish that step so that none is left "
                               f"half-applied: {names[0]} (apply); 2 more not done"), last
        first = lab_hosts.facts(names[0])  # applied whole: the new agent in force
        assert first["agent_active"] and first["status"]["state"] == "enforcing"
        rc, survived = lab_hosts.canary_attack(names[0])
        assert rc == 137 and survived
        for name in names[1:]:  # not started: nothing installed
            f = lab_hosts.facts(name)
            assert not f["release_id"] and not f["agent_active"], (name, f)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        main(["uninstall", str(lab_hosts.inventory), "--purge"])
        lab_hosts.restore_dirs()
