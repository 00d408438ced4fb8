"""Transport's logic that needs no host: quoting of argv, refusals before connecting."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import pytest

from edrfleet.fleet.transport import Transport, Unreachable


@dataclass
class H:
    name: str
    vars: dict = field(default_factory=dict)


HOSTILE = ["it's", '"', "$(reboot)", "`id`", "a;b|c&d", "x\ny", "*", "", " ", "\\", "!$"]


def test_command_line_quotes_every_word_so_sh_splits_it_back(tmp_path):
    t = Transport(H("h", {"ansible_user": "ops", "ansible_become": True}), tmp_path)
    line = t.command_line(["printf", *HOSTILE])
    assert shlex.split(line) == ["sudo", "-n", "--", "printf", *HOSTILE]


@pytest.mark.parametrize("argv, message", [
    (["echo", "a\0b"], "NUL"),
    ("echo hi", "non-empty list"),
    ([], "non-empty list"),
    (["echo", b"bytes"], "not a string"),
])
def test_command_line_refuses_what_cannot_be_sent_intact(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        Transport(H("h"), tmp_path).command_line(argv)


def test_a_missing_key_file_makes_the_host_unreachable_without_connecting(tmp_path):
    t = Transport(H("h", {"ansible_host": "192.0.2.1",
                          "ansible_ssh_private_key_file": str(tmp_path / "nokey")}), tmp_path)
    with pytest.raises(Unreachable, match="nokey does not exist"):
        t.run(["true"])
