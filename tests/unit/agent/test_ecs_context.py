"""Event fields of the context matchers: technique ids from tags, cwd, parent, user name."""

from __future__ import annotations

import ctypes as ct

from edrfleet.agent import ecs


class FakeEvent(ct.Structure):  # the fields context_fields reads, as the header declares them
    _fields_ = [("uid", ct.c_uint32), ("flags", ct.c_uint32), ("cwd_len", ct.c_uint16),
                ("parent_name", ct.c_char * 64), ("cwd", ct.c_char * 512)]


def event(cwd: bytes, flags: int = 0, parent: bytes = b"bash", uid: int = 0) -> FakeEvent:
    return FakeEvent(uid=uid, flags=flags, cwd_len=len(cwd), parent_name=parent, cwd=cwd)


def test_attack_tags_become_technique_ids_once_and_upper_case():
    tags = ["attack.t1070.003", "attack.defense-evasion", "ATTACK.T1059", "attack.t1059",
            "cve.2021.1234", "attack.t10700"]
    assert ecs.technique_ids(tags) == ["T1070.003", "T1059"]


def test_context_fields_name_parent_cwd_and_user():
    out = ecs.context_fields(event(b"/tmp/x"), "/usr/bin/bash")
    assert out["process.parent.executable"] == "/usr/bin/bash"
    assert out["process.parent.name"] == "bash"
    assert out["process.working_directory"] == "/tmp/x"
    assert out["user.name"] == "root"


def test_a_cwd_deeper_than_the_walk_is_shown_as_its_tail():
    out = ecs.context_fields(event(b"/d/d", flags=ecs.FLAG_CWD_UNKNOWN), "")
    assert out["process.working_directory"] == ".../d/d"
    assert out["process.parent.executable"] == "bash"  # /proc gone: the kernel's basename


def test_an_unknown_uid_has_no_user_name():
    assert "user.name" not in ecs.context_fields(event(b"/", uid=4_000_000_000), "")
