"""Per-host rendering and compiling: errors name host, rule and fix; caches never change the
result."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet import paths
from edrfleet.fleet.deploy.hostpolicy import (
    CompileCache,
    HostPolicyError,
    compiler_version,
    host_policy,
    render_host_policy,
)
from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.policy import bundle_sha256, compile_policy, dump_bundle, load_policy_text

BAD_RULE = {"id": "bad-regex", "description": "x", "severity": "low", "action": "block",
            "match": {"executable": ["rm"], "args": [{"regex": "(unclosed"}]}}
SMALL = "version: 1\nmode: {{ edrfleet_mode }}\nrules: []\n"


def test_bad_regex_names_host_rule_and_fix(tmp_path: Path) -> None:
    with pytest.raises(HostPolicyError) as err:
        host_policy(CompileCache(tmp_path), {"edrfleet_extra_rules": [BAD_RULE]}, "web7", {})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("host web7: ") and "rule 'bad-regex'" in msg and "(fix: " in msg


def test_undefined_variable_names_host_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml.j2").write_text("version: 1\n{{ nope }}\n")
    with pytest.raises(HostPolicyError, match=r"policy.yaml.j2:2: .*'nope'.* host db1"):
        render_host_policy({}, "db1", {}, template_dir=tmp_path)


def test_templates_see_facts_and_magic_names(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml.j2").write_text(
        "{{ inventory_hostname }} {{ group_names | join(',') }} "
        "{{ edrfleet_facts.kernel_release }}\n")
    text = render_host_policy({}, "h1", {"kernel_release": "6.1"}, ("all", "web", "eu"),
                              template_dir=tmp_path)
    assert text == "h1 eu,web 6.1\n"


def test_hosts_differing_by_scope_share_a_compile_and_get_their_own_sha(tmp_path: Path) -> None:
    c = CompileCache(tmp_path / "cache")
    hv = {"edrfleet_extra_rules": [LAB_CANARY_RULE]}
    a = host_policy(c, hv | {"edrfleet_scope_cgroups": ["/lab/a"]}, "a", {})
    b = host_policy(c, hv | {"edrfleet_scope_cgroups": ["/lab/b"]}, "b", {})
    assert len(c._by_rules) == 1  # one compile for both
    other_lab = CompileCache(tmp_path / "cache").compile("c", a.yaml_text.replace("/lab/a", "/l/c"))
    assert other_lab.bundle["scope"] == {"cgroups": ["/l/c"]}  # from the rules cache on disk
    direct = compile_policy(load_policy_text(b.yaml_text, "policy.yaml"))
    assert b.bundle == direct | {"sha256": b.sha256}  # same bundle as compiling b alone
    assert b.sha256 == bundle_sha256(b.bundle) != a.sha256
    assert b.bundle_json == dump_bundle(b.bundle)  # the spliced text is the canonical one
    assert a.bundle["scope"] == {"cgroups": ["/lab/a"]}
    again = CompileCache(tmp_path / "cache").compile("b", b.yaml_text)  # from the disk cache
    assert again.bundle_json == b.bundle_json and again.file_sha256 == b.file_sha256
    assert again.sha256 == b.sha256 and again.bundle == b.bundle


def test_a_changed_kernel_header_never_reuses_a_cached_bundle(tmp_path, monkeypatch):
    # the compiler reads its limits from bpf/edrfleet.h: the cache key must cover it
    before = compiler_version()
    (tmp_path / "edrfleet.h").write_text((paths.BPF / "edrfleet.h").read_text() + "\n")
    monkeypatch.setattr(paths, "BPF", tmp_path)
    assert compiler_version() != before
