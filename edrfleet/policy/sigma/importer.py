"""Import Sigma rules (files or folders) as an edrfleet policy.

Every rule either becomes one or more edrfleet rules (one per alternative of its condition)
or is listed as refused with the reason.  Each imported rule keeps the Sigma rule's id, title,
author, date, references, level and false positives in its ``source`` block and names them in
its ``description``: the Detection Rule License 1.1 asks for that credit.

>>> result = import_texts([("r.yml", '''
... title: Rm Root
... id: 00000000-0000-4000-8000-000000000001
... author: me
... logsource: {product: linux, category: process_creation}
... detection:
...   sel: {Image|endswith: /rm, CommandLine|contains: ' -rf /'}
...   condition: sel
... level: high
... ''')])
>>> [r["match"] for r in result.imported[0].rules]
[{'executable': ['rm'], 'cmdline': '(?is: -rf /)'}]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from edrfleet.policy.compile import compile_policy
from edrfleet.policy.errors import PolicyError, PolicyErrors
from edrfleet.policy.loader import load_policy_text
from edrfleet.policy.sigma.backend import EdrfleetBackend

SEVERITY = {"informational": "low", "low": "low", "medium": "medium", "high": "high",
            "critical": "critical"}
LICENSE = "Detection Rule License 1.1 (https://github.com/SigmaHQ/Detection-Rule-License)"


class _Dumper(yaml.SafeDumper):
    """No anchors and aliases: rules split per executable share lists, write them out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass
class Imported:
    file: str
    sigma_id: str
    title: str
    rules: list[dict[str, Any]]
    dropped: list[str] = field(default_factory=list)  # alternatives left out, with the reason


@dataclass
class Refused:
    file: str
    sigma_id: str
    title: str
    reason: str


@dataclass
class ImportResult:
    imported: list[Imported] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.imported) + len(self.refused)

    @property
    def partial(self) -> list[Imported]:
        """Rules imported without some alternatives of their condition."""
        return [i for i in self.imported if i.dropped]

    @property
    def rate(self) -> float:
        return len(self.imported) / self.total if self.total else 0.0

    split: bool | None = None  # rules written one per executable (see `rules`)

    def rules(self) -> list[dict[str, Any]]:
        """The edrfleet rules, in Sigma file order.

        The kernel runs at most 8 rule groups per exec and the compiler makes one group per
        distinct ``executable`` list, so many Sigma rules naming overlapping lists (``cat``
        in eight of them) may not fit.  Then every rule naming several executables is written
        once per executable (same conditions; ids end with the name): rules on one executable
        share groups.  The decision of every exec is the same either way.
        """
        rules = [r for imp in self.imported for r in imp.rules]
        if self.split is None:
            self.split = _compile_reason(rules) is not None
        return split_by_executable(rules) if self.split else rules

    def policy(self) -> dict[str, Any]:
        """The policy document.  ``limits.unscanned: allow``: imported rules often name no
        executable, and an argv too long to scan must not be blocked on every exec for that."""
        return {"version": 1, "mode": "enforce", "limits": {"unscanned": "allow"},
                "rules": self.rules()}

    def check(self) -> None:
        """Validate and compile the policy as written.

        Raises:
            PolicyError: it does not fit the kernel even with one rule per executable (import
                fewer rules at once).
        """
        compile_policy(load_policy_text(self.policy_text(), "imported Sigma policy"))

    def policy_text(self) -> str:
        head = ["# edrfleet policy imported from Sigma rules by `edrfleet policy import-sigma`.",
                f"# {len(self.imported)} of {self.total} Sigma rules imported "
                f"({100 * self.rate:.1f} %) as {len(self.rules())} edrfleet rules"
                f" ({len(self.partial)} without some alternatives of their condition).",
                f"# The Sigma rules are licensed under the {LICENSE}:",
                "# each rule's author, id and title are kept in its 'description' and 'source'."]
        for r in self.refused:
            head.append(f"# refused: {r.file}: {r.title}: {r.reason}")
        for i in self.partial:
            head.append(f"# partly: {i.file}: {i.title}: left out: {'; '.join(i.dropped)}")
        body = yaml.dump(self.policy(), Dumper=_Dumper, sort_keys=False, width=100,
                         allow_unicode=True)
        return "\n".join(head) + "\n" + body


def split_by_executable(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One rule per executable for rules naming several (ids get the name appended)."""
    out = []
    for rule in rules:
        exes = rule["match"].get("executable", [])
        if len(exes) < 2:
            out.append(rule)
            continue
        for exe in exes:
            slug = re.sub(r"[^a-z0-9]+", "-", exe.lower()).strip("-") or "exe"
            out.append({**rule, "id": f"{rule['id']}-{slug}",
                        "match": {**rule["match"], "executable": [exe]}})
    return out


def sigma_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.yml``/``.yaml`` files named or under the folders named, sorted per argument.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml")
                              and p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory (give Sigma rule files "
                                    "or folders holding them)")
    return out


def import_paths(paths: Iterable[str | Path], action: str = "log") -> ImportResult:
    files = sigma_files(paths)
    return import_texts(((str(p), p.read_text(encoding="utf-8")) for p in files), action)


def import_texts(texts: Iterable[tuple[str, str]], action: str = "log") -> ImportResult:
    """Import ``(name, yaml text)`` pairs; ``action`` (log | block) of every imported rule."""
    if action not in ("log", "block"):
        raise ValueError(f"bad action {action!r} for imported rules (use log or block)")
    result = ImportResult()
    used: set[str] = set()
    for name, text in texts:
        try:
            collection = SigmaCollection.from_yaml(text)
        except (SigmaError, yaml.YAMLError) as exc:
            sid, title = _id_and_title(text)
            result.refused.append(Refused(name, sid, title, f"not a valid Sigma rule: {exc}"))
            continue
        for rule in collection.rules:
            if isinstance(rule, SigmaRule):
                _import_rule(result, name, rule, action, used)
            else:
                result.refused.append(Refused(name, str(getattr(rule, "id", "")),
                                              str(getattr(rule, "title", "")),
                                              "a correlation rule (several events)"))
    return result


def _id_and_title(text: str) -> tuple[str, str]:
    """Id and title of a rule pySigma refused, for the report (empty when unreadable)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    return str(doc.get("id", "")), str(doc.get("title", ""))


def _import_rule(result: ImportResult, name: str, rule: SigmaRule, action: str,
                 used: set[str]) -> None:
    sid, title = str(rule.id or ""), str(rule.title or "")
    reason = _logsource_reason(rule)
    if reason is None:
        backend = EdrfleetBackend()
        try:
            matches = [m for q in backend.convert_rule(rule) for m in q]
        except SigmaError as exc:
            reason = str(exc).split(" (while ")[0]
            reason = re.sub(r"^.*?: ", "", reason, count=1) if reason.startswith("Sigma") else (
                reason)
    if reason is not None:
        result.refused.append(Refused(name, sid, title, reason))
        return
    base = _rule_id(title, sid, used)
    rules = []
    for i, match in enumerate(matches):
        rid = base if len(matches) == 1 else f"{base}-{i + 1}"
        used.add(rid)
        rules.append({
            "id": rid,
            "description": _description(rule, i, len(matches)),
            "severity": SEVERITY.get(rule.level.name.lower() if rule.level else "", "medium"),
            "action": action,
            "tags": [str(t) for t in rule.tags],
            "source": _source(rule, name, backend.notes),
            "match": match,
        })
    reason = _compile_reason(rules)
    if reason is not None:
        result.refused.append(Refused(name, sid, title, reason))
        return
    result.imported.append(Imported(name, sid, title, rules, list(backend.dropped)))


def _compile_reason(rules: list[dict[str, Any]]) -> str | None:
    """Why the rules alone do not validate or compile for the kernel (None: they do)."""
    text = yaml.safe_dump({"version": 1, "limits": {"unscanned": "allow"}, "rules": rules},
                          sort_keys=False)
    try:
        compile_policy(load_policy_text(text, "imported"))
    except PolicyError as exc:
        first = exc.errors[0] if isinstance(exc, PolicyErrors) else exc
        return f"does not compile for the kernel: {first.message}"
    return None


def _logsource_reason(rule: SigmaRule) -> str | None:
    ls = rule.logsource
    if ls.product not in (None, "linux"):
        return f"logsource product '{ls.product}' is not linux"
    if ls.category == "process_creation" or ls.service == "auditd":
        return None
    return (f"logsource {ls.category or ls.service}: only process_creation (and auditd EXECVE "
            "records) are execs")


def _rule_id(title: str, sid: str, used: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].strip("-") or "rule"
    base = f"sigma-{slug}-{re.sub(r'[^a-f0-9]', '', sid.lower())[:8] or 'noid'}"
    rid, n = base, 2
    while rid in used:
        rid, n = f"{base}-{n}", n + 1
    return rid


def _description(rule: SigmaRule, index: int, count: int) -> str:
    part = f" (alternative {index + 1} of {count})" if count > 1 else ""
    author = f" by {rule.author}" if rule.author else ""
    return f"{rule.title}{part}. Sigma rule {rule.id}{author}; Detection Rule License 1.1."


def _source(rule: SigmaRule, name: str, notes: list[str]) -> dict[str, Any]:
    src: dict[str, Any] = {
        "sigma_id": str(rule.id or ""),
        "title": str(rule.title or ""),
        "author": str(rule.author or ""),
        "date": str(rule.date or ""),
        "modified": str(rule.modified or ""),
        "status": rule.status.name.lower() if rule.status else "",
        "level": rule.level.name.lower() if rule.level else "",
        "references": [str(r) for r in rule.references],
        "falsepositives": [str(f) for f in rule.falsepositives],
        "file": Path(name).name,
        "license": LICENSE,
    }
    if notes:
        src["notes"] = list(notes)
    return {k: v for k, v in src.items() if v not in ("", [])}
