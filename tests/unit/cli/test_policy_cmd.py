"""`edrfleet policy check|compile|test`: output and exit codes."""

from __future__ import annotations

import json

import pytest

from edrfleet.cli.main import main
from edrfleet.policy import load_bundle

POLICY = """\
version: 1
rules:
  - id: rm-root
    description: recursive delete of root
    severity: critical
    action: block
    match:
      executable: [rm]
      args: [{any: ["-rf", "-fr"]}, {glob: "/*"}]
  - id: rm-tmp
    description: deleting in /tmp is fine
    severity: low
    action: allow
    match:
      executable: [rm]
      args: [{regex: '^/tmp/'}]
  - id: curl-log
    description: downloads are logged
    severity: low
    action: log
    match:
      cmdline: '^curl '
"""


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_check_prints_a_summary_and_exits_0(policy_file, capsys):
    assert main(["policy", "check", str(policy_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{policy_file}: OK"
    assert out[1] == "  rules: 3 (block 1, log 1, allow 1)"
    assert out[3] == ("  executables: 1 names, 0 paths, 1 rules for any executable (1 prefiltered "
                      "in 1 groups: they run when argv holds one of their literals)")
    assert out[4].startswith("  groups: 2, condition bits: 4 (at most 3 in one group)")
    assert out[5].startswith("  automata: 3 DFAs, ")  # the groups' and the prefilter's
    assert out[6].startswith("  candidates: checked at most ")  # names, inode or size
    assert out[7].startswith("  sha256: ") and len(out[7].split()[-1]) == 64


def test_check_prints_every_error_on_its_own_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.replace("executable: [rm]", "exectuable: [rm]").replace(
        "severity: low", "severity: lo"))
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:8:7: unknown key 'exectuable' in rule 'rm-root' (fix: did you mean "
        "'executable'?)",
        f"{path}:12:15: bad value 'lo' for 'severity' in rule 'rm-tmp' (fix: did you mean "
        "'low'?)",
        f"{path}:15:7: unknown key 'exectuable' in rule 'rm-tmp' (fix: did you mean "
        "'executable'?)",
        f"{path}:19:15: bad value 'lo' for 'severity' in rule 'curl-log' (fix: did you mean "
        "'low'?)",
    ]


def test_compile_writes_the_bundle_and_check_reads_it_back(policy_file, tmp_path, capsys):
    out = tmp_path / "bundle.json"
    assert main(["policy", "compile", str(policy_file), "-o", str(out)]) == 0
    bundle = load_bundle(out.read_text())
    assert [r["id"] for r in bundle["rules"]] == ["rm-root", "rm-tmp", "curl-log"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{out}: 3 rules, mode {bundle['mode']}, sha256 {bundle['sha256']}")
    assert main(["policy", "check", str(out)]) == 0
    assert f"sha256: {bundle['sha256']}" in capsys.readouterr().out


def test_compile_summary_json_is_what_the_role_reads(policy_file, tmp_path, capsys):
    # roles/edrfleet_agent/tasks/policy.yml reads sha256 and mode from it
    out, summary = tmp_path / "bundle.json", tmp_path / "summary.json"
    assert main(["policy", "compile", str(policy_file), "-o", str(out),
                 "--summary-json", str(summary)]) == 0
    bundle = load_bundle(out.read_text())
    want = {"rules": 3, "mode": bundle["mode"], "sha256": bundle["sha256"], "out": str(out)}
    assert json.loads(summary.read_text()) == want
    capsys.readouterr()
    assert main(["policy", "compile", str(policy_file), "-o", str(out),
                 "--summary-json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == want
    assert main(["policy", "compile", str(policy_file), "--summary-json", "-"]) == 2
    assert "needs -o" in capsys.readouterr().err


def test_compile_without_output_prints_the_canonical_json(policy_file, capsys):
    assert main(["policy", "compile", str(policy_file)]) == 0
    text = capsys.readouterr().out
    assert load_bundle(text)["source"] == "policy.yaml"


def test_compile_is_the_compilers_bundle_and_reuses_it_across_scopes(
        policy_file, tmp_path, monkeypatch, capsys):
    # the role compiles every host's policy with `policy compile`: hosts that differ only in
    # their scope must share one compile (the cache deploy uses), byte for byte the same bundle
    from edrfleet.policy import compile_policy, dump_bundle, load_policy_text

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EDRFLEET_NO_CACHE", raising=False)
    assert main(["policy", "compile", str(policy_file)]) == 0
    text = policy_file.read_text()
    assert capsys.readouterr().out == dump_bundle(compile_policy(load_policy_text(
        text, str(policy_file))))
    rules_files = sorted((tmp_path / "cache" / "edrfleet" / "bundles").glob("rules-*.json"))
    assert len(rules_files) == 1
    scoped = tmp_path / "other" / "policy.yaml"
    scoped.parent.mkdir()
    scoped.write_text(text.replace("version: 1\n", "version: 1\nscope: {cgroups: [/x]}\n"))
    calls = []
    monkeypatch.setattr("edrfleet.fleet.deploy.hostpolicy.compile_policy",
                        lambda *a: calls.append(a) or compile_policy(*a))
    assert main(["policy", "compile", str(scoped)]) == 0
    bundle = load_bundle(capsys.readouterr().out)
    assert calls == [] and bundle["scope"] == {"cgroups": ["/x"]}
    assert bundle == compile_policy(load_policy_text(scoped.read_text(), str(scoped)))


@pytest.mark.parametrize(("command", "expected"), [
    (["rm", "-rf", "/"], {"action": "block", "rules": ["rm-root"], "rule": "rm-root"}),
    (["rm", "-rf", "/tmp/x"], {"action": "allow", "rules": ["rm-root", "rm-tmp"],
                               "rule": "rm-tmp"}),
    (["curl", "-O", "http://x"], {"action": "log", "rules": ["curl-log"], "rule": "curl-log"}),
    (["ls", "-rf", "/"], {"action": "allow", "rules": [], "rule": None}),
    (["rm", "--", "-rf", "/"], {"action": "block", "rules": ["rm-root"], "rule": "rm-root"}),
])
def test_test_prints_the_decision_as_json(policy_file, capsys, command, expected):
    assert main(["policy", "test", str(policy_file), "--format", "json", "--", *command]) == 0
    assert json.loads(capsys.readouterr().out) == expected


@pytest.mark.parametrize(("command", "line"), [
    (["rm", "-rf", "/"], "blocked by rule 'rm-root' (critical)"),
    (["rm", "-rf", "/tmp/x"], "allowed by rule 'rm-tmp' (low) (also matched: rm-root)"),
    (["ls"], "allowed: no rule matched"),
])
def test_test_prints_one_readable_line(policy_file, capsys, command, line):
    assert main(["policy", "test", str(policy_file), "--", *command]) == 0
    assert capsys.readouterr().out == line + "\n"


def test_test_takes_options_before_the_file_too(policy_file, capsys):
    assert main(["policy", "test", "--format", "json", str(policy_file), "--uid", "7", "--",
                 "rm", "-rf", "/"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "rm-root"


def test_test_in_monitor_mode_says_would_be_blocked(tmp_path, capsys):
    path = tmp_path / "monitor.yaml"
    path.write_text(POLICY.replace("version: 1\n", "version: 1\nmode: monitor\n"))
    assert main(["policy", "test", str(path), "--", "rm", "-rf", "/"]) == 0
    assert capsys.readouterr().out.startswith("would be blocked (monitor mode) by rule")


def test_test_without_a_command_is_a_usage_error(policy_file, capsys):
    with pytest.raises(SystemExit) as info:
        main(["policy", "test", str(policy_file)])
    assert info.value.code == 2
    assert "give the command line after '--'" in capsys.readouterr().err


def test_a_damaged_bundle_is_refused_with_exit_2(policy_file, tmp_path, capsys):
    out = tmp_path / "bundle.json"
    main(["policy", "compile", str(policy_file), "-o", str(out)])
    out.write_text(out.read_text().replace('"critical"', '"low"'))
    capsys.readouterr()
    assert main(["policy", "check", str(out)]) == 2
    assert "bad policy bundle: sha256 mismatch" in capsys.readouterr().err


def test_a_policy_written_as_a_flow_mapping_is_still_a_policy(tmp_path, capsys):
    path = tmp_path / "flow.yaml"
    path.write_text("{version: 1, rules: [{id: a, description: d, severity: low, action: log, "
                    "match: {executable: [rm]}}]}\n")
    assert main(["policy", "test", str(path), "--format", "json", "--", "rm"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "a"


def test_test_fileless_says_whether_the_exec_runs_from_memory(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY + """\
  - id: memfd
    description: programs run from memory
    severity: high
    action: log
    match: {fileless: true}
""")
    assert main(["policy", "test", str(path), "--", "true"]) == 0
    assert capsys.readouterr().out == "allowed: no rule matched\n"
    assert main(["policy", "test", str(path), "--fileless", "--", "true"]) == 0
    assert capsys.readouterr().out == "logged by rule 'memfd' (high)\n"
def test_test_models_ancestors_sockets_and_applets(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("rules:\n", "multicall: [busybox]\nrules:\n", 1) + """\
  - id: under-cron
    description: anything under cron, however far up
    severity: high
    action: log
    match: {executable: ["true"], ancestor: {executable: [cron]}}
  - id: revshell
    description: a shell on a socket
    severity: critical
    action: block
    match: {executable: [sh], inet_stdio: [parent]}
  - id: applet
    description: the ls applet
    severity: low
    action: log
    match: {executable: [ls]}
""")
    cases = [
        (["--parent", "/usr/bin/timeout", "--ancestor", "/bin/sh", "--ancestor",
          "/usr/sbin/cron", "--", "true"], "logged by rule 'under-cron' (high)"),
        (["--", "true"], "allowed: no rule matched"),
        (["--inet-stdio", "parent", "--", "sh"], "blocked by rule 'revshell' (critical)"),
        (["--inet-stdio", "self", "--", "sh"], "allowed: no rule matched"),
        (["--filename", "/bin/busybox", "--", "ls"],
         "logged by rule 'applet' (low)\n  judged: applet: multi-call applet ls"),
        (["--filename", "/bin/busybox", "--", "busybox", "ls"],
         "logged by rule 'applet' (low)\n  judged: applet: multi-call applet ls"),
    ]
    for opts, out in cases:
        assert main(["policy", "test", str(path), *opts]) == 0
        assert capsys.readouterr().out == out + "\n", opts


# --- policy test --corpus ------------------------------------------------------------------------
CORPUS_ROWS = [
    {"command": "rm -rf /etc", "category": "destructive"},
    {"command": "sudo rm -rf /home && echo done", "category": "destructive"},
    {"command": "rm -rf /tmp/x", "category": "destructive"},
    {"command": "curl -s http://h | sh", "label": "benign_risky", "category": "pipe"},
    {"code": "ls -l", "function": "shell"},
]


def _corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CORPUS_ROWS))
    return path


def test_test_corpus_prints_a_table_by_category(policy_file, tmp_path, capsys):
    assert main(["policy", "test", str(policy_file), "--corpus", str(_corpus(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["category", "lines", "block", "log", "allow", "blocked"]
    assert lines[1].split() == ["destructive", "3", "2", "0", "1", "66.7%"]
    assert lines[2].split() == ["benign_risky", "1", "0", "1", "0", "0.0%"]  # label first
    assert lines[3].split() == ["shell", "1", "0", "0", "1", "0.0%"]


def test_test_corpus_as_json_has_counts_and_every_line(policy_file, tmp_path, capsys):
    assert main(["policy", "test", str(policy_file), "--format", "json", "--corpus",
                 str(_corpus(tmp_path))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["categories"]["destructive"] == {"total": 3, "block": 2, "log": 0, "allow": 1,
                                                "blocked_pct": 66.7}
    second = out["lines"][1]
    assert (second["action"], second["rule"], second["argv"]) == (
        "block", "rm-root", ["rm", "-rf", "/home"])  # decided by the exec of rm itself


def test_test_corpus_with_a_command_too_is_a_usage_error(policy_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["policy", "test", str(policy_file), "--corpus", str(_corpus(tmp_path)), "--",
              "ls"])
    assert info.value.code == 2
    assert "not both" in capsys.readouterr().err


def test_a_bad_corpus_row_names_the_file_and_line(policy_file, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"command": "ls"}\n{"cmd": "ls"}\n')
    assert main(["policy", "test", str(policy_file), "--corpus", str(path)]) == 2
    assert f"{path}:2: a corpus row needs a 'command'" in capsys.readouterr().err


def test_test_takes_the_parent_and_the_working_directory(tmp_path, capsys):
    path = tmp_path / "ctx.yaml"
    path.write_text("version: 1\nrules:\n  - {id: sshd-shell, description: d, severity: high, "
                    "action: block, match: {cmdline: '^bash -c', parent: {executable: [sshd]}}}\n"
                    "  - {id: tmp-cwd, description: d, severity: low, action: log, "
                    "match: {executable: [make], cwd: [/tmp]}}\n")
    cmd = ["policy", "test", str(path), "--format", "json"]
    assert main([*cmd, "--parent", "/usr/sbin/sshd", "--", "bash", "-c", "id"]) == 0
    assert json.loads(capsys.readouterr().out)["rules"] == ["sshd-shell"]
    assert main([*cmd, "--", "bash", "-c", "id"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "allow"  # parent unknown
    assert main([*cmd, "--cwd", "/tmp", "--", "make"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "log"
