"""Smoke check of compile time on the synthetic 1 000-rule / 200-regex policy.

The real measurement is ``bench/compile_policy.py``; this bound is generous on purpose.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from edrfleet.policy import compile_policy, load_policy_text

BENCH = Path(__file__).resolve().parents[3] / "bench" / "compile_policy.py"


def test_a_thousand_rules_with_two_hundred_regexes_compile_quickly():
    spec = importlib.util.spec_from_file_location("bench_compile_policy", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.synthetic_policy_text(1000, 200)
    assert text.count("regex:") + text.count("cmdline:") == 200
    start = time.perf_counter()
    bundle = compile_policy(load_policy_text(text, "synthetic.yaml"))
    elapsed = time.perf_counter() - start
    assert len(bundle["rules"]) == 1000
    assert elapsed < 20, f"compiling took {elapsed:.1f} s (target: 2 s, see bench/)"
