"""edrfleet.agent.pinned.selfguard: what the agent says when there is no guard, the stop
request of `agent disarm`, and the refusal event (the kernel side is proven in
tests/vm/test_lsm_guard.py: this host's kernel refuses BPF LSM)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from edrfleet.agent import ecs
from edrfleet.agent.pinned import selfguard
from edrfleet.kernel_abi import load_header

BPF_DIR = Path(__file__).resolve().parents[4] / "bpf"


def _engine(backend: str, maps=(), links=()) -> SimpleNamespace:
    return SimpleNamespace(backend=backend, map_fds=lambda: {m: -1 for m in maps},
                           links={n: -1 for n in links}, guard_why="")


def test_on_the_sigkill_backend_the_guard_is_off_and_says_why(tmp_path):
    g = selfguard.SelfGuard(str(tmp_path))
    st = g.arm(_engine("sigkill"), "'bpf' is not in the active LSMs (lockdown,capability)")
    assert st == {"on": False, "refused": {},
                  "why": "backend sigkill: 'bpf' is not in the active LSMs (lockdown,capability)"}
    assert g.tick("h", "1") == []


def test_after_a_hand_over_the_loading_image_s_reason_is_kept(tmp_path):
    g = selfguard.SelfGuard(str(tmp_path))
    st = g.arm(_engine("sigkill"), "", {"on": False, "why": "backend sigkill: no bpf LSM"})
    assert st["why"] == "backend sigkill: no bpf LSM"


def test_an_lsm_program_without_the_guard_s_links_is_not_armed(tmp_path):
    g = selfguard.SelfGuard(str(tmp_path))
    eng = _engine("lsm", maps=("guard_self", "guard_objs", "guard_log"), links=("lsm", "exec"))
    eng.guard_why = "the guard's programs did not load: Invalid argument"
    assert g.arm(eng, "") == {"on": False, "refused": {}, "why": eng.guard_why}


def test_the_stop_request_holds_while_its_disarm_lives_and_a_stale_one_goes(tmp_path):
    g = selfguard.SelfGuard(str(tmp_path))
    assert not g.stop_requested()
    selfguard.request_stop(str(tmp_path))  # written by this (live) process
    request = tmp_path / selfguard.STOP_REQUEST
    assert request.stat().st_mode & 0o077 == 0
    # read, not consumed: an agent handing over to its resident image must still see it
    assert g.stop_requested() and g.stop_requested()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: a disarm killed midway
    request.write_text(f"{dead.pid} 0.0\n")
    assert not g.stop_requested() and not request.exists()


def test_the_refusal_event_is_an_ecs_alert_naming_the_caller():
    ev = selfguard.refusal_event("signal", 3, 4242, "bash", 9, "web1", "1.2.3")
    flat = ecs.flatten(ev)
    assert flat["event.action"] == "self-protection" and flat["event.kind"] == "alert"
    assert flat["rule.id"] == selfguard.RULE_ID and flat["rule.name"] == "signal"
    assert (flat["process.pid"], flat["process.name"]) == (4242, "bash")
    assert ev["edrfleet"]["refused"] == {"what": "signal", "count": 3, "signal": 9}
    assert "3x" in ev["message"] and "pid 4242" in ev["message"]


def test_the_kinds_follow_the_header_s_enum():
    header = load_header(BPF_DIR)
    kinds = header.enum_by_suffix("edr_guard_kind", "EDR_GUARD_")
    assert [k for k, _ in sorted(kinds.items(), key=lambda kv: kv[1]) if k != "max"] == \
        list(selfguard.KINDS)
    assert kinds["max"] == len(selfguard.KINDS)
    objs = header.enum_by_suffix("edr_guard_obj", "EDR_GOBJ_")
    assert (objs["map"], objs["prog"], objs["link"], objs["file"], objs["dir"]) == \
        (selfguard.GOBJ_MAP, selfguard.GOBJ_PROG, selfguard.GOBJ_LINK, selfguard.GOBJ_FILE,
         selfguard.GOBJ_DIR)
