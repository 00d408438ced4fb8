"""The validated shape of ``option`` and ``path`` matchers, and their canonical text (the
`ArgMatcher` value: JSON with sorted keys, so equal matchers share one condition bit)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class OptionSpec:
    """``option: {short, long, abbrev, takes}``.

    short: option letters that mean the option (``[r, R]``);
    long: long option names without ``--``;
    abbrev: the shortest prefix of a long name that getopt_long is taken to accept;
    takes: the program's options that take a separate required value (letters and names):
        their value is not an option, and a ``--`` given as their value does not end options.
    """

    short: tuple[str, ...] = ()
    long: tuple[str, ...] = ()
    abbrev: int = 1
    takes: tuple[str, ...] = ()

    def text(self) -> str:
        return json.dumps({"short": list(self.short), "long": list(self.long),
                           "abbrev": self.abbrev, "takes": list(self.takes)}, sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> OptionSpec:
        d = json.loads(text)
        return cls(tuple(d["short"]), tuple(d["long"]), int(d["abbrev"]), tuple(d["takes"]))


@dataclass(frozen=True)
class PathSpec:
    """``path: [/etc, ...]`` or ``path: {is: [...], below: true}``: absolute, canonical paths;
    ``below``: anything under them matches too; ``deep``: an argument with more ``..``
    components than the automaton can place (`paths.DEEP_DOTDOT`) matches too — set for
    ``block``/``log`` rules (fail closed), cleared for ``allow`` rules (never allow more)."""

    paths: tuple[str, ...]
    below: bool = False
    deep: bool = True

    def text(self) -> str:
        return json.dumps({"is": list(self.paths), "below": self.below, "deep": self.deep},
                          sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> PathSpec:
        d = json.loads(text)
        return cls(tuple(d["is"]), bool(d["below"]), bool(d.get("deep", False)))

    def for_action(self, action: str) -> PathSpec:
        """The spec as a rule of this action uses it (an allow rule never fails closed)."""
        return PathSpec(self.paths, self.below, action != "allow")
