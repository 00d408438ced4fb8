"""The kernel <-> user contract as Python reads it: the numbers of ``bpf/edrfleet.h``, the
BPF source files in the order they are joined, whether a basename fits the name key, the
hash of a file's head the kernel keys "fsizes" with, and how the automata are laid into the
"trans" table (its width per automaton and the part each lies in).

``bpf/edrfleet.h`` is the one place where limits, policy ceilings, the ``-D`` switches with
their defaults and the enum values (tail-call indexes included) are written down; this module
parses its ``#define NAME <int or NAME>`` lines and ``enum name { A = 1, ... }`` blocks, so no
Python module keeps a second copy.  Struct layouts are not parsed here: BCC derives the ctypes
of every map key, value and the event record from the same declarations when it compiles.

Standard library only, and nothing else of edrfleet: both the agent (a zipapp of
``edrfleet/__init__.py``, this module and ``edrfleet/agent/``, reading the release's ``bpf/``
on a host) and the policy compiler (``edrfleet/policy/limits.py``, reading ``edrfleet.paths.BPF``
on the controller) import it; neither may import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HEADER_FILE = "edrfleet.h"
# The BPF program: the header, then the parts of the one text BCC compiles, in this order (BCC
# rewrites map calls only in its main file, so the parts cannot be compiled one by one).  The
# release carries exactly these files under bpf/ (edrfleet/fleet/deploy/release.py).
BPF_SOURCES = (
    HEADER_FILE,
    "edrfleet.c",    # the program's own constants, its scratch state and its maps
    "helpers.c",     # reads, bounds for the verifier, counters, scope, tail calls
    "identity.c",    # a fileless copy of a protected file, by its size
    "candidates.c",  # the candidate groups of one exec, the tail-call budget
    "context.c",     # match.parent and match.cwd
    "loader.c",      # the dynamic loader run directly is judged as its PROGRAM
    "verdict.c",     # rules against the condition bits, the verdict, the event
    "exe_path.c",    # process.executable: the real executable's path, walked in the kernel
    "scan.c",        # the DFA scan of argv and the judge per group (tail-call targets)
    "exec.c",        # backend sigkill: sched:sched_process_exec
    "lsm.c",         # backend lsm: bprm_check_security (x86-64 only)
    "guard.c",       # backend lsm: the agent, its pins and maps refuse other processes
)

_VALUE = r"(0x[0-9a-fA-F]+|\d+|EDR_\w+)u?\b"
_DEFINE = re.compile(r"^#define\s+(EDR_\w+)\s+" + _VALUE, re.M)
_SWITCH = re.compile(r"^#ifndef\s+(EDR_\w+)", re.M)
_ENUM = re.compile(r"enum\s+(\w+)\s*\{(.*?)\};", re.S)
_ENUMERATOR = re.compile(r"(EDR_\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


@dataclass(frozen=True)
class Header:
    """Parsed constants: ``defines`` by macro name, ``enums`` by enum name then member name,
    ``switches``: the ``-D`` switches (``#ifndef NAME``) and their defaults, in header order."""

    defines: dict[str, int]
    enums: dict[str, dict[str, int]] = field(default_factory=dict)
    switches: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        if name in self.defines:
            return self.defines[name]
        for members in self.enums.values():
            if name in members:
                return members[name]
        raise KeyError(f"{name} is not defined in bpf/{HEADER_FILE}")

    def enum_by_suffix(self, enum: str, prefix: str) -> dict[str, int]:
        """``enum_by_suffix("edr_action", "EDR_ACTION_")`` -> ``{"allow": 1, "log": 2, ...}``."""
        members = self.enums[enum]
        return {
            name[len(prefix):].lower(): value
            for name, value in members.items()
            if name.startswith(prefix)
        }

    @property
    def name_bytes_max(self) -> int:
        """Longest basename the kernel matches: it reads a name into EDR_NAME_MAX bytes with
        its NUL and drops a read that fills the key (the name may have been cut there)."""
        return self["EDR_NAME_MAX"] - 2

    def name_fits(self, name: str | bytes) -> bool:
        """A basename the kernel can match by name (the validator and the packer both ask)."""
        data = name.encode() if isinstance(name, str) else name
        return len(data) <= self.name_bytes_max


def parse_header(text: str) -> Header:
    """Parse the constants out of the header's text; a define may name an earlier one."""
    defines: dict[str, int] = {}
    for name, value in _DEFINE.findall(text):
        defines[name] = defines[value] if value.startswith("EDR_") else int(value, 0)
    switches = {name: defines[name] for name in _SWITCH.findall(text) if name in defines}
    code = _COMMENT.sub("", text)
    enums = {
        name: {member: int(value, 0) for member, value in _ENUMERATOR.findall(body)}
        for name, body in _ENUM.findall(code)
    }
    return Header(defines=defines, enums=enums, switches=switches)


def load_header(bpf_dir: Path) -> Header:
    return parse_header((bpf_dir / HEADER_FILE).read_text())


_FNV_OFFSET, _FNV_PRIME, _U64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def head_hash(head: bytes, head_bytes: int) -> int:
    """FNV-1a 64 over a file's first ``head_bytes`` (EDR_HEAD_BYTES) as little-endian 64-bit
    words, zero-padded: the "fsizes" key bpf/identity.c computes from linux_binprm.buf."""
    h = _FNV_OFFSET
    for i in range(0, head_bytes, 8):
        h = ((h ^ int.from_bytes(head[i:i + 8].ljust(8, b"\0"), "little")) * _FNV_PRIME) & _U64
    return h


def kernel_nclasses(classes: list[int], nclasses: int, nsym: int) -> int:
    """Columns of an automaton as the kernel holds it: a class that cwd-class symbols (the
    classes table past ``nsym``) share with a byte, BOS or EOS gets a column of its own for
    "NUL, then that symbol" (bpf/scan.c reads NUL so when the cwd has that class)."""
    return nclasses + len(set(classes[nsym:]) & set(classes[:nsym]))


def trans_parts_of(sizes: list[int], per_part: int) -> list[int]:
    """The "trans" part each automaton of ``sizes`` (entries, in bundle order) lies in: the
    part of the previous one if it still fits there, else the next (bpf/edrfleet.h,
    EDR_TRANS_PARTS).  An automaton larger than a part gets a part of its own here; the
    callers refuse it."""
    out: list[int] = []
    part, used = 0, 0
    for n in sizes:
        if used and used + n > per_part:
            part, used = part + 1, 0
        out.append(part)
        used += n
    return out
