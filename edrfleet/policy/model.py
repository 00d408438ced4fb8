"""The validated policy: plain frozen dataclasses (built by `edrfleet.policy.schema`)."""

from __future__ import annotations

from dataclasses import dataclass

EXACT_CWD = "="  # marks a match.cwd_is directory among a rule's cwds (edrfleet/agent/maps.py)


@dataclass(frozen=True)
class ArgMatcher:
    """One ``args`` entry: ``kind`` any|glob|regex; ``value`` a tuple of literals for any."""

    kind: str
    value: tuple[str, ...] | str
    line: int
    col: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    severity: str
    action: str
    executables: tuple[str, ...]  # basenames and absolute paths; () = any executable
    args: tuple[ArgMatcher, ...]
    cmdline: str | None
    uids: tuple[int, ...]  # () = any uid
    tags: tuple[str, ...]
    line: int
    col: int = 0
    cmdline_line: int = 0
    cmdline_col: int = 0
    fileless: bool = False  # holds only for an executable with no link on any filesystem
    parents: tuple[str, ...] = ()  # match.parent.executable: basenames and absolute paths
    users: tuple[str, ...] = ()  # match.user names, resolved to uids on the host (agent)
    cwds: tuple[str, ...] = ()  # match.cwd: normalized directory prefixes ('/' or no '/' end);
    # match.cwd_is: the same, marked with a leading EXACT_CWD (the cwd is that directory)
    # every cmdline regex, each must hold (``cmdline:`` may be a list); ``cmdline`` is the
    # first of them, kept for callers that know only one
    cmdlines: tuple[str, ...] = ()
    # where the rule comes from (e.g. an imported Sigma rule's id, title, author): kept for
    # credit and review, never compiled
    source: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    # match.ancestor.executable: some ancestor (parent, grandparent, ... EDR_ANCESTOR_DEPTH of
    # them) answers to one of these keys
    ancestors: tuple[str, ...] = ()
    # match.inet_stdio: "self" / "parent": whose fd 0-2 holding a network socket makes it hold
    inet_stdio: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: int
    mode: str
    backend: str
    unscanned: str
    scope_cgroups: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str
    # multi-call executables (busybox, toybox): basenames and absolute paths; such an exec is
    # also judged as the applet argv[0] (or argv[1], after the binary's own name) names
    multicall: tuple[str, ...] = ()
