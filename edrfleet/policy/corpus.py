"""Run a corpus of command lines (JSONL) through a compiled policy, offline.

Nothing is executed: each line is parsed into the argvs a shell would exec
(`shell_argv.exec_argvs`: ``sh -c LINE`` first, then every external command) and each argv is
decided by the simulator.  A line counts as blocked (logged) when any of its execs is.
Executables match by name only (a stat that always fails), so results do not depend on what
is installed on the machine.

Corpus rows are JSON objects with the command in ``command`` (or ``code``) and a category
taken from, in order: ``label`` (benign.jsonl: benign | benign_risky); ``category``;
``function`` (gtfobins.jsonl: reverse-shell, bind-shell, shell, ...); the ATT&CK technique of
an Atomic Red Team test (atomic_linux.jsonl), mapped to the attack categories below
(`attack_category`), "out-of-scope" for the tests in `OUT_OF_SCOPE` and "other" for the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrfleet.policy.shell.argv import exec_argvs
from edrfleet.policy.simulate import simulate

DESTRUCTIVE = "destructive"
REVERSE = "reverse-shell"
BIND = "bind-shell"
WIPING = "log-and-history-wiping"
DISABLING = "security-tool-disabling"
ATTACK_CATEGORIES = (DESTRUCTIVE, REVERSE, BIND, WIPING, DISABLING)
OUT = "out-of-scope"

TECHNIQUE_CATEGORY = {
    "T1485": DESTRUCTIVE,
    "T1561": DESTRUCTIVE,
    "T1561.001": DESTRUCTIVE,
    "T1561.002": DESTRUCTIVE,
    "T1070.002": WIPING,
    "T1070.003": WIPING,
    "T1685.006": WIPING,
    "T1690": WIPING,
    "T1685": DISABLING,
    "T1685.002": DISABLING,
    "T1685.004": DISABLING,
    "T1686": DISABLING,
}
TECHNIQUE_PREFIX_CATEGORY = {"T1562": DISABLING}

# guid -> category, for tests whose technique is filed elsewhere or is broader than the test.
GUID_CATEGORY = {
    "f3aa95fe-4f10-4485-ad26-abf22a764c52": DESTRUCTIVE,  # T1070.004 Delete Filesystem - Linux
    "6d6d3154-1a52-4d1a-9d51-92ab8148b32e": DESTRUCTIVE,  # T1685 reboot via sysrq
    "6e76f56f-2373-4a6c-a63f-98b7b72761f1": DESTRUCTIVE,  # T1489 sysrq SIGTERM to all
    "d2a1f4bc-a064-4223-8281-a086dce5423c": DESTRUCTIVE,  # T1529 sysrq reboot
    "23b88394-091b-4968-a42d-fb8076992443": WIPING,  # T1685 Clear History
    "94f6a1c9-aae7-46a4-9083-2bb1f5768ec4": WIPING,  # T1685 Suspend History
}

# guid -> reason: tests of a mapped technique that no exec-level policy should block.
OUT_OF_SCOPE = {
    "53b03a54-4529-4992-852d-a00b4b7215a6": "runs only `hostname; whoami` (the trick is a "
                                            "leading space in an interactive shell)",
    "a27418de-bdce-4ebd-b655-38f11142bf0c": "cloud control-plane API call (Stratus), not a "
                                            "host command",
    "22d89a2f-d475-4895-b2d4-68626d49c029": "cloud control-plane API call (Stratus)",
    "93c150f5-ad7b-4ee3-8992-df06dec2ac79": "cloud control-plane API call (Stratus)",
    "f790927b-ea85-4a16-b7b2-7eb44176a510": "drop_caches: no security control is touched",
    "e74e4c63-6fde-4ad2-9ee8-21c3a1733114": "swapoff -a: routine, no security control touched",
    "cedaf7e7-28ee-42ab-ba13-456abd35d1bd": "FreeBSD-only file (/etc/security/audit_event), "
                                            "appends a comment",
    "6b8ca3ab-5980-4321-80c3-bcd77c8daed8": "FreeBSD host, appends a comment to syslog.conf",
    "419cca0c-fa52-4572-b0d7-bc7c6f388a27": "only reads the ufw log (tail)",
    "8b23cae1-66c1-41c5-b79d-e095b6098b5b": "FreeBSD pf rule added then listed (pfctl)",
}

_RANK = {"allow": 0, "log": 1, "block": 2}


def attack_category(row: dict[str, Any]) -> str | None:
    """The attack category of an Atomic Red Team test row, or None."""
    tech = str(row.get("technique", ""))
    return GUID_CATEGORY.get(str(row.get("guid", ""))) or TECHNIQUE_CATEGORY.get(tech) or (
        TECHNIQUE_PREFIX_CATEGORY.get(tech.split(".")[0]))


def row_category(row: dict[str, Any]) -> str:
    if "label" in row:
        return str(row["label"])
    if "category" in row:
        return str(row["category"])
    if "function" in row:
        return str(row["function"])
    if str(row.get("guid", "")) in OUT_OF_SCOPE:
        return OUT
    return attack_category(row) or "other"


@dataclass(frozen=True)
class CorpusLine:
    category: str
    text: str
    name: str  # what the line is (test name, binary and context), for listings


def read_corpus(path: str | Path) -> list[CorpusLine]:
    """The lines of a JSONL corpus.

    Raises:
        ValueError: a row that is not a JSON object with ``command`` or ``code`` (names the
            file and line).
    """
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            text = row.get("command", row.get("code")) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: a corpus row needs a 'command' (or 'code') "
                                 "string")
            name = " ".join(str(row[k]) for k in ("technique", "name", "binary", "context")
                            if k in row) or text.splitlines()[0][:60]
            out.append(CorpusLine(row_category(row), text, name))
    return out


def _no_stat(path: bytes) -> os.stat_result:
    raise FileNotFoundError(path)


@dataclass(frozen=True)
class LineDecision:
    action: str  # strongest over the line's execs: block > log > allow
    rule: str | None
    argv: tuple[str, ...]  # the exec that decided


class Decider:
    """Decide corpus lines with one compiled bundle (memoized per argv)."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle
        self._memo: dict[tuple[str, ...], Any] = {}

    def argv(self, argv: list[str]) -> Any:
        key = tuple(argv)
        if key not in self._memo:
            self._memo[key] = simulate(self.bundle, argv, stat=_no_stat)
        return self._memo[key]

    def line(self, text: str, direct: bool = False) -> LineDecision:
        """``direct``: leave out the ``sh -c LINE`` exec (the line typed into an interactive
        shell rather than handed to ``sh -c``)."""
        best = LineDecision("allow", None, ())
        execs = exec_argvs(text)
        for argv in execs[1:] if direct else execs:
            if not argv or any("\0" in a for a in argv):
                continue
            d = self.argv(argv)
            if d.rule is not None and _RANK[d.action] > _RANK[best.action]:
                best = LineDecision(d.action, d.rule, tuple(argv))
        return best


@dataclass
class CategoryCount:
    total: int = 0
    block: int = 0
    log: int = 0
    allow: int = 0

    @property
    def blocked_pct(self) -> float:
        return 100.0 * self.block / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "block": self.block, "log": self.log, "allow": self.allow,
                "blocked_pct": round(self.blocked_pct, 1)}


@dataclass
class CorpusReport:
    categories: dict[str, CategoryCount] = field(default_factory=dict)
    lines: list[tuple[CorpusLine, LineDecision]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"categories": {k: v.to_json() for k, v in self.categories.items()},
                "lines": [{"category": ln.category, "name": ln.name, "action": d.action,
                           "rule": d.rule, "argv": list(d.argv), "command": ln.text}
                          for ln, d in self.lines]}


def run_corpus(bundle: dict[str, Any], lines: Iterable[CorpusLine]) -> CorpusReport:
    """Decide every line; count actions per category (in order of first appearance)."""
    decider = Decider(bundle)
    report = CorpusReport()
    for ln in lines:
        d = decider.line(ln.text)
        count = report.categories.setdefault(ln.category, CategoryCount())
        count.total += 1
        setattr(count, d.action, getattr(count, d.action) + 1)
        report.lines.append((ln, d))
    return report


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)
