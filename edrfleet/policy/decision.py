"""The outcome of one exec, shared by the simulator and the reference oracle."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """``action``: allow | log | block (the policy's mode decides block vs would_block).

    ``rule`` is the deciding rule (first in policy order with the winning action) or None when
    nothing matched; ``rules`` are all matching rule ids in policy order.
    """

    action: str
    rule: str | None
    rules: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "rule": self.rule, "rules": list(self.rules)}


def decide(matched: Iterable[tuple[int, str, str]]) -> Decision:
    """Combine matched rules ``(index, id, action)``: allow > block > log."""
    ordered = sorted(set(matched))
    ids = tuple(rid for _, rid, _ in ordered)
    for action in ("allow", "block", "log"):
        for _, rid, act in ordered:
            if act == action:
                return Decision(action, rid, ids)
    return Decision("allow", None, ids)
