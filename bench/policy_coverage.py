"""How much of the attack corpora the default policy blocks, and what it blocks by mistake.

Prints ratios, not pass/fail (bench/ convention).  Offline only: corpus lines are parsed into the
argvs a shell would exec (tests/corpus_argv.py) and each argv is decided by the compiled bundle
with `edrfleet.policy.simulate`; nothing is ever executed.  A line counts as blocked when any of
its execs is blocked.

Categories (attack corpora):

- atomic_linux.jsonl, by ATT&CK technique (overrides by test guid below): destructive (T1485,
  T1561.*, the sysrq reboot/kill tests, Delete Filesystem), log-and-history-wiping (T1070.002,
  T1070.003, T1685.006, T1690), security-tool-disabling (T1562.*, T1685, T1685.004, T1686);
- gtfobins.jsonl: function reverse-shell and bind-shell (every record; sudo/suid/unprivileged
  contexts of the same snippet are separate records; --unique counts snippets once).

Out-of-scope tests (printed with the reason) are not in the denominators: they run no exec
that differs from routine work (FreeBSD/macOS-only paths, cloud API calls, appending a comment).

Also printed: false blocks on benign.jsonl (label benign; must be 0), blocked/logged
benign_risky lines, and GTFOBins `shell` records blocked (spawning a local shell is not an
attack shape the default policy blocks; informational).

Usage::

    .venv/bin/python bench/policy_coverage.py [--strict] [--policy FILE] [--corpus DIR]
                                              [--unique] [--no-misses]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from edrfleet.fleet.deploy.render import render_policy  # noqa: E402
from edrfleet.policy import compile_policy, load_policy_text  # noqa: E402
from edrfleet.policy.corpus import ATTACK_CATEGORIES as CATEGORIES  # noqa: E402
from edrfleet.policy.corpus import (  # noqa: E402
    BIND,
    OUT_OF_SCOPE,
    REVERSE,
    attack_category,
    jsonl,
)
from edrfleet.policy.corpus import Decider as _BundleDecider  # noqa: E402


@dataclass
class Item:
    source: str  # atomic | gtfobins
    category: str
    key: str  # guid or binary/context
    label: str  # human name
    line: str  # the corpus text
    extra_lines: list[str] = field(default_factory=list)


def default_corpus_dir() -> Path:
    from tests.corpora import corpus_dir  # one rule for where the corpora are (EDRFLEET_CORPUS)

    return corpus_dir()


def render_default(strict: bool = False) -> str:
    """Render templates/policy.yaml.j2 with no variables (StrictUndefined)."""
    return render_policy({"edrfleet_strict": True} if strict else {})


class Decider(_BundleDecider):
    """Decide corpus lines with a policy text (edrfleet.policy.corpus.Decider on its bundle)."""

    def __init__(self, policy_text: str, source: str = "policy.yaml") -> None:
        super().__init__(compile_policy(load_policy_text(policy_text, source)))


def atomic_items(corpus: Path) -> tuple[list[Item], list[tuple[Item, str]]]:
    items: list[Item] = []
    skipped: list[tuple[Item, str]] = []
    for row in jsonl(corpus / "atomic_linux.jsonl"):
        tech = row["technique"]
        cat = attack_category(row)
        if cat is None:
            continue
        item = Item("atomic", cat, row["guid"], f"{tech} {row['name']}", row["command"])
        if row["guid"] in OUT_OF_SCOPE:
            skipped.append((item, OUT_OF_SCOPE[row["guid"]]))
        else:
            items.append(item)
    return items, skipped


def gtfobins_items(corpus: Path, unique: bool) -> list[Item]:
    items: list[Item] = []
    seen: set[tuple[str, str, str]] = set()
    for row in jsonl(corpus / "gtfobins.jsonl"):
        fn = row["function"]
        if fn not in (REVERSE, BIND):
            continue
        key = (row["binary"], fn, row["code"])
        if unique and key in seen:
            continue
        seen.add(key)
        items.append(Item("gtfobins", fn, f"{row['binary']}/{row['context']}",
                          f"{row['binary']} {fn} ({row['context']})", row["code"]))
    return items


def benign_rows(corpus: Path) -> list[dict[str, Any]]:
    return list(jsonl(corpus / "benign.jsonl"))


def gtfobins_shell_rows(corpus: Path) -> list[dict[str, Any]]:
    return [r for r in jsonl(corpus / "gtfobins.jsonl") if r["function"] == "shell"]


def _short(text: str, width: int = 110) -> str:
    flat = " ⏎ ".join(part.strip() for part in text.strip().splitlines())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def measure(decider: Decider, items: Iterable[Item]
            ) -> dict[str, list[tuple[Item, tuple, tuple]]]:
    out: dict[str, list[tuple[Item, tuple]]] = defaultdict(list)
    for item in items:
        out[item.category].append((item, decider.line(item.line),
                                   decider.line(item.line, direct=True)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", help="policy YAML (default: render templates/policy.yaml.j2)")
    ap.add_argument("--strict", action="store_true", help="render with edrfleet_strict=true")
    ap.add_argument("--corpus", type=Path, default=default_corpus_dir())
    ap.add_argument("--unique", action="store_true",
                    help="count each GTFOBins snippet once (not once per context)")
    ap.add_argument("--no-misses", action="store_true", help="do not list the misses")
    args = ap.parse_args(argv)
    if not (args.corpus / "atomic_linux.jsonl").is_file():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    text = Path(args.policy).read_text() if args.policy else render_default(args.strict)
    decider = Decider(text, args.policy or "templates/policy.yaml.j2")
    atomic, skipped = atomic_items(args.corpus)
    results = measure(decider, [*atomic, *gtfobins_items(args.corpus, args.unique)])

    label = args.policy or ("default policy, edrfleet_strict=true" if args.strict
                            else "default policy (no variables)")
    print(f"policy: {label}; {len(decider.bundle['rules'])} rules; corpus: {args.corpus}")
    print()
    print(f"{'category':<26} {'source':<9} {'blocked':>7} {'total':>6} {'%':>7}   "
          f"{'logged':>6}   {'direct':>6} {'%':>7}")
    all_b = all_t = all_d = 0
    for cat in CATEGORIES:
        rows = results.get(cat, [])
        for source in ("atomic", "gtfobins"):
            sub = [(i, d, dd) for i, d, dd in rows if i.source == source]
            if not sub:
                continue
            b = sum(1 for _, d, _ in sub if d.action == "block")
            lg = sum(1 for _, d, _ in sub if d.action == "log")
            db = sum(1 for _, _, dd in sub if dd.action == "block")
            all_b += b
            all_d += db
            all_t += len(sub)
            print(f"{cat:<26} {source:<9} {b:>7} {len(sub):>6} {100 * b / len(sub):>6.1f}%   "
                  f"{lg:>6}   {db:>6} {100 * db / len(sub):>6.1f}%")
    print(f"{'all':<26} {'':<9} {all_b:>7} {all_t:>6} {100 * all_b / max(all_t, 1):>6.1f}%   "
          f"{'':>6}   {all_d:>6} {100 * all_d / max(all_t, 1):>6.1f}%")
    print("(direct: without the `sh -c LINE` exec, i.e. the line typed into an interactive "
          "shell)")

    print()
    benign = benign_rows(args.corpus)
    false_blocks = []
    risky = defaultdict(list)
    benign_logged = 0
    for row in benign:
        d = decider.line(row["command"])
        if row["label"] == "benign":
            if d.action == "block":
                false_blocks.append((row, d))
            benign_logged += d.action == "log"
        else:
            risky[d.action].append((row, d))
    n_benign = sum(1 for r in benign if r["label"] == "benign")
    n_risky = len(benign) - n_benign
    print(f"benign false blocks: {len(false_blocks)} / {n_benign}"
          f"   (logged: {benign_logged})")
    print(f"benign_risky: blocked {len(risky['block'])}, logged {len(risky['log'])}, "
          f"allowed {len(risky['allow'])} / {n_risky}")
    shells = gtfobins_shell_rows(args.corpus)
    shell_blocked = [(r, decider.line(r["code"])) for r in shells]
    shell_blocked = [(r, d) for r, d in shell_blocked if d.action == "block"]
    print(f"gtfobins 'shell' records blocked (informational): {len(shell_blocked)} / "
          f"{len(shells)}")
    for row, d in false_blocks:
        print(f"  FALSE BLOCK [{d.rule}] {_short(row['command'])}")
    for row, d in risky["block"]:
        print(f"  risky blocked [{d.rule}] {_short(row['command'])}")
    for row, d in shell_blocked:
        print(f"  shell blocked [{d.rule}] {row['binary']}: {_short(row['code'], 90)}")

    if not args.no_misses:
        print()
        print("misses (not blocked; [rule] when logged):")
        seen: set[tuple[str, str]] = set()
        for cat in CATEGORIES:
            for item, d, _ in results.get(cat, []):
                if d.action == "block" or (cat, item.line) in seen:
                    continue
                seen.add((cat, item.line))
                tag = f"[{d.rule}] " if d.action == "log" else ""
                print(f"  {cat:<24} {item.label[:48]:<48} {tag}{_short(item.line, 70)}")
        print()
        print("out of scope (not counted):")
        for item, reason in skipped:
            print(f"  {item.label[:60]:<60} {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
