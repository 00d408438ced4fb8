"""Capacities of the kernel side and caps of the compiler.

The first block mirrors ``bpf/edrfleet.h`` (the policy package may not import the agent, so the
numbers are repeated here; ``tests/unit/test_limits.py`` reads the header and checks them).
"""

from __future__ import annotations

# --- mirrored from bpf/edrfleet.h ---------------------------------------------------------
EDR_NAME_MAX = 64  # basename key, NUL padded: names of at most 63 bytes
EDR_GROUPS_PER_KEY = 8  # groups one executable key (name / inode / wildcard) maps to
EDR_RULES_PER_GROUP = 64  # rule slots in one group
EDR_UIDS_PER_RULE = 8  # uid list of one rule
EDR_CWD_DEPTH = 32  # directories of the cwd checked, '/' included; deeper = cwd unknown
EDR_KEY_BITS = 64  # distinct parent executables / cwd prefixes per policy (u64 bit sets)
EDR_CAND_MAX = 8  # distinct groups evaluated for one exec
EDR_NSYM = 258  # symbols a DFA reads: bytes 0..255, BOS, EOS
EDR_SYM_BOS = 256
EDR_SYM_EOS = 257
EDR_CLS_PAD = 264  # class table in a map value is u8: at most 256 classes
EDR_ROW_BITS = 20  # transition entry: bits 0-19 next row, 20-31 accept id
EDR_ACCEPT_IDS = 4096  # distinct condition masks per slot; id 0 = no bits
EDR_MAX_GROUPS = 1024
EDR_MAX_RULES = 4096
EDR_TRANS_MAX = 65536  # default transition entries per slot (the agent may raise it, -D)
EDR_MAX_NAMES = 1024  # basename keys per slot
EDR_MAX_INODES = 4096  # executable inode keys per slot
EDR_MAX_SCOPE = 256  # scope cgroups per slot

# --- compiler caps ------------------------------------------------------------------------
COND_BITS = 64  # condition bits per group (the need mask is a u64)
MAX_CLASSES = 256  # byte classes per DFA (class ids are u8)
MAX_DFA_STATES = 4096  # states of one group DFA
MAX_TRANS_TOTAL = 1 << EDR_ROW_BITS  # 1 048 576 entries in the whole bundle: the most a
#                                      transition entry can address (EDR_TRANS_MAX may be
#                                      raised up to this with -D)
MAX_ACCEPT_MASKS = EDR_ACCEPT_IDS - 1  # distinct non-zero masks in the whole bundle
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
