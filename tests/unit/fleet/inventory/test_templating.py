"""Templated inventory values (edrfleet/fleet/inventory/templating.py): what deploy sees for
each variable edrfleet reads equals what a play sees in ansible-core (the reference, run at
arm's length: tests/unit/helpers/ansible_ref.py), and the failures name host, variable, file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet.fleet.deploy.preview import preview_host_policy
from edrfleet.fleet.inventory.load import InventoryError, load_inventory
from tests.unit.helpers.ansible_ref import ansible_values, needs_ansible

INVENTORY = """\
all:
  vars:
    my_mode: monitor
    base: /opt/edr
    nested: "{{ base }}/x"
  children:
    web:
      vars:
        edrfleet_install_dir: "{{ base }}/install"
      hosts:
        web1:
          edrfleet_mode: "{{ my_mode }}"
          edrfleet_x: "{{ other | default('d') }}-{{ inventory_hostname }}"
          edrfleet_list: "{{ [1, 2] + [hostvars['web2'].edrfleet_n | int] }}"
          edrfleet_unsafe: !unsafe "{{ not templated }}"
          edrfleet_once: "{{ '{{ my_mode }}' }}"
          edrfleet_chain: "{{ nested }}"
          edrfleet_groups: "{{ groups['web'] }} {{ group_names }}"
          edrfleet_num: "{{ 6 * 7 }}"
          edrfleet_str: "{{ '7' }}"
          edrfleet_filters: "{{ 'YES' | bool }} {{ (edrfleet_num > 40) | ternary('big', 'small') }}"
          edrfleet_mixed: ["{{ my_mode }}", {k: "{{ base | basename }}"}, 3]
          edrfleet_raw: "{% raw %}{{ x }}{% endraw %}"
          edrfleet_plain: just text
        web2:
          edrfleet_n: "{{ 40 + 2 }}"
          edrfleet_fact_like: "{{ edrfleet_text }}"
          edrfleet_text: !unsafe "{{ from a fact }}"
"""
READ = {"web1": ["edrfleet_mode", "edrfleet_x", "edrfleet_list", "edrfleet_unsafe",
                 "edrfleet_once", "edrfleet_chain", "edrfleet_groups", "edrfleet_num",
                 "edrfleet_str", "edrfleet_filters", "edrfleet_mixed", "edrfleet_raw",
                 "edrfleet_plain", "edrfleet_install_dir"],
        "web2": ["edrfleet_n", "edrfleet_fact_like", "edrfleet_text"]}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("templated")
    (d / "group_vars").mkdir()
    (d / "group_vars" / "web.yml").write_text('edrfleet_gv: "{{ my_mode | upper }}"\n')
    (d / "inv.yml").write_text(INVENTORY)
    return d / "inv.yml"


def test_values_are_templated_at_use_and_listed_as_written(inventory) -> None:
    inv = load_inventory(inventory)
    (web1,) = inv.select("web1")
    assert web1.vars["edrfleet_mode"] == "monitor" and web1.vars["edrfleet_num"] == 42
    assert web1.vars["edrfleet_str"] == "7"  # a string stays a string
    assert web1.vars["edrfleet_once"] == "{{ my_mode }}"  # a template's result: not again
    assert web1.vars["edrfleet_unsafe"] == "{{ not templated }}"
    assert web1.vars["edrfleet_gv"] == "MONITOR"  # group_vars too
    assert web1.vars["nested"] == "{{ base }}/x"  # not read by edrfleet: left as written
    # what ansible-inventory prints: as written
    assert inv.host_vars("web1")["edrfleet_mode"] == "{{ my_mode }}"


@needs_ansible
@pytest.mark.parametrize("host", sorted(READ))
def test_templated_values_equal_what_ansible_gives_a_play(inventory, host) -> None:
    ours = load_inventory(inventory).select(host)[0].vars
    names = READ[host] + (["edrfleet_gv"] if host == "web1" else [])
    assert {n: ours[n] for n in names} == ansible_values(inventory, host, names)


def test_an_undefined_variable_names_host_variable_and_file(tmp_path) -> None:
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web1.yml").write_text('edrfleet_mode: "{{ my_mod }}"\n')
    (tmp_path / "inv.yml").write_text("web:\n  hosts:\n    web1:\n    web2:\n")
    inv = load_inventory(tmp_path / "inv.yml")
    with pytest.raises(InventoryError) as e:
        inv.select("all")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'host_vars' / 'web1.yml'}: host web1: variable "
                          "'edrfleet_mode': template error: 'my_mod' is undefined"), msg
    assert "(fix: " in msg
    assert [h.name for h in inv.select("web2")] == ["web2"]  # other hosts are fine


def test_a_loop_of_templates_is_an_error_not_a_hang(tmp_path) -> None:
    (tmp_path / "inv.yml").write_text(
        'web:\n  hosts:\n    web1:\n      edrfleet_a: "{{ edrfleet_b }}"\n'
        '      edrfleet_b: "{{ edrfleet_a }}"\n')
    with pytest.raises(InventoryError, match="recursive loop in its templates "
                                             r"\(edrfleet_a -> edrfleet_b -> edrfleet_a\)"):
        load_inventory(tmp_path / "inv.yml").select("web1")


@needs_ansible
def test_ansible_refuses_the_same_undefined_variable(tmp_path) -> None:
    (tmp_path / "inv.yml").write_text('web:\n  hosts:\n    web1:\n      edrfleet_mode: '
                                      '"{{ my_mod }}"\n')
    failed = ansible_values(tmp_path / "inv.yml", "web1", ["edrfleet_mode"])
    assert isinstance(failed, str) and "'my_mod' is undefined" in failed


def test_a_templated_mode_reaches_the_policy(tmp_path) -> None:
    (tmp_path / "inv.yml").write_text(
        'all:\n  vars:\n    my_mode: monitor\n  hosts:\n    web1:\n'
        '      edrfleet_mode: "{{ my_mode }}"\n')
    policy = preview_host_policy(load_inventory(tmp_path / "inv.yml"), "web1", facts=False)
    assert policy.bundle["mode"] == "monitor"
