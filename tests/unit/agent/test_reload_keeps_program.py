"""A reload whose new program cannot be built or attached keeps the running one in force and
reports last_reload.ok false (issue 12), instead of ending the agent.  Logic only: the
engine is a stand-in."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from edrfleet.agent.engine import EngineError
from edrfleet.agent.run import Agent, Options


class OldEngine:
    backend = "sigkill"
    detached = False

    def fits(self, needs) -> bool:
        return False  # the new policy needs bigger maps: a second program

    def detach(self) -> None:
        self.detached = True


def test_a_new_program_that_fails_to_load_keeps_the_old_one(tmp_path: Path, monkeypatch):
    bundle = {"sha256": "b" * 64, "rules": [], "mode": "enforce", "executables": {}}
    agent = Agent(Options(policy=tmp_path / "p.yaml", spool=tmp_path / "spool"),
                  load_bundle=lambda _path: bundle)
    old = OldEngine()
    agent.engine, agent.gen, agent.offsets = old, 3, {}
    in_force = zlib.compress(json.dumps({"sha256": "a" * 64}).encode())  # kept compressed
    agent.in_force = in_force
    agent.status.update(policy_sha256="a" * 64, rules=5, mode="enforce", generation=3,
                        state="enforcing")
    monkeypatch.setattr(agent, "_pack", lambda b: type("P", (), {"needs": lambda s, h: {}})())

    def fail(*_args):
        raise EngineError("load programs (verifier): Permission denied")

    monkeypatch.setattr(agent, "_new_engine", fail)
    agent.reload()
    assert agent.engine is old and not old.detached
    assert agent.gen == 3
    assert agent.status["last_reload"]["ok"] is False
    assert "Permission denied" in agent.status["last_reload"]["error"]
    assert (agent.status["policy_sha256"], agent.status["rules"], agent.status["generation"],
            agent.status["state"]) == ("a" * 64, 5, 3, "enforcing")
    # a hand-over after it (BCC was loaded for the new program) passes on the bundle in force
    assert agent.bundle == {"sha256": "a" * 64} and agent.in_force is in_force
