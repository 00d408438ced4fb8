"""The release carries exactly the agent and every file of the BPF program, from one list."""

from __future__ import annotations

import io
import zipfile

from edrfleet import paths
from edrfleet.agent.release_check import MANIFEST, read_manifest
from edrfleet.fleet.deploy.release import FILES, build_release
from edrfleet.kernel_abi import BPF_SOURCES


def test_the_release_holds_every_bpf_file_of_the_one_list():
    release = build_release()
    assert tuple(release.files) == FILES == ("agent.pyz", *(f"bpf/{n}" for n in BPF_SOURCES),
                                             MANIFEST)
    # nothing in bpf/ is left out of the list (and so out of releases and host facts)
    assert sorted(p.name for p in paths.BPF.iterdir()) == sorted(BPF_SOURCES)
    for name in BPF_SOURCES:
        assert release.files[f"bpf/{name}"] == (paths.BPF / name).read_bytes()


def test_the_zipapp_carries_the_contract_parser_the_agent_imports():
    data = build_release().files["agent.pyz"]
    names = zipfile.ZipFile(io.BytesIO(data[data.index(b"PK"):])).namelist()
    assert "edrfleet/kernel_abi.py" in names and "edrfleet/agent/engine.py" in names
    assert not any(n.startswith(("edrfleet/policy/", "edrfleet/fleet/")) for n in names)


def test_the_same_sources_give_the_same_release_id():
    assert build_release().id == build_release().id


def test_the_manifest_names_every_other_file_with_its_sha256(tmp_path):
    import hashlib

    release = build_release()
    (tmp_path / MANIFEST).write_bytes(release.files[MANIFEST])
    assert read_manifest(tmp_path / MANIFEST) == {
        n: hashlib.sha256(d).hexdigest() for n, d in release.files.items() if n != MANIFEST}
