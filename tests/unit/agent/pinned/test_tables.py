"""Layouts recorded by the loader rebuild the same ctypes types in the resident agent."""

from __future__ import annotations

import ctypes as ct
import json

from edrfleet.agent.pinned.tables import build, describe, possible_cpus


class Inner(ct.Structure):
    _fields_ = [("dev", ct.c_uint64), ("ino", ct.c_uint64)]


class U(ct.Union):
    _fields_ = [("a", ct.c_uint32), ("b", ct.c_ubyte * 4)]


class Event(ct.Structure):
    _pack_ = 1
    _anonymous_ = ("u",)
    _fields_ = [("pid", ct.c_uint32), ("flag", ct.c_uint32, 3), ("name", ct.c_char * 16),
                ("ids", Inner * 2), ("u", U), ("g", ct.c_int32 * 3)]


def test_a_layout_survives_json_and_reads_the_same_bytes():
    rebuilt = build(json.loads(json.dumps(describe(Event))))
    assert ct.sizeof(rebuilt) == ct.sizeof(Event)
    ev = Event(pid=7, flag=5, name=b"rm")
    ev.ids[1].ino = 99
    ev.a = 0x01020304
    ev.g[2] = -1
    back = rebuilt.from_buffer_copy(bytes(ev))
    assert (back.pid, back.flag, back.name, back.ids[1].ino, back.g[2]) == (7, 5, b"rm", 99, -1)
    assert list(back.b) == [4, 3, 2, 1]  # the anonymous union's members, as on the original


def test_simple_keys_rebuild_as_themselves():
    assert build(describe(ct.c_int)) is ct.c_int
    assert build(describe(ct.c_uint64)) is ct.c_uint64


def test_possible_cpus_is_at_least_the_online_ones():
    import os

    assert possible_cpus() >= (os.cpu_count() or 1)
