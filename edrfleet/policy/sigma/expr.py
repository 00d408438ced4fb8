"""Conditions of a Sigma rule as boolean expressions over exec facts, and their DNF.

The backend turns a rule's condition into an expression whose leaves are `Atom` values (one
fact the kernel checks: the executable is one of these names, the command line matches this
regex, ...).  `dnf` pushes ``not`` down to the leaves (De Morgan) and expands to an OR of
ANDs; each AND becomes one edrfleet rule (edrfleet rules of a policy are ORed, the keys of one
``match`` are ANDed).  Before expanding, an OR of leaves of the same kind is merged into one
leaf (a list of executables, a regex alternation), so ``Image|endswith: [a, b]`` stays one
rule instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from edrfleet.errors import InputError
from edrfleet.policy.sigma.text import TextPattern

MAX_BRANCHES = 64  # edrfleet rules one Sigma rule may expand to


class ConditionUnsupported(InputError, ValueError):
    """The condition cannot be expressed; the message says why."""


@dataclass(frozen=True)
class Exe:
    """``field`` (executable | parent) is one of ``names`` (basenames) or ``paths``."""

    field: str
    names: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Cmd:
    """The command line matches ``regex`` (re.search); ``pattern`` when it is a Sigma string
    over the whole command line, so its negation can be built (`text.complement_regex`)."""

    regex: str
    pattern: TextPattern | None = None
    what: str = "CommandLine"


@dataclass(frozen=True)
class Arg:
    """Some argument argv[i], i >= 1, matches ``regex`` (an ``args`` entry)."""

    regex: str
    what: str = "a1"


@dataclass(frozen=True)
class OneOf:
    """``field`` (user | cwd) is one of ``values`` (cwd: prefixes)."""

    field: str
    values: frozenset[str]


@dataclass(frozen=True)
class Unknown:
    """A fact the kernel cannot check (``reason`` says why).  Under a ``not`` (a filter), it
    is assumed to hold, so the filter excludes more and the imported rule fires on a subset of
    what the Sigma rule fires on; anywhere else the rule is refused."""

    reason: str


Atom = Exe | Cmd | Arg | OneOf | Unknown


@dataclass(frozen=True)
class And:
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    arg: Expr


Expr = Atom | And | Or | Not
Literal = tuple[Atom, bool]  # (atom, positive)


def nnf(e: Expr, negate: bool = False) -> Expr:
    """Negation normal form: ``Not`` only directly above an atom."""
    if isinstance(e, Not):
        return nnf(e.arg, not negate)
    if isinstance(e, And | Or):
        args = tuple(nnf(a, negate) for a in e.args)
        flip = isinstance(e, And) == negate  # De Morgan: not(and) = or(not)
        return Or(args) if flip else And(args)
    return Not(e) if negate else e


def _merge(a: Atom, b: Atom) -> Atom | None:
    """One atom equal to ``a or b``, when both are of one mergeable kind."""
    if isinstance(a, Exe) and isinstance(b, Exe) and a.field == b.field:
        return Exe(a.field, a.names | b.names, a.paths | b.paths)
    if isinstance(a, OneOf) and isinstance(b, OneOf) and a.field == b.field:
        return OneOf(a.field, a.values | b.values)
    if isinstance(a, Arg) and isinstance(b, Arg):  # "some arg matches x or y"
        return Arg(f"{a.regex}|{b.regex}" if a.regex != b.regex else a.regex, a.what)
    if isinstance(a, Cmd) and isinstance(b, Cmd):
        return Cmd(f"{a.regex}|{b.regex}" if a.regex != b.regex else a.regex, None,
                   a.what if a.what == b.what else "CommandLine")
    return None


def merge_ors(e: Expr) -> Expr:
    """Merge the positive atoms of each OR by kind (see the module docstring)."""
    if isinstance(e, And):
        return And(tuple(merge_ors(a) for a in e.args))
    if not isinstance(e, Or):
        return e
    merged: list[Expr] = []
    for arg in (merge_ors(a) for a in e.args):
        arg_atoms = arg.args if isinstance(arg, Or) else (arg,)
        for atom in arg_atoms:
            for i, have in enumerate(merged):
                if isinstance(have, Exe | Cmd | Arg | OneOf) and isinstance(
                        atom, Exe | Cmd | Arg | OneOf):
                    joined = _merge(have, atom)
                    if joined is not None:
                        merged[i] = joined
                        break
            else:
                merged.append(atom)
    return merged[0] if len(merged) == 1 else Or(tuple(merged))


def dnf(e: Expr) -> list[list[Literal]]:
    """OR of ANDs of literals.

    Raises:
        ConditionUnsupported: more than `MAX_BRANCHES` ANDs.
    """
    return _dnf(merge_ors(nnf(e)))


def _dnf(e: Expr) -> list[list[Literal]]:
    if isinstance(e, Not):
        return [[(e.arg, False)]]  # type: ignore[list-item]
    if isinstance(e, Or):
        out = [conj for a in e.args for conj in _dnf(a)]
    elif isinstance(e, And):
        parts = [_dnf(a) for a in e.args]
        size = 1
        for p in parts:
            size *= len(p)
        if size > MAX_BRANCHES:
            raise ConditionUnsupported(f"the condition expands to {size} alternatives (at most "
                                       f"{MAX_BRANCHES} rules per Sigma rule)")
        out = [[lit for conj in combo for lit in conj] for combo in product(*parts)]
    else:
        out = [[(e, True)]]
    if len(out) > MAX_BRANCHES:
        raise ConditionUnsupported(f"the condition expands to {len(out)} alternatives (at most "
                                   f"{MAX_BRANCHES} rules per Sigma rule)")
    return out
