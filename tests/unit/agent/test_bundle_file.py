"""Reading a compiled bundle on the host: the sha256 holds for canonical and other layouts."""

from __future__ import annotations

import json

import pytest

from edrfleet.agent.bundle_file import BundleError, read_bundle
from edrfleet.policy import compile_policy, dump_bundle
from tests.unit.helpers.policy_helpers import policy_of_rules, rule_yaml


@pytest.fixture()
def bundle() -> dict:
    return compile_policy(policy_of_rules(
        rule_yaml("rm-rf", match="{executable: [rm], args: [{any: ['-rf']}]}")))


def test_a_canonical_file_reads_back_equal(tmp_path, bundle):
    path = tmp_path / "b.json"
    path.write_text(dump_bundle(bundle))
    assert read_bundle(path) == bundle


def test_a_reformatted_file_is_checked_on_its_canonical_form(tmp_path, bundle):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle, indent=2))
    assert read_bundle(path) == bundle


@pytest.mark.parametrize("layout", ["canonical", "indented"])
def test_an_edited_file_fails_its_sha256(tmp_path, bundle, layout):
    bundle["rules"][0]["action"] = "log"  # sha256 left as it was
    path = tmp_path / "b.json"
    path.write_text(dump_bundle(bundle) if layout == "canonical" else json.dumps(bundle, indent=1))
    with pytest.raises(BundleError, match="sha256 does not match"):
        read_bundle(path)


def test_a_second_sha256_member_is_not_taken_for_the_bundles_own(tmp_path, bundle):
    bundle["rules"][0]["sha256"] = bundle["sha256"]  # content changed: must not pass
    path = tmp_path / "b.json"
    path.write_text(dump_bundle(bundle))
    with pytest.raises(BundleError, match="sha256 does not match"):
        read_bundle(path)
