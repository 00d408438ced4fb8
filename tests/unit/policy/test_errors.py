"""PolicyError / PolicyErrors: one line each, file:line:col, message, fix."""

from __future__ import annotations

import pytest

from edrfleet.policy import PolicyError, PolicyErrors


def test_a_policy_error_prints_as_one_line_with_position_and_fix():
    err = PolicyError("unknown key 'exectuable' in rule 'rm-root'", source="policy.yaml",
                      line=12, col=5, fix="did you mean 'executable'?")
    assert str(err) == ("policy.yaml:12:5: unknown key 'exectuable' in rule 'rm-root' "
                        "(fix: did you mean 'executable'?)")
    assert (err.source, err.line, err.col) == ("policy.yaml", 12, 5)
    assert "\n" not in str(err)


def test_a_policy_error_is_a_value_error():
    with pytest.raises(ValueError):
        raise PolicyError("bad", source="p.yaml", line=1, col=1)


def test_a_policy_error_without_fix_or_column_leaves_them_out():
    assert str(PolicyError("empty", source="p.yaml", line=3)) == "p.yaml:3: empty"
    assert str(PolicyError("empty", source="p.yaml")) == "p.yaml: empty"


def test_policy_errors_show_the_first_error_and_count_the_rest():
    errors = [PolicyError(f"problem {i}", source="p.yaml", line=i, col=1, fix="fix it")
              for i in (1, 2, 3)]
    many = PolicyErrors(errors)
    assert str(many) == "p.yaml:1:1: problem 1 (fix: fix it) (and 2 more)"
    assert many.errors == errors
    assert isinstance(many, PolicyError)
    assert (many.line, many.message) == (1, "problem 1")


def test_policy_errors_need_at_least_one_error():
    with pytest.raises(ValueError):
        PolicyErrors([])


def test_control_characters_in_an_error_are_escaped():
    err = PolicyError("bad rule id 'a\x07\x1b[31mred'", source="p\x1b.yaml", line=3,
                      fix="write 'a\u2028b'")
    assert str(err) == "p\\x1b.yaml:3: bad rule id 'a\\x07\\x1b[31mred' (fix: write 'a\\u2028b')"


def test_policy_check_escapes_a_rule_id_with_a_bell_and_esc(tmp_path, capsys):
    from edrfleet.cli.main import main

    f = tmp_path / "p.yaml"
    f.write_text('version: 1\nrules:\n  - id: "a\\a\\e[31mred"\n    description: d\n'
                 "    severity: low\n    action: log\n    match: {cmdline: x}\n")
    assert main(["policy", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "'a\\x07\\x1b[31mred'" in err and "\x1b" not in err and "\x07" not in err


def test_a_non_utf8_policy_names_the_file_the_line_and_a_fix(tmp_path):
    from edrfleet.policy.compile import compile_file

    f = tmp_path / "p.yaml"
    f.write_bytes(b"version: 1\nrules:\n  - id: a\xda\x01\n")
    with pytest.raises(PolicyError) as info:
        compile_file(f)
    assert (info.value.source, info.value.line, info.value.col) == (str(f), 3, 10)
    assert "not UTF-8 text: byte da" in info.value.message
    assert "UTF-8" in info.value.fix and "codec" not in str(info.value)


def test_an_unreadable_policy_names_the_file_and_a_fix(tmp_path):
    from edrfleet.policy.compile import compile_file

    with pytest.raises(PolicyError) as info:
        compile_file(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: cannot read the policy: Is a directory")
    assert info.value.fix
