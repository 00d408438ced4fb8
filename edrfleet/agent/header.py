"""Constants of the kernel <-> user contract, read from ``bpf/edrfleet.h``.

The header is the one place where limits and enum values are written down; this module parses
its ``#define NAME <int>`` lines and ``enum name { A = 1, ... }`` blocks so the agent never keeps
a second copy.  Struct layouts are not parsed here: BCC derives the ctypes of every map key,
value and the event record from the same declarations when it compiles the program.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_DEFINE = re.compile(r"^#define\s+(EDR_\w+)\s+(0x[0-9a-fA-F]+|\d+)u?\b", re.M)
_ENUM = re.compile(r"enum\s+(\w+)\s*\{(.*?)\};", re.S)
_ENUMERATOR = re.compile(r"(EDR_\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


@dataclass(frozen=True)
class Header:
    """Parsed constants: ``defines`` by macro name, ``enums`` by enum name then member name."""

    defines: dict[str, int]
    enums: dict[str, dict[str, int]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        if name in self.defines:
            return self.defines[name]
        for members in self.enums.values():
            if name in members:
                return members[name]
        raise KeyError(f"{name} is not defined in bpf/edrfleet.h")

    def enum_by_suffix(self, enum: str, prefix: str) -> dict[str, int]:
        """``enum_by_suffix("edr_action", "EDR_ACTION_")`` -> ``{"allow": 1, "log": 2, ...}``."""
        members = self.enums[enum]
        return {
            name[len(prefix):].lower(): value
            for name, value in members.items()
            if name.startswith(prefix)
        }


def parse_header(text: str) -> Header:
    """Parse the constants out of the header's text (comments removed first)."""
    defines = {name: int(value, 0) for name, value in _DEFINE.findall(text)}
    code = _COMMENT.sub("", text)
    enums = {
        name: {member: int(value, 0) for member, value in _ENUMERATOR.findall(body)}
        for name, body in _ENUM.findall(code)
    }
    return Header(defines=defines, enums=enums)


def load_header(bpf_dir: Path) -> Header:
    return parse_header((bpf_dir / "edrfleet.h").read_text())
