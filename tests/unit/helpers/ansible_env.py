"""Unit tests see no ansible.cfg and no ANSIBLE_* of whoever runs them: an empty config file
is named by ANSIBLE_CONFIG (a test that wants the search order removes it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def isolate_ansible_config(tmp_path_factory: pytest.TempPathFactory,
                           monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path_factory.mktemp("ansible-cfg") / "ansible.cfg"
    empty.write_text("")
    for name in [k for k in os.environ if k.startswith("ANSIBLE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ANSIBLE_CONFIG", str(empty))
    return empty
