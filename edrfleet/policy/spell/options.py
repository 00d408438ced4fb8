"""``option``: one option of a getopt / getopt_long program, in every spelling it accepts.

The argument is one of argv[1:] before the first ``--`` that ends options, and is either

* a short-option cluster ``-`` + letters + one of ``short`` (``-r``, ``-fr``, ``-vRf``): the
  letters before it are taken to be flags; a letter of ``takes`` ends the cluster (the rest
  is its value), so ``-Cr`` with ``takes: [C]`` is not ``-r``;
* ``--`` + a prefix of a ``long`` name at least ``abbrev`` bytes long, alone or with ``=value``
  (``--recursive``, ``--recur``, ``--r=x``).

GNU getopt permutes, so options after operands count.  A ``--`` that is the separate value of
an option of ``takes`` (``tar -f -- --remove-files``) does not end options.  What the matcher
cannot know without the program's whole option table: whether a prefix is ambiguous (getopt
then refuses the command, so matching it costs nothing) or belongs to another option sharing
the first ``abbrev`` bytes (raise ``abbrev``), and whether an argument is the value of an
option not listed in ``takes`` (it is then read as an option: a block rule matches more,
never less; an allow rule should list ``takes`` in full).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edrfleet.policy.regex.parse import EMPTY, Node
from edrfleet.policy.spell.ast import (
    ARG_END,
    ARGV_START,
    BYTES,
    alt,
    bits,
    cat,
    lit,
    opt,
    plus,
    prefixes,
    star,
    sym,
)
from edrfleet.policy.spell.spec import OptionSpec

ALNUM = bits(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
DASH = bits(b"-")
NUL = 1


def _split_takes(spec: OptionSpec) -> tuple[bytes, list[bytes]]:
    letters = b"".join(t.encode() for t in spec.takes if len(t) == 1)
    return letters, [t.encode() for t in spec.takes if len(t) > 1]


def _not_end_of_options() -> Node:
    """Any argument but exactly ``--``."""
    rest = star(sym(BYTES))
    return alt(EMPTY, cat(sym(BYTES & ~DASH), rest),
               cat(lit(b"-"), opt(alt(cat(sym(BYTES & ~DASH), rest),
                                      cat(lit(b"-"), plus(sym(BYTES)))))))


def _wants_value(letters: bytes, names: list[bytes]) -> Node | None:
    """An option of ``takes`` whose value is the next argument."""
    forms = []
    if letters:
        forms.append(cat(lit(b"-"), star(sym(ALNUM & ~bits(letters))), sym(bits(letters))))
    forms += [cat(lit(b"--"), prefixes(name, 1)) for name in names]
    return alt(*forms) if forms else None


def _target(spec: OptionSpec, letters: bytes) -> Node:
    forms = []
    if spec.short:
        flags = ALNUM & ~bits(letters)
        forms.append(cat(lit(b"-"), star(sym(flags)), sym(bits("".join(spec.short).encode())),
                         star(sym(BYTES))))
    for name in spec.long:
        forms.append(cat(lit(b"--"), prefixes(name.encode(), spec.abbrev),
                         opt(cat(lit(b"="), star(sym(BYTES))))))
    return alt(*forms)


def option_ast(spec: OptionSpec) -> Node:
    """The condition over the whole argv stream (BOS argv0 NUL argv1 ... EOS)."""
    letters, names = _split_takes(spec)
    prior = _not_end_of_options()
    valued = _wants_value(letters, names)
    if valued is not None:
        prior = alt(prior, cat(valued, sym(NUL), star(sym(BYTES))))
    return cat(ARGV_START, star(sym(BYTES)), star(cat(sym(NUL), prior)), sym(NUL),
               _target(spec, letters), ARG_END)


def _target_re(spec: OptionSpec, letters: bytes) -> re.Pattern[bytes]:
    flags = bytes(c for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  if c not in letters)
    forms = []
    if spec.short:
        forms.append(b"-[" + re.escape(flags) + b"]*[" +
                     re.escape("".join(spec.short).encode()) + b"].*")
    for name in spec.long:
        n = name.encode()
        short = max(1, min(spec.abbrev, len(n)))
        alts = b"|".join(re.escape(n[:k]) for k in range(short, len(n) + 1))
        forms.append(b"--(?:" + alts + b")(?:=.*)?")
    return re.compile(b"|".join(forms), re.DOTALL)


def option_holds(spec: OptionSpec, args: Sequence[bytes]) -> bool:
    """The oracle: argv[1:] read as the module docstring says, without automata."""
    letters, names = _split_takes(spec)
    target = _target_re(spec, letters)
    valued = re.compile(b"|".join(
        ([b"-[" + re.escape(bytes(c for c in range(256) if ALNUM >> c & 1 and c not in letters))
          + b"]*[" + re.escape(letters) + b"]"] if letters else []) +
        [b"--(?:" + b"|".join(re.escape(n[:k]) for k in range(1, len(n) + 1)) + b")"
         for n in names]) or b"(?!)", re.DOTALL)
    reach = {0}
    for i, arg in enumerate(args):
        if i not in reach:
            continue
        if target.fullmatch(arg):
            return True
        if arg != b"--":
            reach.add(i + 1)
        if valued.fullmatch(arg):
            reach.add(i + 2)
    return False
