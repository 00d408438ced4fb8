"""roles/edrfleet_agent run by ansible-playbook against real lab hosts (sshd in network
namespaces, no systemd: the role's supervisor path), real agents, real SSH.

The tests share one install (`converged`: the role's first run on hosts wiped of anything an
earlier file left): first converge, no-op rerun, policy-only reload; state absent runs last, as
it removes the install.  The molecule scenario (tests/vm/test_molecule.py) proves the systemd
path in a VM.  Every attack is a canary (LabFleet.canary_attack).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edrfleet.cli.main import main
from edrfleet.fleet.deploy.hostpolicy import CompileCache, host_policy
from edrfleet.fleet.deploy.release import build_release
from edrfleet.fleet.inventory.load import load_inventory
from tests.lab.lab_fleet import MANAGED_DIRS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # ansible-playbook next to the interpreter running edrfleet
PLAYBOOK = """\
- name: Install edrfleet with the role
  hosts: lab
  gather_facts: false
  roles:
    - role: edrfleet_agent
"""
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.M)


class Play:
    def __init__(self, inventory: Path, workdir: Path) -> None:
        self.inventory = inventory
        self.playbook = workdir / "site.yml"
        self.playbook.write_text(PLAYBOOK)
        self.env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"),
                        ANSIBLE_HOME=str(workdir / "ansible-home"),
                        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"),
                        ANSIBLE_PIPELINING="True", ANSIBLE_HOST_KEY_CHECKING="True",
                        ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ['PATH']}")

    def run(self, *args: str) -> dict[str, dict[str, int]]:
        """ansible-playbook the role; the recap per host.  Fails the test on a failed host."""
        r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory),
                            str(self.playbook), *args], env=self.env, capture_output=True,
                           text=True, timeout=600)
        recap = {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                        "failed": int(m[5])} for m in RECAP.finditer(r.stdout)}
        assert r.returncode == 0 and recap, r.stdout[-4000:] + r.stderr[-2000:]
        return recap


@pytest.fixture(scope="module")
def play(lab_hosts, tmp_path_factory):
    p = Play(lab_hosts.inventory, tmp_path_factory.mktemp("role"))
    yield p
    p.run("-e", "edrfleet_agent_state=absent")
    lab_hosts.restore_dirs()


@pytest.fixture(scope="module")
def converged(lab_hosts, play):
    """The role's first run: on hosts with nothing of edrfleet, whatever ran before."""
    assert main(["uninstall", str(lab_hosts.inventory), "--purge"]) == 0
    lab_hosts.restore_dirs()
    return play.run()


def test_the_role_starts_an_enforcing_agent_on_every_host(lab_hosts, converged):
    release = build_release()
    for name in lab_hosts.names:
        assert converged[name]["changed"] > 0 and converged[name]["failed"] == 0
        f = lab_hosts.facts(name)
        assert f["agent_active"] and f["status"]["state"] == "enforcing"
        assert f["status"]["pid"] == f["agent_pid"]
        assert f["release_id"] == release.id
        rc, survived = lab_hosts.canary_attack(name)
        assert rc != 0 and survived, (name, rc)


def test_the_role_installs_the_bundle_deploy_compiles(lab_hosts, converged):
    inventory = load_inventory(lab_hosts.inventory)
    compiler = CompileCache()
    for name in lab_hosts.names:
        h = inventory.hosts[name]
        want = host_policy(compiler, dict(h.vars), name, {}, tuple(h.groups))
        f = lab_hosts.facts(name)
        assert f["policy_sha256"] == want.file_sha256  # policy.json, byte for byte
        assert f["status"]["policy_sha256"] == want.sha256  # and in force


def test_a_second_run_changes_nothing_and_restarts_nothing(lab_hosts, converged, play):
    before = lab_hosts.agent_pids()
    recap = play.run()
    assert {n: r["changed"] for n, r in recap.items()} == {n: 0 for n in lab_hosts.names}
    assert lab_hosts.agent_pids() == before


def test_a_policy_only_change_reloads_the_agent_without_a_restart(lab_hosts, converged, play):
    name = lab_hosts.names[0]
    before = lab_hosts.agent_pids()
    recap = play.run("--limit", name, "-e", "edrfleet_mode=monitor")
    assert set(recap) == {name} and recap[name]["changed"] > 0
    f = lab_hosts.facts(name)
    assert f["status"]["state"] == "monitoring" and f["status"]["last_reload"]["ok"]
    play.run("--limit", name)
    assert lab_hosts.facts(name)["status"]["state"] == "enforcing"
    assert lab_hosts.agent_pids() == before  # SIGHUP through the supervisor, never a restart
    rc, survived = lab_hosts.canary_attack(name)
    assert rc != 0 and survived


def test_state_absent_stops_the_agent_and_removes_everything(lab_hosts, converged, play):
    supervisors = [lab_hosts.facts(n)["supervisor_pid"] for n in lab_hosts.names]
    recap = play.run("-e", "edrfleet_agent_state=absent")
    assert all(recap[n]["changed"] > 0 for n in lab_hosts.names)
    for h in lab_hosts.hosts.values():
        for var in MANAGED_DIRS:
            assert not Path(h.vars[var]).exists(), (h.name, var)
    for pid in supervisors:
        assert pid and not Path(f"/proc/{pid}").exists()
    recap = play.run("-e", "edrfleet_agent_state=absent")
    assert {n: r["changed"] for n, r in recap.items()} == {n: 0 for n in lab_hosts.names}


def test_missing_parents_root_only_no_value_templated_twice_and_vaulted_outputs(
        lab_hosts, play, tmp_path):
    # After state absent (the test before): one host converged into managed directories two
    # levels below anything that exists, with an extra rule whose description is a template
    # marked !unsafe, as the README says an inventory keeps a literal `{{`, and a webhook
    # output whose credential header is vault-encrypted.
    name = lab_hosts.names[0]
    base, marker = tmp_path / "deep", tmp_path / "templated-twice"
    dirs = {"edrfleet_install_dir": base / "a" / "b" / "install",
            "edrfleet_config_dir": base / "a" / "c" / "config",
            "edrfleet_spool_dir": base / "d" / "spool",
            "edrfleet_run_dir": base / "e" / "f" / "run"}
    hostile = "{{ lookup('pipe', 'touch " + str(marker) + "') }} {% raw %}x{% endraw %}"
    (tmp_path / "vault-pass").write_text("lab-vault-pass\n")
    vault = ["--vault-password-file", str(tmp_path / "vault-pass")]
    secret = "Authorization: Bearer vaulted-s3cret"
    enc = subprocess.run([str(BIN / "ansible-vault"), "encrypt_string", *vault, secret],
                         env=play.env, capture_output=True, text=True, check=True).stdout
    assert enc.startswith("!vault |") and secret not in enc
    varfile = tmp_path / "vars.yml"
    varfile.write_text("".join(f"{k}: {json.dumps(str(v))}\n" for k, v in dirs.items()) + (
        "edrfleet_extra_rules:\n"
        "  - id: hostile-template\n"
        f"    description: !unsafe {json.dumps(hostile)}\n"
        "    severity: low\n    action: log\n"
        "    match: {executable: [edrfleet-no-such-tool]}\n"
        "edrfleet_webhook:\n"
        "  url: http://127.0.0.1:9/events\n"  # discard port: the output retries, counted
        "  header: " + enc.replace("\n", "\n  ") + "\n"))
    try:
        recap = play.run("--limit", name, "-e", f"@{varfile}", *vault)
        assert recap[name]["failed"] == 0
        for d in dirs.values():
            level = base
            for part in d.relative_to(base).parts:
                level = level / part
                st = level.stat()
                assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700), level
        policy = yaml.safe_load((dirs["edrfleet_config_dir"] / "policy.yaml").read_text())
        (rule,) = [r for r in policy["rules"] if r["id"] == "hostile-template"]
        assert rule["description"] == hostile  # as written, templated by nobody
        assert not marker.exists()
        status = json.loads((dirs["edrfleet_spool_dir"] / "status.json").read_text())
        assert status["state"] == "enforcing", status
        # the vaulted header decrypted into the host's header file (0600), named by outputs.json
        header = dirs["edrfleet_config_dir"] / "webhook.header"
        assert header.read_text() == secret + "\n"
        assert stat.S_IMODE(header.stat().st_mode) == 0o600
        outputs = json.loads((dirs["edrfleet_config_dir"] / "outputs.json").read_text())
        assert outputs["webhook"]["header_file"] == str(header)
        assert "WebhookOutput" in status.get("outputs", {}), status
    finally:
        play.run("--limit", name, "-e", f"@{varfile}", *vault, "-e",
                 "edrfleet_agent_state=absent")
    assert not any(d.exists() for d in dirs.values())
