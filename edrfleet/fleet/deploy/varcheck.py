"""Typos in a host's edrfleet variables: an unknown ``edrfleet_*`` name, or a rule id in
``edrfleet_disabled_rules`` that no rule has, would otherwise be ignored without a word.

The names known are those the templates read (``templates/*.j2``) and those the deploy code
reads (:data:`CODE_VARS`); ``edrfleet_agent_*`` is the Ansible role's namespace and is left to
it.  The rule ids known are the policy template's defaults plus the host's own
``edrfleet_extra_rules`` and ``edrfleet_exceptions``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edrfleet.paths import TEMPLATES

# read by fleet/deploy and fleet/transport rather than by a template
CODE_VARS = frozenset({
    "edrfleet_host_key_policy", "edrfleet_known_hosts_file", "edrfleet_install_dir",
    "edrfleet_config_dir", "edrfleet_spool_dir", "edrfleet_run_dir", "edrfleet_python",
    "edrfleet_install_packages", "edrfleet_service_manager", "edrfleet_start_timeout",
    "edrfleet_syslog", "edrfleet_webhook",
})
_NAME = re.compile(r"\bedrfleet_[a-z0-9_]+")
_RULE = re.compile(r"\bcall rule\('([^']+)'")


@functools.cache
def known_variables(template_dir: Path = TEMPLATES) -> frozenset[str]:
    found = {m for p in sorted(template_dir.glob("*.j2")) for m in _NAME.findall(p.read_text())}
    return frozenset(found | CODE_VARS)


@functools.cache
def default_rule_ids(template_dir: Path = TEMPLATES) -> frozenset[str]:
    return frozenset(_RULE.findall((template_dir / "policy.yaml.j2").read_text()))


def _did_you_mean(word: str, choices: frozenset[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _ids(rules: Any) -> set[str]:
    if not isinstance(rules, list):
        return set()
    return {str(r["id"]) for r in rules if isinstance(r, Mapping) and "id" in r}


def variable_warnings(hv: Mapping[str, Any], template_dir: Path = TEMPLATES) -> list[str]:
    """One line per unknown ``edrfleet_*`` variable and per unknown disabled rule id."""
    known = known_variables(template_dir)
    out = [f"unknown variable {name} (it is ignored){_did_you_mean(name, known)}"
           for name in sorted(hv) if isinstance(name, str) and name.startswith("edrfleet_")
           and not name.startswith("edrfleet_agent_") and name not in known]
    disabled = hv.get("edrfleet_disabled_rules")
    if isinstance(disabled, list):
        ids = frozenset(default_rule_ids(template_dir) | _ids(hv.get("edrfleet_extra_rules"))
                        | _ids(hv.get("edrfleet_exceptions")))
        out += [f"edrfleet_disabled_rules: no rule has the id {rid!r} (nothing is disabled by "
                f"it){_did_you_mean(str(rid), ids)}" for rid in disabled if str(rid) not in ids]
    return out


def fleet_warnings(hosts: list[Any]) -> list[str]:
    """:func:`variable_warnings` of every host, each message once with the hosts it concerns."""
    by_message: dict[str, list[str]] = {}
    for h in hosts:
        for w in variable_warnings(h.vars):
            by_message.setdefault(w, []).append(h.name)
    lines = []
    for message, names in by_message.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"{shown}: {message}")
    return lines
