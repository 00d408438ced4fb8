"""One AND of literals (`expr.dnf`) to the ``match`` block of one edrfleet rule.

Negated literals are folded in where that is exact:

- ``not Image`` removes names from the executables the AND already requires (``Image|endswith:
  [/service, /systemctl]`` and not ``Image|endswith: /systemctl`` = ``executable: [service]``);
- ``not CommandLine`` becomes the complement regex of the value (`text.complement_regex`),
  one more ``cmdline`` entry that must hold.

Anything else is refused with the reason (`ConditionUnsupported`).
"""

from __future__ import annotations

from typing import Any

from edrfleet.errors import InputError
from edrfleet.policy.sigma.expr import Arg, Cmd, ConditionUnsupported, Exe, Literal, OneOf
from edrfleet.policy.sigma.text import PatternUnsupported, complement_regex

MATCH_KEY = {"executable": "executable", "parent": "parent", "user": "user", "cwd": "cwd"}


class Unsatisfiable(InputError):
    """The AND can never hold (e.g. two different executables): it yields no rule."""


def _exe_set(field: str, pos: list[Exe], neg: list[Exe]) -> list[str] | None:
    if not pos:
        if neg:
            raise ConditionUnsupported(f"'not {_sigma(field)}' without a positive "
                                       f"{_sigma(field)} (the kernel matches executables by "
                                       "name or file, it cannot match all but some)")
        return None
    names, paths = set(pos[0].names), set(pos[0].paths)
    for other in pos[1:]:
        if paths or other.paths:
            raise ConditionUnsupported(f"two {_sigma(field)} conditions that must both hold "
                                       "name a path; write one")
        names &= other.names
    for other in neg:
        if other.paths:
            raise ConditionUnsupported(f"'not {_sigma(field)}' names a path")
        names -= other.names
    if not names and not paths:
        raise Unsatisfiable
    return sorted(names) + sorted(paths)


def _sigma(field: str) -> str:
    return {"executable": "Image", "parent": "ParentImage", "user": "User",
            "cwd": "CurrentDirectory"}.get(field, field)


def build_match(conj: list[Literal]) -> dict[str, Any]:
    """The ``match`` mapping of one AND.

    Raises:
        ConditionUnsupported: a literal that has no exact form.
        Unsatisfiable: the AND never holds.
    """
    exes: dict[str, tuple[list[Exe], list[Exe]]] = {"executable": ([], []), "parent": ([], [])}
    oneof: dict[str, list[OneOf]] = {"user": [], "cwd": [], "auditd.record": [],
                                     "auditd.syscall": []}
    cmdlines: list[str] = []
    args: list[dict[str, str]] = []
    negated: list[Cmd] = []
    for atom, positive in conj:
        if isinstance(atom, Exe):
            exes[atom.field][0 if positive else 1].append(atom)
        elif isinstance(atom, OneOf):
            if not positive:
                raise ConditionUnsupported(f"'not {_sigma(atom.field)}' (the kernel matches "
                                           "a list of values, not all but some)")
            oneof[atom.field].append(atom)
        elif isinstance(atom, Arg):
            if not positive:
                raise ConditionUnsupported(f"'not {atom.what}' (no argument may match: the "
                                           "kernel has no such condition)")
            if {"regex": atom.regex} not in args:
                args.append({"regex": atom.regex})
        elif positive:
            if atom.regex not in cmdlines:
                cmdlines.append(atom.regex)
        else:
            negated.append(atom)
    cmdlines.extend(_negated(negated))
    match: dict[str, Any] = {}
    for field, (pos, neg) in exes.items():
        values = _exe_set(field, pos, neg)
        if values is not None:
            match[MATCH_KEY[field]] = values if field == "executable" else {"executable": values}
    record, syscall = oneof.pop("auditd.record"), oneof.pop("auditd.syscall")
    if record and not syscall:
        raise ConditionUnsupported("an auditd SYSCALL record without SYSCALL: execve (the "
                                   "kernel sees execs only)")
    for field, atoms in oneof.items():
        if not atoms:
            continue
        values_set = set(atoms[0].values)
        for other in atoms[1:]:
            if field == "cwd" or any(v.isdigit() for v in values_set | other.values):
                raise ConditionUnsupported(f"two {_sigma(field)} conditions that must both "
                                           "hold (a name and a uid cannot be compared here)")
            values_set &= other.values
        if not values_set:
            raise Unsatisfiable
        match[MATCH_KEY[field]] = [int(v) if v.isdigit() else v for v in sorted(values_set)]
    if args:
        match["args"] = args
    if cmdlines:
        match["cmdline"] = cmdlines[0] if len(cmdlines) == 1 else cmdlines
    if not match:
        raise ConditionUnsupported("nothing left to match: the rule would match every exec")
    return match


def _negated(atoms: list[Cmd]) -> list[str]:
    """Regexes for "none of these values matches": one complement of all of them (an automaton
    the size of their sum), else one per value when that is too large."""
    if not atoms:
        return []
    for atom in atoms:
        if atom.pattern is None:
            raise ConditionUnsupported(f"'not {atom.what}' with a regex or a list of argument "
                                       "values (only plain values can be negated without "
                                       "look-around)")
    patterns = [a.pattern for a in atoms]
    try:
        return [_complement(patterns)]
    except ConditionUnsupported:
        if len(atoms) == 1:
            raise
    return [_complement([p]) for p in patterns]


def _complement(patterns: list[Any]) -> str:
    try:
        regex = complement_regex(patterns)
    except PatternUnsupported as exc:
        raise ConditionUnsupported(f"'not CommandLine': {exc}") from None
    if regex is None:
        raise Unsatisfiable
    return regex
