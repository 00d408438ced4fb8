"""A PNG's pixels with the standard library only (zlib): enough to tell a rendered page from a
blank one.  8-bit RGB or RGBA, not interlaced (what Chromium's screenshots are)."""

from __future__ import annotations

import struct
import zlib
from collections import Counter

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel (8-bit samples)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:  # Up: one pass with no dependency along the row
        return bytearray((x + p) & 0xFF for x, p in zip(line, prev, strict=True))
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((a + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            c = prev[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(a, prev[i], c)) & 0xFF
        else:
            raise ValueError(f"PNG filter {kind}")
    return line


def pixels(data: bytes) -> tuple[int, int, Counter[tuple[int, ...]]]:
    """(width, height, how many pixels of each RGB colour)."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, head = len(_SIGNATURE), b"", None
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    if head is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _c, _f, interlace = head
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"PNG depth {depth} colour type {colour} interlace {interlace}")
    bpp = _CHANNELS[colour]
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytes(stride)
    colours: Counter[tuple[int, ...]] = Counter()
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), prev, bpp)
        colours.update(tuple(line[x:x + 3]) for x in range(0, stride, bpp))
        prev = bytes(line)
    return width, height, colours
