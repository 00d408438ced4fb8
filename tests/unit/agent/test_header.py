"""The Python side names the same values and layouts as bpf/edrfleet.h (checked, not trusted)."""

from __future__ import annotations

from pathlib import Path

from edrfleet.agent import ecs, engine
from edrfleet.agent.bundle_file import canonical_sha256
from edrfleet.kernel_abi import BPF_SOURCES, load_header, parse_header
from edrfleet.policy import bundle_sha256

BPF = Path(__file__).resolve().parents[3] / "bpf"
H = load_header(BPF)


def test_event_enums_in_the_schema_module_match_the_header():
    assert {
        v: k.lower() for k, v in H.enum_by_suffix("edr_event_action", "EDR_EV_").items()
    } == ecs.EVENT_ACTIONS
    assert {v: k for k, v in ecs.BACKENDS.items()} == H.enum_by_suffix(
        "edr_backend", "EDR_BACKEND_"
    )
    assert {v: k for k, v in ecs.STAGES.items()} == H.enum_by_suffix("edr_stage", "EDR_STAGE_")
    assert {v: k for k, v in ecs.REASONS.items()} == H.enum_by_suffix(
        "edr_reason", "EDR_REASON_"
    )
    flags = H.enum_by_suffix("edr_flag", "EDR_F_")
    assert flags == {
        "args_truncated": ecs.FLAG_ARGS_TRUNCATED,
        "filename_truncated": ecs.FLAG_FILENAME_TRUNCATED,
        "unscanned": ecs.FLAG_UNSCANNED,
        "cwd_truncated": ecs.FLAG_CWD_TRUNCATED,
        "cwd_unknown": ecs.FLAG_CWD_UNKNOWN,
        "fileless": ecs.FLAG_FILELESS,
        "dropped": ecs.FLAG_DROPPED,
        "stdio_inet": ecs.FLAG_STDIO_INET,
        "parent_stdio_inet": ecs.FLAG_PARENT_STDIO_INET,
        "exe_path_partial": ecs.FLAG_EXE_PATH_PARTIAL,
        "loader": ecs.FLAG_LOADER,
    }


def test_enum_values_are_unique_within_each_enum():
    for name, members in H.enums.items():
        assert len(set(members.values())) == len(members), name


def test_the_engine_takes_every_switch_and_its_default_from_the_header():
    assert set(engine.FEATURES + engine.SHAPE + engine.EVENTS) <= set(H.switches)
    caps = engine.capacity_defaults(H)
    assert caps and all(k.startswith("EDR_MAX_") or k in ("EDR_TRANS_MAX", "EDR_TRANS_PARTS")
                        for k in caps)
    # the table's parts: what the policy needs, at least 1 (the header's default is the most)
    assert engine.capacities_for({}, H) == {**caps, **{k: 0 for k in engine.FEATURES},
                                            "EDR_TRANS_PARTS": 1}
    assert engine.capacities_for({"EDR_TRANS_PARTS": 2}, H)["EDR_TRANS_PARTS"] == 2
    assert engine.scan_windows(H)[0] == H.switches["EDR_SCAN_WINDOW"] == H["EDR_ARGS_MAX"]
    # another header, other numbers: nothing in the engine repeats them
    text = (BPF / "edrfleet.h").read_text()
    text = text.replace("#define EDR_MAX_GROUPS      256", "#define EDR_MAX_GROUPS 32")
    other = parse_header(text.replace("#define EDR_ROW_BITS        20", "#define EDR_ROW_BITS 15"))
    caps = engine.capacities_for({"EDR_TRANS_MAX": 1 << 20}, other)
    assert caps["EDR_MAX_GROUPS"] == 32 and caps["EDR_TRANS_MAX"] == 1 << 15


def test_tail_call_targets_are_the_header_indexes_of_the_program_functions():
    assert engine.tail_call_targets(H, "") == [(0, b"edr_scan"), (1, b"edr_judge"),
                                               (2, b"edr_emit"), (3, b"edr_ctx")]
    assert engine.tail_call_targets(H, "lsm_") == [(0, b"edr_lsm_scan"), (1, b"edr_lsm_judge"),
                                                   (2, b"edr_lsm_emit"), (3, b"edr_lsm_ctx")]
    source = engine.bpf_text(BPF)
    for _, name in engine.tail_call_targets(H, "") + engine.tail_call_targets(H, "lsm_"):
        assert f"int {name.decode()}(void *ctx)" in source


def test_the_program_text_is_every_bpf_file_joined_header_first():
    text = engine.bpf_text(BPF)
    assert text.startswith((BPF / "edrfleet.h").read_text())
    assert "#include \"edrfleet.h\"" not in text  # one text: BCC needs no include path
    assert sorted(p.name for p in BPF.iterdir()) == sorted(BPF_SOURCES)


def test_limits_that_the_bpf_code_masks_with_are_powers_of_two():
    for key in ("EDR_ARGS_MAX", "EDR_CAND_MAX", "EDR_FILENAME_MAX", "EDR_ACCEPT_IDS",
                "EDR_GROUPS_PER_KEY", "EDR_TRANS_MAX", "EDR_CWD_DEPTH", "EDR_CWD_MAX",
                "EDR_RINGBUF_BLOCK_PAGES", "EDR_RINGBUF_LOG_PAGES"):
        v = H[key]
        assert v & (v - 1) == 0, key


def test_agent_and_compiler_compute_the_same_bundle_checksum():
    bundle = {"format": "edrfleet-bundle", "version": 1, "rules": [{"id": "é", "n": [1, 2]}]}
    assert canonical_sha256(bundle) == bundle_sha256(bundle)


def test_context_flags_and_key_bits_fit_what_the_packer_writes():
    assert H.enum_by_suffix("edr_ctx_flag", "EDR_CTX_") == {"parent": 1, "cwd": 2,
                                                            "ancestors": 4, "stdio": 8,
                                                            "cwdsym": 16}
    assert H.enum_by_suffix("edr_stdio_whose", "EDR_STDIO_") == {"self": 1, "parent": 2}
    assert H["EDR_KEY_BITS"] == 64  # u64 bit sets in "pnames", "pinodes", "dirs"


def test_matcher_switches_are_header_macros_that_default_to_compiled_in():
    for key in engine.FEATURES:
        assert H.switches[key] == 1, key


def test_a_program_without_a_matcher_the_policy_needs_does_not_fit_it():
    caps = engine.capacities_for({"EDR_MAX_RULES": 10}, H)
    assert (caps["EDR_WITH_UIDS"], caps["EDR_WITH_CTX"]) == (0, 0)
    e = object.__new__(engine.Engine)  # fits() reads capacities only; no BPF here
    e.capacities = caps
    assert e.fits({"EDR_MAX_RULES": 10, "EDR_WITH_UIDS": 0, "EDR_WITH_CTX": 0})
    assert not e.fits({"EDR_MAX_RULES": 10, "EDR_WITH_UIDS": 1, "EDR_WITH_CTX": 0})
    assert not e.fits({"EDR_MAX_RULES": 10, "EDR_WITH_UIDS": 0, "EDR_WITH_CTX": 1})
    assert engine.capacities_for({"EDR_WITH_CTX": 1}, H)["EDR_WITH_CTX"] == 1
