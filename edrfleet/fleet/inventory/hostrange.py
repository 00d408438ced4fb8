"""Inventory host keys: ``name:port`` and ``[begin:end(:step)]`` ranges, as Ansible reads them.

>>> expand_range("web[01:03]")
['web01', 'web02', 'web03']
>>> expand_range("db-[a:c]")
['db-a', 'db-b', 'db-c']
>>> expand_range("n[0:10:5]")
['n0', 'n5', 'n10']
>>> split_port("web[1:2].example.com:2222")
('web[1:2].example.com', 2222)
>>> split_port("[fe80::1]:22"), split_port("fe80::1")
(('fe80::1', 22), ('fe80::1', None))
"""

from __future__ import annotations

import ipaddress
import re
import string

from edrfleet.errors import InputError

# A range as Ansible's address parser accepts it inside a name: one letter to one letter, or
# digits to digits, and an optional numeric step.
_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.I)
# A DNS-like label (underscores allowed, no leading '-', no trailing '-' or '_'), ranges allowed.
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.I)
_BRACKETED_PORT = re.compile(r"\[(.+)\]:([0-9]+)")
_HOST_PORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")


class RangeError(InputError, ValueError):
    """A ``[begin:end:step]`` range that does not expand; the message says why."""


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(_HEX_RANGE.sub("0", text))
    except ValueError:
        return False
    return True


def parse_address(text: str) -> tuple[str, int | None] | None:
    """``(host, port)`` when ``text`` is a host name, IPv4 or IPv6 address (ranges allowed) with
    an optional ``:port`` (``[host]:port`` for IPv6); None when it is none of those."""
    port = None
    m = _BRACKETED_PORT.fullmatch(text) or _HOST_PORT.fullmatch(text)
    if m:
        text, port = m.group(1), int(m.group(2))
    if _HOSTNAME.fullmatch(text) or _is_ipv6(text):
        return text, port
    return None


def split_port(key: str) -> tuple[str, int | None]:
    """The host part and port of an inventory host key. Like Ansible, a key that is not a valid
    address is kept whole as the name (so ``'odd name:22'`` is one host, without a port)."""
    parsed = parse_address(key)
    return parsed if parsed is not None else (key, None)


def _bounds(body: str) -> tuple[str, str, int]:
    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise RangeError(f"range [{body}] must be [begin:end] or [begin:end:step]")
    beg, end = parts[0] or "0", parts[1]
    if not end:
        raise RangeError(f"range [{body}] has no end value")
    try:
        step = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise RangeError(f"range [{body}] has a step that is not a number") from None
    if step <= 0:
        raise RangeError(f"range [{body}] needs a step of 1 or more")
    return beg, end, step


def _values(body: str) -> list[str]:
    beg, end, step = _bounds(body)
    if len(beg) == 1 and len(end) == 1 and beg.isascii() and beg.isalpha() \
            and end.isascii() and end.isalpha():
        letters = string.ascii_letters  # Ansible's order: a..z then A..Z
        i_beg, i_end = letters.index(beg), letters.index(end)
        if i_beg > i_end:
            raise RangeError(f"range [{body}] must have begin <= end")
        return list(letters[i_beg:i_end + 1:step])
    if not (beg.isdigit() and end.isdigit()):
        raise RangeError(f"range [{body}] must go from a number to a number or from one "
                         "letter to one letter")
    width = 0
    if beg[0] == "0" and len(beg) > 1:  # a leading zero asks for zero-padded names
        width = len(beg)
        if len(end) != width:
            raise RangeError(f"range [{body}] must write begin and end with the same number "
                             "of digits when zero-padded")
    if int(beg) > int(end):
        raise RangeError(f"range [{body}] must have begin <= end")
    return [str(i).zfill(width) for i in range(int(beg), int(end) + 1, step)]


def expand_range(pattern: str) -> list[str]:
    """Every name a host key stands for: each ``[..]`` range expanded, left to right.

    Raises:
        RangeError: a range that cannot be expanded (the message says why).
    """
    if "[" not in pattern:
        return [pattern]
    head, _, rest = pattern.partition("[")
    body, sep, tail = rest.partition("]")
    if not sep:
        raise RangeError(f"'[' without a closing ']' in {pattern!r}")
    names: list[str] = []
    for value in _values(body):
        names.extend(expand_range(head + value + tail))
    return names
