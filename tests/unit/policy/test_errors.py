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
