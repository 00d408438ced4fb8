"""Hostile inventory values in the policy template and the unit: the result means what the
values say, or deploy refuses them.

Two levels, for EVERY variable the templates read:

* the templates alone (as the Ansible role renders them, no checks before): a value holding a
  newline, quotes, ``%``, ``{{ }}`` or ``$()`` never adds a key, a rule, a unit line or an
  argument; parsed back, each value is where it was put, as written;
* deploy's path (render_host_policy, render_unit, HostPaths.from_vars): values that cannot be
  what their variable is (an enum that is not one, a path with a newline, a system directory)
  are refused, naming the variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostpolicy import HostPolicyError, render_host_policy
from edrfleet.fleet.deploy.hostvars import HostVarError
from edrfleet.fleet.deploy.operations import render_unit
from edrfleet.fleet.deploy.render import POLICY_TEMPLATE, UNIT_TEMPLATE, render
from edrfleet.policy import PolicyError, load_policy_text

REPO = Path(__file__).resolve().parents[3]
TEMPLATE_DIRS = {"deploy": REPO / "templates",
                 "role": REPO / "roles" / "edrfleet_agent" / "templates"}

HOSTILE = [
    "x\nscope:\n  cgroups: [/nowhere]\nbackend: sigkill",
    "x\n  - id: planted\n    action: allow",
    "it's \"quoted\" '' \\\" \\",
    "%h %% %n %i",
    "{{ 7 * 7 }} {% if true %}y{% endif %}",
    "$(touch /tmp/edrfleet-pwned) `id` ${HOME}",
    "x # comment",
    "line\r\nExecStartPre=/bin/sh -c id\n",
    "x\u2028y\x85z",
]
IDS = ["yaml-keys", "yaml-rule", "quotes", "percent", "jinja", "shell", "comment", "crlf",
       "unicode-breaks"]

POLICY_SCALARS = ("edrfleet_mode", "edrfleet_unscanned", "ansible_managed")
POLICY_LISTS = ("edrfleet_scope_cgroups", "edrfleet_disabled_rules",
                "edrfleet_protected_agents", "edrfleet_protected_services")
UNIT_VARS = ("edrfleet_python", "edrfleet_install_dir", "edrfleet_agent_path",
             "edrfleet_bpf_dir", "edrfleet_policy_path", "edrfleet_spool_dir",
             "edrfleet_outputs_path", "edrfleet_host_name", "ansible_managed")


def policy(variables: dict[str, Any], where: str = "deploy") -> dict[str, Any]:
    text = render(POLICY_TEMPLATE, variables, template_dir=TEMPLATE_DIRS[where])
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def default_policy() -> dict[str, Any]:
    return policy({})


def same_shape(doc: dict[str, Any], default: dict[str, Any], *, scope: bool = False) -> None:
    """No key, rule or rule field appeared or went missing."""
    assert set(doc) == set(default) | ({"scope"} if scope else set())
    assert [r["id"] for r in doc["rules"]] == [r["id"] for r in default["rules"]]
    for ours, base in zip(doc["rules"], default["rules"], strict=True):
        assert ours["action"] == base["action"] and set(ours) == set(base)


# --- the templates alone (as the role renders them) --------------------------------------------
@pytest.mark.parametrize("where", TEMPLATE_DIRS)
@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
@pytest.mark.parametrize("var", POLICY_SCALARS)
def test_a_hostile_scalar_stays_inside_its_value(var, value, where, default_policy) -> None:
    doc = policy({var: value}, where)
    same_shape(doc, default_policy)
    if var == "edrfleet_mode":
        assert doc["mode"] == value  # as written: the policy loader refuses it (below)
    if var == "edrfleet_unscanned":
        assert doc["limits"]["unscanned"] == value
    if var == "ansible_managed":
        assert {k: doc[k] for k in ("mode", "limits")} == \
            {k: default_policy[k] for k in ("mode", "limits")}


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
@pytest.mark.parametrize("var", ("edrfleet_mode", "edrfleet_unscanned"))
def test_a_hostile_enum_is_refused_by_the_policy_loader(var, value) -> None:
    text = render(POLICY_TEMPLATE, {var: value})
    with pytest.raises(PolicyError):
        load_policy_text(text, "hostile.yaml")


@pytest.mark.parametrize("where", TEMPLATE_DIRS)
@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
@pytest.mark.parametrize("var", POLICY_LISTS)
def test_a_hostile_list_item_stays_inside_its_value(var, value, where, default_policy) -> None:
    doc = policy({var: [value, "plain.name"]}, where)
    same_shape(doc, default_policy, scope=var == "edrfleet_scope_cgroups")
    if var == "edrfleet_scope_cgroups":
        assert doc["scope"]["cgroups"] == [value, "plain.name"]
    if var in ("edrfleet_protected_agents", "edrfleet_protected_services"):
        rule = "kill-security-agent" if var.endswith("agents") else \
            "systemctl-stop-security-service"
        regex = next(r for r in doc["rules"] if r["id"] == rule)["match"]["args"][-1]["regex"]
        if "\u2028" not in value and "\x85" not in value:  # YAML folds those in quotes
            # a regex that matches the name itself, every metacharacter escaped
            assert re.search(regex, value + (".service" if "services" in var else ""))
        assert not re.search(regex, "unprotected-tool")
        assert not re.search(regex, "plainxname")  # `.` is not a wildcard


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_hostile_rule_fields_stay_text(value, default_policy) -> None:
    extra = {"id": "x-extra", "description": value, "severity": "low", "tags": [value],
             "action": "log", "match": {"executable": ["true"], "args": [{"any": [value]}]}}
    exc = {"id": "x-allow", "description": value, "match": {"executable": [value]}}
    doc = policy({"edrfleet_extra_rules": [extra], "edrfleet_exceptions": [exc]})
    assert doc["rules"][0] == {"action": "allow", "description": value, "id": "x-allow",
                               "match": {"executable": [value]}, "severity": "low",
                               "tags": []}
    assert doc["rules"][-1] == extra
    assert len(doc["rules"]) == len(default_policy["rules"]) + 2


def unit_lines(text: str) -> list[str]:
    # systemd splits on \n only (a U+2028 is text to it); comments and blanks say nothing
    return [ln for ln in text.split("\n") if ln.strip() and not ln.startswith(("#", ";"))]


def systemd_words(value: str) -> list[str]:
    """ExecStart=/ReadWritePaths= words as systemd reads them: whitespace-separated, "…" with C
    escapes, then %% -> % and $$ -> $ (a lone % or $ would be a specifier or a variable)."""
    words, i = [], 0
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        word = ""
        if value[i] == '"':
            i += 1
            while value[i] != '"':
                if value[i] == "\\":
                    word += escapes[value[i + 1]]
                    i += 2
                else:
                    word += value[i]
                    i += 1
            i += 1
        else:
            while i < len(value) and not value[i].isspace():
                assert value[i] not in "\"'\\", value
                word += value[i]
                i += 1
        assert not re.search(r"%[^%]|\$[^$]", word.replace("%%", "").replace("$$", "")), word
        words.append(word.replace("%%", "%").replace("$$", "$"))
    return words


def unit(variables: dict[str, Any], where: str = "deploy") -> dict[str, str]:
    text = render(UNIT_TEMPLATE, variables, template_dir=TEMPLATE_DIRS[where])
    lines = unit_lines(text)
    keys = [ln.partition("=")[0] for ln in lines]
    assert len(keys) == len(set(keys)), "a key appears twice"
    return {k: v for k, _, v in (ln.partition("=") for ln in lines)}


@pytest.mark.parametrize("where", TEMPLATE_DIRS)
@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
@pytest.mark.parametrize("var", UNIT_VARS)
def test_a_hostile_unit_value_is_one_word_that_means_itself(var, value, where) -> None:
    base = {"edrfleet_host_name": "web1"}
    default = unit(base, where)
    doc = unit({**base, var: value}, where)
    assert set(doc) == set(default)  # no ExecStartPre=, no second ExecStart=
    argv = systemd_words(doc["ExecStart"])
    expect = systemd_words(default["ExecStart"])
    position = {"edrfleet_python": 0, "edrfleet_agent_path": 1, "edrfleet_policy_path": 4,
                "edrfleet_spool_dir": 6, "edrfleet_bpf_dir": 8, "edrfleet_outputs_path": 10,
                "edrfleet_host_name": 12}
    if var in position:
        expect[position[var]] = value
    if var == "edrfleet_install_dir":
        expect[1], expect[8] = f"{value}/current/agent.pyz", f"{value}/current/bpf"
    assert argv == expect
    paths = systemd_words(doc["ReadWritePaths"])
    assert paths == ["-" + (value if var == "edrfleet_spool_dir" else "/var/lib/edrfleet")]


# --- deploy's path: refused, naming the variable -----------------------------------------------
@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
@pytest.mark.parametrize("var", ("edrfleet_mode", "edrfleet_unscanned", "ansible_managed",
                                 "edrfleet_protected_agents", "edrfleet_protected_services",
                                 "edrfleet_strict", "edrfleet_log_risky"))
def test_deploy_refuses_a_hostile_policy_value(var, value) -> None:
    if var == "ansible_managed" and value.isprintable():
        pytest.skip("one printable line is a fine comment (quoted when needed)")
    hv = {var: [value] if var.startswith("edrfleet_protected") else value}
    with pytest.raises(HostPolicyError, match=var):
        render_host_policy(hv, "web1", None)


@pytest.mark.parametrize("value", HOSTILE + ["relative/dir", "/opt/../etc", "/opt/a b"],
                         ids=[*IDS, "relative", "dotdot", "space"])
@pytest.mark.parametrize("var", ("edrfleet_install_dir", "edrfleet_config_dir",
                                 "edrfleet_spool_dir", "edrfleet_run_dir", "edrfleet_python"))
def test_deploy_refuses_a_hostile_path(var, value) -> None:
    with pytest.raises(HostVarError, match=var):
        HostPaths.from_vars({var: value})


@pytest.mark.parametrize("path", ["/", "/etc", "/etc/", "/usr", "/var/log", "/home", "/bin",
                                  "/var/lib", "//etc", "/./usr", "/tmp", "/root"])
@pytest.mark.parametrize("var", ("edrfleet_install_dir", "edrfleet_config_dir",
                                 "edrfleet_spool_dir", "edrfleet_run_dir"))
def test_a_system_directory_is_refused_for_every_path_variable(var, path) -> None:
    with pytest.raises(HostVarError, match=f"{var}.*system directory"):
        HostPaths.from_vars({var: path})


def test_a_host_name_with_a_line_break_is_refused_one_with_spaces_quoted() -> None:
    with pytest.raises(HostVarError, match="host name"):
        render_unit(HostPaths(), "web1\nExecStartPre=/bin/id")
    doc = unit({"edrfleet_host_name": "web 1 'x' %h $y"})
    assert systemd_words(doc["ExecStart"])[-2:] == ["--host-name", "web 1 'x' %h $y"]
    assert "web 1" in render_unit(HostPaths(), "web 1 'x' %h $y")


def test_plain_values_render_as_they_always_did() -> None:
    """Quoting only where needed: a deployed unit or policy does not change for nothing."""
    text = render(UNIT_TEMPLATE, {"edrfleet_host_name": "web1"})
    assert "ExecStart=/usr/bin/python3 /opt/edrfleet/current/agent.pyz run --policy " \
        "/etc/edrfleet/policy.json --spool /var/lib/edrfleet --bpf-dir " \
        "/opt/edrfleet/current/bpf --outputs /etc/edrfleet/outputs.json --host-name web1\n" \
        in text
    assert "ReadWritePaths=-/var/lib/edrfleet\n" in text
    assert "\nmode: monitor\n" in render(POLICY_TEMPLATE, {"edrfleet_mode": "monitor"})
