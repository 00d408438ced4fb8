"""edrfleet.policy.bundle: telling a bundle from a policy, its summary, the damaged-bundle error;
compile.compile_file on both kinds of file."""

from __future__ import annotations

import pytest

from edrfleet.errors import InputError
from edrfleet.policy import compile_policy, dump_bundle, load_bundle, load_policy_text
from edrfleet.policy.bundle import BundleFormatError, bundle_summary, is_bundle_text
from edrfleet.policy.compile import compile_file

POLICY = """\
version: 1
rules:
  - {id: rm-root, description: d, severity: critical, action: block,
     match: {executable: [rm], args: [{glob: "/*"}]}}
  - {id: curl-log, description: d, severity: low, action: log, match: {cmdline: '^curl '}}
"""


@pytest.fixture(scope="module")
def bundle() -> dict:
    return compile_policy(load_policy_text(POLICY))


@pytest.mark.parametrize(("text", "is_bundle"), [
    ('{"format": "edrfleet-bundle", "rules": []}', True),
    ('  \n{"format": 1}', True),
    ("version: 1\nrules: []\n", False),
    ("{version: 1, rules: []}\n", False),  # a YAML flow mapping, not JSON
    ('{"version": 1, "rules": []}', False),  # JSON, but a policy (JSON is YAML)
    ("[1, 2]", False),
])
def test_is_bundle_text(text: str, is_bundle: bool) -> None:
    assert is_bundle_text(text) is is_bundle


def test_the_summary_counts_rules_tables_and_names_the_sha(bundle: dict) -> None:
    lines = bundle_summary(bundle)
    assert lines[0] == "rules: 2 (block 1, log 1)"
    assert lines[1] == "mode: enforce, backend: auto, unscanned: block, scope: whole host"
    assert lines[2] == ("executables: 1 names, 0 paths, 1 rules for any executable (1 "
                        "prefiltered in 1 groups: they run when argv holds one of their "
                        "literals)")
    assert lines[-1] == f"sha256: {bundle['sha256']}"


def test_a_damaged_bundle_is_an_input_error_and_still_a_value_error(bundle: dict) -> None:
    text = dump_bundle(bundle).replace('"critical"', '"low"')
    with pytest.raises(BundleFormatError, match="sha256 mismatch") as info:
        load_bundle(text)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_compile_file_compiles_a_policy_and_checks_a_bundle(bundle: dict, tmp_path) -> None:
    yml, js = tmp_path / "p.yaml", tmp_path / "p.json"
    yml.write_text(POLICY)
    js.write_text(dump_bundle(bundle))
    assert compile_file(yml)["rules"] == bundle["rules"]
    assert compile_file(yml)["source"] == "p.yaml"
    assert compile_file(js) == bundle
    js.write_text(dump_bundle(bundle).replace('"critical"', '"low"'))
    with pytest.raises(BundleFormatError):
        compile_file(js)
