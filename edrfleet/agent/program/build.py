"""How a program of bpf/ is built: its -D switches and map capacities, the scan windows to
try, its C text, its tail-call targets, and the errors of bringing it up (edrfleet/agent/engine.py
compiles and loads it)."""

from __future__ import annotations

from pathlib import Path

from edrfleet.kernel_abi import BPF_SOURCES, Header

# The -D switches of bpf/edrfleet.h are of three kinds.  FEATURES: matchers whose kernel code
# is compiled in only when the policy uses one (the default policy has no user/parent/cwd rule,
# and that code was 70 % of what the verifier walked in edr_judge); a policy that needs one
# later gets a new program (Engine.fits is false), like one that outgrows the maps.
FEATURES = ("EDR_WITH_UIDS", "EDR_WITH_CTX", "EDR_WITH_PF", "EDR_WITH_ANCESTORS", "EDR_WITH_STDIO",
            "EDR_WITH_MULTICALL", "EDR_WITH_CWDSYM")
# SHAPE: the program's shape, from the engine's own arguments.
SHAPE = ("EDR_WITH_LSM", "EDR_USE_PERFBUF", "EDR_SCAN_WINDOW", "EDR_WITH_SCOPE")
# EVENTS: ring buffer sizes and the flood aggregation of logged execs, the header's values.
EVENTS = ("EDR_RINGBUF_BLOCK_PAGES", "EDR_RINGBUF_LOG_PAGES", "EDR_LOG_WAKE_EVERY",
          "EDR_LOGAGG_MAX", "EDR_LOGAGG_WINDOW_MS", "EDR_LOGAGG_BURST")
# Every other switch is a map capacity (EDR_MAX_*, EDR_TRANS_MAX), sized from the policy.


def capacity_defaults(header: Header) -> dict[str, int]:
    """The map capacities a program starts from: the header's defaults of its capacity switches."""
    return {k: v for k, v in header.switches.items() if k not in FEATURES + SHAPE + EVENTS}


class EngineError(RuntimeError):
    """A step of bringing the program up failed; the message names the step."""


class VerifierTooComplex(EngineError):
    """The verifier ran out of its instruction budget (E2BIG): try a smaller scan window."""


def bpf_text(bpf_dir: Path) -> str:
    """The program's C text: the bpf/ files joined in order, the contract header first."""
    return "".join((bpf_dir / name).read_text() for name in BPF_SOURCES)


def scan_windows(header: Header) -> tuple[int, ...]:
    """Scan windows to try, largest first: the header's default, halved down to 512 bytes (a
    verifier that gives up on one gets the next: the 6.1 verifier does, 6.18 takes 4 KiB)."""
    windows, window = [], header.switches["EDR_SCAN_WINDOW"]
    while window >= 512:
        windows.append(window)
        window //= 2
    return tuple(windows)


def capacities_for(needs: dict[str, int], header: Header) -> dict[str, int]:
    """Map sizes with room for a policy twice as big as this one before a restart is needed."""
    caps = {
        key: max(base, _pow2(2 * needs.get(key, 0)))
        for key, base in capacity_defaults(header).items()
    }
    # a trans part is one map value, at most 4 MiB (KMALLOC_MAX_SIZE); entries address its rows
    caps["EDR_TRANS_MAX"] = min(caps["EDR_TRANS_MAX"], 1 << header["EDR_ROW_BITS"])
    # parts of it: what the policy needs (each is a 4 MiB value at most), no room doubled
    caps["EDR_TRANS_PARTS"] = min(max(1, needs.get("EDR_TRANS_PARTS", 1)),
                                  header.switches["EDR_TRANS_PARTS"])
    caps.update({key: int(bool(needs.get(key, 0))) for key in FEATURES})
    return caps


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def tail_call_targets(header: Header, stage: str) -> list[tuple[int, bytes]]:
    """(index, function) of each tail-call target of ``stage`` ("" or "lsm_"), by enum edr_prog."""
    progs = header.enum_by_suffix("edr_prog", "EDR_PROG_")
    return [(i, f"edr_{stage}{name}".encode()) for name, i in progs.items() if name != "max"]
