"""The outcome of one exec, shared by the simulator and the reference oracle."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    """``action``: allow | log | block (the policy's mode decides block vs would_block).

    ``rule`` is the deciding rule (first in policy order with the winning action) or None when
    nothing matched; ``rules`` are all matching rule ids in policy order.  ``reason`` is set
    when the kernel blocks without a rule, failing closed at one of its limits:
    ``"unscanned"`` (argv longer than it scans) or ``"dropped"`` (more rule groups apply than
    it evaluates, one left out has a block rule).
    """

    action: str
    rule: str | None
    rules: tuple[str, ...]
    reason: str | None = None
    # how the simulator judged the exec beyond its names (simulate_identity.Note: loader,
    # applet, content, size, limits); not part of the decision, so not compared
    notes: tuple[Any, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action, "rule": self.rule,
                                  "rules": list(self.rules)}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["judged"] = [n.to_json() for n in self.notes]
        return out


def decide(matched: Iterable[tuple[int, str, str]], fail_closed: str | None = None) -> Decision:
    """Combine matched rules ``(index, id, action)``: allow > block > log.  ``fail_closed``
    (a reason) blocks when no allow rule matched and no block rule did, as the kernel does."""
    ordered = sorted(set(matched))
    ids = tuple(rid for _, rid, _ in ordered)
    for action in ("allow", "block", "log"):
        for _, rid, act in ordered:
            if act == action:
                return Decision(action, rid, ids)
        if action == "block" and fail_closed:
            return Decision("block", None, ids, fail_closed)
    return Decision("allow", None, ids)
