"""Capacities of the kernel side and caps of the compiler.

The kernel's numbers are read from ``bpf/edrfleet.h`` (``edrfleet.paths.BPF``) when this module
is imported, with the parser the agent uses (``edrfleet.kernel_abi``): the header is the only
place they are written.  ``tests/unit/policy/test_limits.py`` checks that every ``EDR_*`` name
here is read, not written, and that the compiler's own caps fit the kernel's tables.
"""

from __future__ import annotations

from edrfleet import paths
from edrfleet.kernel_abi import load_header

KERNEL = load_header(paths.BPF)

# --- read from bpf/edrfleet.h -------------------------------------------------------------
EDR_GROUPS_PER_KEY = KERNEL["EDR_GROUPS_PER_KEY"]  # groups one executable key maps to
EDR_RULES_PER_GROUP = KERNEL["EDR_RULES_PER_GROUP"]  # rule slots in one group
EDR_UIDS_PER_RULE = KERNEL["EDR_UIDS_PER_RULE"]  # uid list of one rule
EDR_CWD_DEPTH = KERNEL["EDR_CWD_DEPTH"]  # directories of the cwd checked; deeper = unknown
EDR_ARGS_MAX = KERNEL["EDR_ARGS_MAX"]  # argv bytes the kernel copies (and reads applets from)
EDR_FILENAME_MAX = KERNEL["EDR_FILENAME_MAX"]  # bytes of a path the kernel reads a basename in
EDR_ANCESTOR_DEPTH = KERNEL["EDR_ANCESTOR_DEPTH"]  # ancestors match.ancestor sees, parent first
EDR_APPLET_SCAN = KERNEL["EDR_APPLET_SCAN"]  # argv[0]/argv[1] bytes read for an applet name
EDR_KEY_BITS = KERNEL["EDR_KEY_BITS"]  # distinct parent executables / cwd prefixes per policy
EDR_CAND_MAX = KERNEL["EDR_CAND_MAX"]  # distinct groups evaluated for one exec
EDR_PF_BITS = KERNEL["EDR_PF_BITS"]  # prefiltered groups: one bit of the prefilter's mask each
EDR_TAIL_CALLS = KERNEL["EDR_TAIL_CALLS"]  # judge + scan calls of one exec
EDR_SCAN_WINDOW = KERNEL["EDR_SCAN_WINDOW"]  # argv bytes one scan call reads (the default)
EDR_NSYM = KERNEL["EDR_NSYM"]  # symbols a DFA reads: bytes 0..255, BOS, EOS
EDR_SYM_BOS = KERNEL["EDR_SYM_BOS"]
EDR_SYM_EOS = KERNEL["EDR_SYM_EOS"]
EDR_ROW_BITS = KERNEL["EDR_ROW_BITS"]  # transition entry: next row bits, accept id above
EDR_ACCEPT_IDS = KERNEL["EDR_ACCEPT_IDS"]  # distinct condition masks per slot; id 0 = no bits
EDR_TRANS_MAX = KERNEL["EDR_TRANS_MAX"]  # transition entries a program starts with
# the most one policy may hold (the agent sizes its maps from the policy, up to twice that)
EDR_POLICY_MAX_GROUPS = KERNEL["EDR_POLICY_MAX_GROUPS"]
EDR_POLICY_MAX_RULES = KERNEL["EDR_POLICY_MAX_RULES"]
EDR_POLICY_MAX_NAMES = KERNEL["EDR_POLICY_MAX_NAMES"]  # executable basename keys
EDR_POLICY_MAX_INODES = KERNEL["EDR_POLICY_MAX_INODES"]  # executable path keys
EDR_POLICY_MAX_SCOPE = KERNEL["EDR_POLICY_MAX_SCOPE"]  # scope cgroups
name_fits = KERNEL.name_fits  # a basename the kernel matches: at most NAME_BYTES_MAX bytes
NAME_BYTES_MAX = KERNEL.name_bytes_max

# --- compiler caps ------------------------------------------------------------------------
COND_BITS = 64  # condition bits per group (the need mask is a u64)
MAX_CLASSES = 256  # byte classes per DFA (class ids are u8)
MAX_DFA_STATES = 4096  # states of one group DFA
MAX_TRANS_TOTAL = 1 << EDR_ROW_BITS  # entries in the whole bundle: the most a transition
#                                      entry can address (the agent sizes trans up to this)
MAX_ACCEPT_MASKS = EDR_ACCEPT_IDS - 1  # distinct non-zero masks in the whole bundle
# groups one exec may hit: the kernel evaluates EDR_CAND_MAX, but past this many (all with an
# automaton) the tail-call budget leaves no argv window, and every exec of them is unscanned
MAX_CANDIDATES = min(EDR_CAND_MAX, (EDR_TAIL_CALLS - 1) // 2)
MAX_NFA_NODES = 20_000  # NFA nodes of one pattern after expanding {m,n}
MAX_REPEAT_BOUND = 1_000  # largest m or n accepted in {m,n}

DEFAULT_SEARCH_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)
