from __future__ import annotations

import pytest

from tests.unit.helpers.ansible_env import isolate_ansible_config


@pytest.fixture(autouse=True)
def _no_ansible_config_of_the_caller(tmp_path_factory, monkeypatch):
    return isolate_ansible_config(tmp_path_factory, monkeypatch)
