"""Policy validation: the shape of docs/policy.md, errors with exact positions and fixes."""

from __future__ import annotations

import textwrap

import pytest

from edrfleet.policy import ArgMatcher, PolicyError, PolicyErrors, load_policy, load_policy_text

RULE_HEAD = """\
version: 1
rules:
  - id: a
    description: d
    severity: high
    action: block
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(textwrap.dedent(text), "policy.yaml")
    exc = info.value
    return [str(e) for e in (exc.errors if isinstance(exc, PolicyErrors) else [exc])]


# (what, policy text, the first error exactly)
FIRST_ERRORS = [
    ("a misspelt match key gets a did-you-mean",
     RULE_HEAD + "    match:\n      exectuable: [rm]\n",
     "policy.yaml:8:7: unknown key 'exectuable' in rule 'a' (fix: did you mean 'executable'?)"),
    ("a match key at the rule level is told to move",
     RULE_HEAD + "    executable: [rm]\n    match: {uid: [1]}\n",
     "policy.yaml:7:5: unknown key 'executable' in rule 'a' (fix: move 'executable' under "
     "'match:')"),
    ("an unknown top-level key lists what is allowed",
     "version: 1\nfoo: 1\nrules: []\n",
     "policy.yaml:2:1: unknown key 'foo' at the top level (fix: allowed keys: version, mode, "
     "backend, limits, scope, multicall, rules)"),
    ("the version must be 1",
     "version: 2\nrules: []\n",
     "policy.yaml:1:10: unsupported policy version 2 (fix: write 'version: 1')"),
    ("the version is required",
     "rules: []\n",
     "policy.yaml:1:1: missing required key 'version' at the top level (fix: add 'version: 1')"),
    ("rules are required",
     "version: 1\n",
     "policy.yaml:1:1: missing required key 'rules' at the top level (fix: add 'rules: []')"),
    ("a bad mode gets a did-you-mean",
     "version: 1\nmode: enforcing\nrules: []\n",
     "policy.yaml:2:7: bad value 'enforcing' for 'mode' at the top level (fix: did you mean "
     "'enforce'?)"),
    ("a bad backend lists the choices",
     "version: 1\nbackend: ebpf\nrules: []\n",
     "policy.yaml:2:10: bad value 'ebpf' for 'backend' at the top level (fix: use one of: auto, "
     "lsm, sigkill)"),
    ("limits.unscanned is block or allow",
     "version: 1\nlimits: {unscanned: maybe}\nrules: []\n",
     "policy.yaml:2:21: bad value 'maybe' for 'unscanned' in 'limits' (fix: use one of: block, "
     "allow)"),
    ("a scope cgroup must be absolute",
     "version: 1\nscope: {cgroups: [lab/web1]}\nrules: []\n",
     "policy.yaml:2:19: cgroup 'lab/web1' in 'scope' is not an absolute cgroup v2 path (fix: "
     "write '/lab/web1' (relative to the cgroup v2 root))"),
    ("a scope cgroup must be canonical",
     "version: 1\nscope: {cgroups: [/lab//web1/]}\nrules: []\n",
     "policy.yaml:2:19: cgroup '/lab//web1/' in 'scope' is not in canonical form (fix: write "
     "'/lab/web1')"),
    ("a rule id is a lowercase slug",
     RULE_HEAD.replace("id: a", "id: Rm_Root") + "    match: {uid: [1]}\n",
     "policy.yaml:3:9: bad rule id 'Rm_Root' (lowercase letters, digits and '-', starting with a "
     "letter or digit) (fix: write 'rm-root')"),
    ("rule ids are unique",
     RULE_HEAD + "    match: {uid: [1]}\n" + RULE_HEAD.split("rules:\n")[1]
     + "    match: {uid: [2]}\n",
     "policy.yaml:8:9: duplicate rule id 'a' (first defined at line 3) (fix: give each rule a "
     "unique id)"),
    ("a bad severity gets a did-you-mean",
     RULE_HEAD.replace("severity: high", "severity: hgh") + "    match: {uid: [1]}\n",
     "policy.yaml:5:15: bad value 'hgh' for 'severity' in rule 'a' (fix: did you mean 'high'?)"),
    ("a missing severity is named",
     RULE_HEAD.replace("    severity: high\n", "") + "    match: {uid: [1]}\n",
     "policy.yaml:3:5: missing required key 'severity' in rule 'a' (fix: add 'severity:' to the "
     "rule)"),
    ("an empty match is refused",
     RULE_HEAD + "    match: {}\n",
     "policy.yaml:7:12: 'match' in rule 'a' has no matcher (fix: add at least one of: "
     "executable, args, cmdline, user, uid, parent, cwd, cwd_is, fileless, ancestor, inet_stdio)"),
    ("executable must be a list",
     RULE_HEAD + "    match:\n      executable: rm\n",
     "policy.yaml:8:19: 'executable' in rule 'a' must be a list, not a string (fix: write "
     "executable: [rm, /usr/bin/dd])"),
    ("a relative executable path is refused",
     RULE_HEAD + "    match:\n      executable: [bin/rm]\n",
     "policy.yaml:8:20: executable 'bin/rm' in rule 'a' is neither a basename nor an absolute "
     "path (fix: write 'rm' (any directory) or '/bin/rm')"),
    ("a basename longer than 62 bytes is refused (the kernel never matches it)",
     RULE_HEAD + "    match:\n      executable: [" + "x" * 63 + "]\n",
     "policy.yaml:8:20: executable name 'xxxxxxxxxxxxxxxxxxxx...' in rule 'a' is 63 bytes; the "
     "kernel compares at most 62 (fix: name the file by its absolute path)"),
    ("an args entry must be a mapping",
     RULE_HEAD + "    match:\n      args: [\"-rf\"]\n",
     "policy.yaml:8:14: an 'args' entry in rule 'a' must be a mapping with one of any, glob, "
     "regex, option, path, not a string (fix: write '- any: [\"-rf\"]')"),
    ("an args entry takes exactly one kind",
     RULE_HEAD + "    match:\n      args: [{any: [-rf], glob: '/*'}]\n",
     "policy.yaml:8:14: an 'args' entry in rule 'a' has any and glob; each entry takes exactly "
     "one (fix: split it into several entries (each must hold))"),
    ("an unknown args kind gets a did-you-mean",
     RULE_HEAD + "    match:\n      args: [{regexp: 'a'}]\n",
     "policy.yaml:8:15: unknown key 'regexp' in an 'args' entry rule 'a' (fix: did you mean "
     "'regex'?)"),
    ("an any literal must be a string",
     RULE_HEAD + "    match:\n      args: [{any: [1]}]\n",
     "policy.yaml:8:21: an entry of 'any' in rule 'a' must be a string, not an integer (fix: "
     "quote the value)"),
    ("an invalid regex names the column of the error inside the pattern",
     RULE_HEAD + "    match:\n      args: [{regex: 'ab(c'}]\n",
     "policy.yaml:8:25: invalid regex in 'args' regex in rule 'a': missing ), unterminated "
     "subpattern at position 2 (fix: close the group with ')')"),
    ("nothing to repeat suggests escaping",
     RULE_HEAD + "    match:\n      cmdline: '*.sh'\n",
     "policy.yaml:8:17: invalid regex in 'cmdline' in rule 'a': nothing to repeat at position 0 "
     "(fix: escape the character with a backslash (e.g. '\\*', '\\+') to mean it literally)"),
    ("a back-reference is refused with a hint",
     RULE_HEAD + "    match:\n      cmdline: '(a)\\1'\n",
     "policy.yaml:8:20: unsupported regex feature in 'cmdline' in rule 'a': back-reference \\1 "
     "(fix: an automaton cannot remember captured text; spell out the alternatives)"),
    ("a look-ahead is refused with a hint",
     RULE_HEAD + "    match:\n      cmdline: 'curl(?= )'\n",
     "policy.yaml:8:21: unsupported regex feature in 'cmdline' in rule 'a': look-ahead (?=...) "
     "(fix: match the text itself instead, or split the condition into several 'args' entries "
     "(each entry must hold))"),
    ("a negative look-behind is refused",
     RULE_HEAD + "    match:\n      args: [{regex: '(?<!x)a'}]\n",
     "policy.yaml:8:23: unsupported regex feature in 'args' regex in rule 'a': look-behind "
     "(?<!...) (fix: match the text itself instead, or split the condition into several 'args' "
     "entries (each entry must hold))"),
    ("a conditional group is refused",
     RULE_HEAD + "    match:\n      cmdline: '(a)?(?(1)b|c)'\n",
     "policy.yaml:8:21: unsupported regex feature in 'cmdline' in rule 'a': conditional group "
     "(?(1)...) (fix: write the alternatives with '|' instead)"),
    ("a possessive repeat is refused",
     RULE_HEAD + "    match:\n      cmdline: 'a*+'\n",
     "policy.yaml:8:18: unsupported regex feature in 'cmdline' in rule 'a': possessive repeat *+ "
     "(fix: drop the trailing '+' (greedy repeat))"),
    ("a huge counted repeat is refused",
     RULE_HEAD + "    match:\n      cmdline: 'a{2000}'\n",
     "policy.yaml:8:18: unsupported regex feature in 'cmdline' in rule 'a': {2000} (fix: repeat "
     "counts above 1000 are too large for the automaton; use a smaller bound or '*'/'+')"),
    ("the locale flag is refused",
     RULE_HEAD + "    match:\n      cmdline: '(?L)a'\n",
     "policy.yaml:8:17: unsupported regex feature in 'cmdline' in rule 'a': (?L) (fix: remove "
     "the L flag: the kernel matches bytes with ASCII rules, not a locale)"),
    ("uids are numbers",
     RULE_HEAD + "    match:\n      uid: [1000, -1]\n",
     "policy.yaml:8:19: bad uid -1 in rule 'a' (fix: write a number from 0 to 4294967294 or a "
     "user name)"),
    ("at most 8 uids fit a rule",
     RULE_HEAD + "    match:\n      uid: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
     "policy.yaml:8:12: 'uid' in rule 'a' lists 9 uids; the kernel takes at most 8 per rule "
     "(fix: split the rule in two)"),
    ("user and its alias uid together are refused",
     RULE_HEAD + "    match:\n      user: [root]\n      uid: [0]\n",
     "policy.yaml:9:7: 'uid' in rule 'a' is an alias of 'user', which is also given (fix: keep "
     "one list ('user: [root, 1000]'))"),
    ("a bad user name is refused",
     RULE_HEAD + "    match:\n      user: ['a b']\n",
     "policy.yaml:8:14: bad user name 'a b' in rule 'a' (fix: write a login name (letters, "
     "digits, '_', '-', '.') or a uid)"),
    ("a relative cwd prefix is refused",
     RULE_HEAD + "    match:\n      cwd: [tmp]\n",
     "policy.yaml:8:13: cwd prefix 'tmp' in rule 'a' is not an absolute directory (fix: write "
     "'/tmp')"),
    ("a cwd prefix in non-canonical form is refused",
     RULE_HEAD + "    match:\n      cwd: [/tmp/../etc]\n",
     "policy.yaml:8:13: cwd prefix '/tmp/../etc' in rule 'a' is not in canonical form (fix: "
     "write '/etc')"),
    ("parent takes a mapping",
     RULE_HEAD + "    match:\n      parent: [bash]\n",
     "policy.yaml:8:15: 'parent' in rule 'a' must be a mapping, not a list (fix: write "
     "'parent: {executable: [bash, /usr/sbin/sshd]}')"),
    ("parent knows only executable",
     RULE_HEAD + "    match:\n      parent: {exe: [bash]}\n",
     "policy.yaml:8:16: unknown key 'exe' in 'parent' in rule 'a' (fix: allowed keys: "
     "executable)"),
    ("a parent executable is a basename or an absolute path",
     RULE_HEAD + "    match:\n      parent: {executable: [bin/bash]}\n",
     "policy.yaml:8:29: executable 'bin/bash' in rule 'a' is neither a basename nor an absolute "
     "path (fix: write 'bash' (any directory) or '/bin/bash')"),
    ("a duplicate key is refused",
     RULE_HEAD + "    action: log\n    match: {uid: [1]}\n",
     "policy.yaml:7:5: duplicate key 'action' in rule 'a' (first at line 6) (fix: keep only one "
     "of them)"),
    ("an empty file is an error at line 1",
     "",
     "policy.yaml:1:1: the policy is empty (fix: start with 'version: 1' and a 'rules:' list)"),
    ("a top level list is refused",
     "- a\n- b\n",
     "policy.yaml:1:1: the policy must be a mapping (version, rules, ...), not a list (fix: start "
     "the file with 'version: 1')"),
    ("a YAML syntax error carries the mark's line",
     "version: 1\nrules:\n  - id: a\n    description: [oops\n",
     "policy.yaml:5:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while "
     "parsing a flow sequence) (fix: check the indentation and quoting around this line)"),
    ("a tab is explained",
     "version: 1\nrules:\n\t- id: a\n",
     "policy.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
     "(while scanning for the next token) (fix: indent with spaces, not tabs)"),
    ("a regex in double quotes with a backslash is explained",
     RULE_HEAD + "    match:\n      cmdline: \"\\d\"\n",
     "policy.yaml:8:18: YAML syntax error: found unknown escape character 'd' (while scanning a "
     "double-quoted scalar) (fix: use single quotes for regexes ('\\d'), or double the backslash "
     "inside double quotes (\"\\\\d\"))"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FIRST_ERRORS],
                         ids=[c[0] for c in FIRST_ERRORS])
def test_a_bad_policy_is_reported_with_position_and_fix(text, expected):
    assert errors_of(text)[0] == expected


def test_every_error_of_a_file_is_reported_in_file_order():
    text = RULE_HEAD.replace("action: block", "action: blok") + (
        "    match:\n"
        "      executable: rm\n"
        "      args:\n"
        "        - regex: '(?=x)'\n"
        "      uid: [-1]\n")
    errors = errors_of(text)
    assert [e.split(": ")[0] for e in errors] == [
        "policy.yaml:6:13", "policy.yaml:8:19", "policy.yaml:10:19", "policy.yaml:11:13"]
    with pytest.raises(PolicyErrors) as info:
        load_policy_text(text, "policy.yaml")
    assert str(info.value).endswith("(and 3 more)")


def test_a_valid_policy_loads_with_defaults():
    pol = load_policy_text(textwrap.dedent("""\
        version: 1
        rules:
          - id: rm-recursive-root
            description: recursive delete of the root filesystem
            severity: critical
            action: block
            tags: [destructive]
            match:
              executable: [rm, /usr/bin/rm, rm]
              args:
                - any: ["-rf", "-fr", "-rf"]
                - regex: '^-[a-zA-Z]*[rR][a-zA-Z]*$'
                - glob: "/*"
              cmdline: 'rm .*'
              uid: [0, 1000]
    """), "p.yaml")
    assert (pol.version, pol.mode, pol.backend, pol.unscanned) == (1, "enforce", "auto", "block")
    assert pol.scope_cgroups == () and pol.source == "p.yaml"
    (rule,) = pol.rules
    assert rule.id == "rm-recursive-root" and rule.line == 3
    assert rule.executables == ("rm", "/usr/bin/rm")
    assert rule.args == (
        ArgMatcher("any", ("-rf", "-fr"), 11, 11),
        ArgMatcher("regex", "^-[a-zA-Z]*[rR][a-zA-Z]*$", 12, 11),
        ArgMatcher("glob", "/*", 13, 11),
    )
    assert rule.cmdline == "rm .*" and rule.uids == (0, 1000) and rule.tags == ("destructive",)


def test_mode_backend_limits_and_scope_are_read():
    pol = load_policy_text(
        "version: 1\nmode: monitor\nbackend: sigkill\nlimits: {unscanned: allow}\n"
        "scope: {cgroups: [/edrfleet-lab/web1]}\nrules: []\n")
    assert (pol.mode, pol.backend, pol.unscanned) == ("monitor", "sigkill", "allow")
    assert pol.scope_cgroups == ("/edrfleet-lab/web1",)


def test_a_rule_with_only_a_uid_is_valid():
    pol = load_policy_text(RULE_HEAD + "    match: {uid: [1000]}\n")
    assert pol.rules[0].uids == (1000,) and pol.rules[0].executables == ()


def test_load_policy_reads_a_file_and_names_it_in_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nrulez: []\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:2:1: unknown key 'rulez' at the top level")


def test_a_file_that_is_not_utf8_is_a_policy_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nrules: []\n# caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


def test_a_misspelt_required_key_is_not_also_reported_missing():
    errors = errors_of(RULE_HEAD.replace("action:", "acton:") + "    match: {uid: [1]}\n")
    assert errors == ["policy.yaml:6:5: unknown key 'acton' in rule 'a' (fix: did you mean "
                      "'action'?)"]


def test_fileless_must_be_a_boolean():
    text = RULE_HEAD + "    match: {fileless: yes please}\n"
    assert errors_of(text)[0] == (
        "policy.yaml:7:23: 'fileless' in rule 'a' must be true or false, not a string "
        "(fix: write 'fileless: true')")
# --- cmdline lists and the source block (added for imported Sigma rules) -----------------------
def test_a_cmdline_list_needs_every_regex_to_hold() -> None:
    from edrfleet.policy import compile_policy, reference_decide, simulate

    policy = load_policy_text(RULE_HEAD + "    match:\n      cmdline: ['curl', ' -d ', "
                              "'(?i)HTTP']\n", "policy.yaml")
    rule = policy.rules[0]
    assert rule.cmdlines == ("curl", " -d ", "(?i)HTTP") and rule.cmdline == "curl"
    bundle = compile_policy(policy)
    for argv, action in ((["curl", "-d", "x", "http://h"], "block"),
                         (["curl", "-d", "x"], "allow"),
                         (["wget", "-d", "http://h"], "allow")):
        assert simulate(bundle, argv, identity=(0, 0)).action == action, argv
        assert reference_decide(policy, argv, identity=(0, 0)).action == action, argv


def test_a_bad_regex_in_a_cmdline_list_is_reported_at_its_item() -> None:
    errors = errors_of(RULE_HEAD + "    match:\n      cmdline:\n        - ok\n"
                                   "        - '(?=x)'\n")
    assert errors == ["policy.yaml:10:12: unsupported regex feature in 'cmdline' in rule 'a': "
                      "look-ahead (?=...) (fix: match the text itself instead, or split the "
                      "condition into several 'args' entries (each entry must hold))"]


def test_source_is_kept_on_the_rule_and_not_compiled() -> None:
    from edrfleet.policy import compile_policy

    text = RULE_HEAD + ("    source: {title: T, author: 'A, B', references: [u1, u2]}\n"
                        "    match: {executable: [rm]}\n")
    policy = load_policy_text(text, "policy.yaml")
    assert policy.rules[0].source == (("title", "T"), ("author", "A, B"),
                                      ("references", ("u1", "u2")))
    without = load_policy_text(RULE_HEAD + "    match: {executable: [rm]}\n", "policy.yaml")
    assert compile_policy(policy)["sha256"] == compile_policy(without)["sha256"]


def test_a_source_that_is_not_a_mapping_of_strings_is_an_error() -> None:
    assert errors_of(RULE_HEAD + "    source: [x]\n    match: {uid: [0]}\n") == [
        "policy.yaml:7:13: 'source' in rule 'a' must be a mapping, not a list (fix: write "
        "'source: {title: ..., author: ...}')"]
    assert errors_of(RULE_HEAD + "    source: {a: {b: c}}\n    match: {uid: [0]}\n") == [
        "policy.yaml:7:17: 'a' in 'source' in rule 'a' must be a string or a list of strings, "
        "not a mapping (fix: quote the value)"]
