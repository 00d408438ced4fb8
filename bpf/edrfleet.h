/* SPDX-License-Identifier: GPL-2.0 */
/*
 * edrfleet.h - the whole kernel <-> user contract, and the one place its numbers are written.
 *
 * Everything the BPF program (the other files of bpf/, joined after this one) and Python must
 * agree on lives here: limits, policy ceilings, the -D switches and their defaults, numbered
 * enums (tail-call indexes included), map keys/values and the event record.  Python reads the
 * #defines and enums of this file (edrfleet/kernel_abi.py: the agent at start, the policy
 * compiler on import) and BCC derives the ctypes of every struct from these declarations, so
 * nothing is copied by hand.  tests/kernel/test_layout.py checks that both sides still agree.
 *
 * Enum values are explicit and never reused; a retired value stays as a comment.
 *
 * Kernel struct fields (task_struct, mm_struct, file, inode, ...) are NOT described here:
 * their offsets come from BTF at agent start and reach the program as EDR_OFF_* constants.
 */
#ifndef EDRFLEET_H
#define EDRFLEET_H

/* --- limits ------------------------------------------------------------------------------ */
#define EDR_ARGS_MAX        4096   /* argv bytes carried in one event (and scanned per call)  */
#define EDR_FILENAME_MAX    256    /* as-executed path carried in one event                  */
#define EDR_HEAD_BYTES      256    /* linux_binprm.buf (BINPRM_BUF_SIZE): the head "fsizes" hashes */
#define EDR_NAME_MAX        64     /* basename key, NUL padded: names of at most 62 bytes match */
#define EDR_GROUPS_PER_KEY  16     /* groups one executable key (name/inode/wildcard) maps to */
#define EDR_RULES_PER_GROUP 64     /* rule slots in one group; one condition bit each max 64  */
#define EDR_UIDS_PER_RULE   8      /* uid list of one rule                                    */
#define EDR_CAND_MAX        16     /* distinct groups evaluated for one exec; one more that
				    * applies is dropped: counted, and it blocks when it holds a
				    * block rule (EDR_REASON_DROPPED) - the compiler refuses a
				    * policy whose names can reach more                         */
#define EDR_PF_BITS         64     /* prefiltered groups of a policy: bit i of the prefilter
				    * automaton's mask makes group pf[i] a candidate           */
#define EDR_TAIL_CALLS      31     /* MAX_TAIL_CALL_CNT (33) minus the ctx and emit calls: judge + scan calls */
#define EDR_CWD_DEPTH       32     /* cwd directories checked, '/' included; deeper = unknown */
#define EDR_XDIRS_INO       0      /* "dirs" key {slot, dev 0, ino 0}: the exact-cwd bits (no inode is 0) */
#define EDR_KEY_BITS        64     /* distinct parent executables / cwd prefixes per slot     */
#define EDR_ANCESTOR_DEPTH  8      /* ancestors match.ancestor checks: parent, grandparent, ... */
#define EDR_APPLET_SCAN     256    /* argv[0] / argv[1] bytes read for a multi-call applet name */
#define EDR_STDIO_FDS       3      /* descriptors match.inet_stdio reads: stdin, stdout, stderr */
#define EDR_AF_INET         2      /* socket families match.inet_stdio counts as network      */
#define EDR_AF_INET6        10
#define EDR_S_IFMT          0xf000 /* inode mode bits: file type (octal 0170000)             */
#define EDR_S_IFSOCK        0xc000 /* octal 0140000 */
#define EDR_NSYM            258    /* symbols a DFA reads: bytes 0..255, BOS, EOS            */
#define EDR_SYM_BOS         256    /* fed once before the first argv byte                     */
#define EDR_SYM_EOS         257    /* fed once after the last argv byte                       */
#define EDR_SYM_CWD         258    /* cwd-class symbols: class k (1..) is EDR_SYM_CWD + k - 1,
				    * read after every NUL (before argv[i], i >= 1) by the DFAs
				    * whose classes table is longer than EDR_NSYM.  The kernel
				    * reads NUL and it as one step: the agent makes the class of
				    * symbol EDR_SYM_CWD + k - 1 the column "NUL, then it"     */
#define EDR_CWD_CLASSES     248    /* cwd classes of one policy: (anchor directory, level)    */
#define EDR_CWD_LEVELS      3      /* levels: the cwd is the anchor, its child, its grandchild */
#define EDR_CLS_PAD         512    /* class table size in a map value (EDR_SYM_CWD +
				    * EDR_CWD_CLASSES, 8-aligned)                               */
#define EDR_ROW_BITS        20     /* transition entry: bits 0-19 next row, 20-31 accept id  */
#define EDR_ACCEPT_IDS      4096   /* distinct condition masks per slot; id 0 = no bits      */
#define EDR_CGROUP_DEPTH    32     /* ancestor levels checked against scope.cgroups          */
#define EDR_SLOTS           2      /* policy slots: one active, one being filled (reload)    */
#define EDR_CWD_MAX         512    /* working directory path carried in one event            */
#define EDR_EXE_PATH_MAX    256    /* path of the real executable carried in one event       */
#define EDR_NONE            0xffffffffu /* "no rule", "no group"                            */

/* --- policy ceilings: the most one policy may hold (the compiler refuses more) ------------ */
#define EDR_POLICY_MAX_GROUPS  1024   /* rule groups                                         */
#define EDR_POLICY_MAX_RULES   4096
#define EDR_POLICY_MAX_NAMES   1024   /* executable basename keys                            */
#define EDR_POLICY_MAX_INODES  4096   /* executable path keys                                */
#define EDR_POLICY_MAX_SCOPE   256    /* scope cgroups                                       */

/*
 * --- switches ------------------------------------------------------------------------------
 * The agent passes every one of these as -D on each compile (edrfleet/agent/engine.py); the
 * values here are its starting points, and what a compile without -D gets.
 *
 * Map capacities of one slot: the agent sizes each from the policy it loads (twice what the
 * policy needs, these at least), so a policy that grows a little needs no new program.
 */
#ifndef EDR_MAX_GROUPS
#define EDR_MAX_GROUPS      256
#endif
#ifndef EDR_MAX_RULES
#define EDR_MAX_RULES       1024
#endif
#ifndef EDR_TRANS_MAX       /* transition entries per part: a power of two <= 1 << EDR_ROW_BITS */
#define EDR_TRANS_MAX       65536
#endif
#ifndef EDR_TRANS_PARTS     /* "trans" values per slot, a DFA in one (a value is at most 4 MiB,
			     * KMALLOC_MAX_SIZE: 1 << EDR_ROW_BITS entries); this default is the
			     * most a policy may use, the agent passes what it needs (1 or 2) */
#define EDR_TRANS_PARTS     2
#endif
#ifndef EDR_MAX_NAMES       /* basename keys per slot */
#define EDR_MAX_NAMES       1024
#endif
#ifndef EDR_MAX_INODES      /* executable inode keys per slot */
#define EDR_MAX_INODES      4096
#endif
#ifndef EDR_MAX_SCOPE       /* scope cgroups per slot */
#define EDR_MAX_SCOPE       64
#endif
#ifndef EDR_MAX_PNAMES      /* parent executable basename keys per slot */
#define EDR_MAX_PNAMES      64
#endif
#ifndef EDR_MAX_PINODES     /* parent executable inode keys per slot */
#define EDR_MAX_PINODES     512
#endif
#ifndef EDR_MAX_DIRS        /* cwd prefix directory keys per slot */
#define EDR_MAX_DIRS        64
#endif
#ifndef EDR_MAX_CWDCLS      /* cwd-class anchor directory keys per slot */
#define EDR_MAX_CWDCLS      64
#endif
#ifndef EDR_MAX_MCNAMES     /* multi-call executable basename keys per slot */
#define EDR_MAX_MCNAMES     16
#endif
#ifndef EDR_MAX_MCINODES    /* multi-call executable inode keys per slot */
#define EDR_MAX_MCINODES    64
#endif

/* Matchers a policy uses: the agent compiles out (0) the code of those it does not, which
 * makes the program cheaper to build and to verify. */
#ifndef EDR_WITH_UIDS       /* some rule has match.user (uid lists) */
#define EDR_WITH_UIDS       1
#endif
#ifndef EDR_WITH_CTX        /* some rule has match.parent, .cwd, .ancestor or .inet_stdio */
#define EDR_WITH_CTX        1
#endif
#ifndef EDR_WITH_PF         /* the policy has a prefilter (executables.prefilter) */
#define EDR_WITH_PF         1
#endif
#ifndef EDR_WITH_ANCESTORS  /* some rule has match.ancestor (the real_parent walk) */
#define EDR_WITH_ANCESTORS  1
#endif
#ifndef EDR_WITH_STDIO      /* some rule has match.inet_stdio (the file-table reads) */
#define EDR_WITH_STDIO      1
#endif
#ifndef EDR_WITH_CWDSYM     /* some DFA reads cwd-class symbols (path: matchers) */
#define EDR_WITH_CWDSYM     1
#endif
#ifndef EDR_WITH_MULTICALL  /* the policy lists multi-call executables (busybox, toybox) */
#define EDR_WITH_MULTICALL  1
#endif

/* The program's shape, from the agent's options and what the kernel offers. */
#ifndef EDR_WITH_LSM        /* 1: also build the bprm_check_security programs (backend "lsm") */
#define EDR_WITH_LSM        0
#endif
#ifndef EDR_WITH_SCOPE      /* 1: scope.cgroups via bpf_get_current_ancestor_cgroup_id (5.13+ in
			     * tracepoints); 0: no scope check, the agent refuses scoped policies */
#define EDR_WITH_SCOPE      1
#endif
#ifndef EDR_USE_PERFBUF     /* 1: perf buffer instead of ring buffer (kernels without one) */
#define EDR_USE_PERFBUF     0
#endif
#ifndef EDR_SCAN_WINDOW     /* argv bytes one edr_scan call reads: a power of two <= EDR_ARGS_MAX;
			     * older verifiers (6.1) need a smaller one, the agent steps down */
#define EDR_SCAN_WINDOW     EDR_ARGS_MAX
#endif

/* Events (docs/events.md, "Floods").  Blocks and would-blocks have a ring buffer of their own,
 * and each one wakes the agent: no flood of logged execs can push a block out.  Logged execs
 * go to the other one, waking the agent once per EDR_LOG_WAKE_EVERY events of a CPU; beyond
 * EDR_LOGAGG_BURST events of one (rule, executable) in EDR_LOGAGG_WINDOW_MS, a logged exec
 * sends no event and is counted into the next one of that key (edr_event.count), or into the
 * agent's summary when none follows.  Sizes in pages: a power of two; an event is ~1 KiB plus
 * its argv (4 KiB at most), so 1024 pages hold ~800 events of 4 000-byte argv.  The block ring
 * is sized for the worst burst bench/exec_storm.py makes on a 2-CPU machine (10 000 blocked
 * execs with 4 000-byte argv as fast as they go: ~1 700/s, the agent reading ~1 400/s). */
#ifndef EDR_RINGBUF_BLOCK_PAGES /* blocks and would-blocks: each one wakes the agent */
#define EDR_RINGBUF_BLOCK_PAGES 4096
#endif
#ifndef EDR_RINGBUF_LOG_PAGES   /* logged execs */
#define EDR_RINGBUF_LOG_PAGES 1024
#endif
#ifndef EDR_LOG_WAKE_EVERY      /* a logged event wakes the agent once per this many per CPU */
#define EDR_LOG_WAKE_EVERY  64
#endif
#ifndef EDR_LOGAGG_MAX          /* (rule, executable) keys aggregated at once; beyond, every
				 * logged exec of a new key sends its own event */
#define EDR_LOGAGG_MAX      4096
#endif
#ifndef EDR_LOGAGG_WINDOW_MS
#define EDR_LOGAGG_WINDOW_MS 1000
#endif
#ifndef EDR_LOGAGG_BURST        /* events one key sends one by one per window and CPU */
#define EDR_LOGAGG_BURST    32
#endif

/* --- enums ------------------------------------------------------------------------------- */
enum edr_action {            /* a rule's action */
	EDR_ACTION_ALLOW = 1,
	EDR_ACTION_LOG = 2,
	EDR_ACTION_BLOCK = 3,
};

enum edr_event_action {      /* event.action */
	EDR_EV_BLOCKED = 1,
	EDR_EV_WOULD_BLOCK = 2,
	EDR_EV_LOGGED = 3,
};

enum edr_mode {
	EDR_MODE_ENFORCE = 1,
	EDR_MODE_MONITOR = 2,
};

enum edr_backend {
	EDR_BACKEND_SIGKILL = 1,
	EDR_BACKEND_LSM = 2,
};

enum edr_stage {             /* where the decision was taken */
	EDR_STAGE_EXEC = 1,      /* sched:sched_process_exec, on the argv the new image received */
	EDR_STAGE_LSM = 2,       /* bprm_check_security, before the exec is committed            */
};

enum edr_reason {            /* why an event was emitted */
	EDR_REASON_RULE = 1,     /* a rule matched                                               */
	EDR_REASON_RECHECK = 2,  /* LSM let it pass, the exec-time check on the real argv/exe not */
	EDR_REASON_UNSCANNED = 3,/* argv longer than the scan budget for an executable with block rules */
	EDR_REASON_DROPPED = 4,  /* more candidate groups than EDR_CAND_MAX (or than a key's list
				  * holds), and one not evaluated has a block rule              */
};

enum edr_severity {
	EDR_SEV_LOW = 1,
	EDR_SEV_MEDIUM = 2,
	EDR_SEV_HIGH = 3,
	EDR_SEV_CRITICAL = 4,
};

enum edr_flag {              /* edr_event.flags bits */
	EDR_F_ARGS_TRUNCATED = 1,     /* argv longer than EDR_ARGS_MAX: event carries a prefix */
	EDR_F_FILENAME_TRUNCATED = 2,
	EDR_F_UNSCANNED = 4,          /* argv longer than the scan budget: decided on a prefix */
	EDR_F_CWD_TRUNCATED = 8,      /* cwd longer than EDR_CWD_MAX: event carries a prefix   */
	EDR_F_CWD_UNKNOWN = 16,       /* cwd deeper than EDR_CWD_DEPTH: event carries its tail */
	EDR_F_FILELESS = 32,          /* the executable has no link on any filesystem (nlink 0):
				       * memfd_create, O_TMPFILE, a deleted file run by descriptor */
	EDR_F_DROPPED = 64,           /* some candidate groups were not evaluated (EDR_CAND_MAX) */
	EDR_F_STDIO_INET = 128,       /* fd 0-2 of the new process: a network socket (read only
				       * when a candidate rule has match.inet_stdio)             */
	EDR_F_PARENT_STDIO_INET = 256,/* fd 0-2 of its parent: a network socket (likewise)      */
	EDR_F_EXE_PATH_PARTIAL = 512, /* exe_path is a tail: deeper than EDR_CWD_DEPTH, or cut */
	EDR_F_LOADER = 1024,          /* the dynamic loader run directly: judged as its PROGRAM */
};

enum edr_block_bit {         /* edr_group.has_block, edr_group_list.over */
	EDR_BLOCK_UNSCANNED = 1,      /* an unscanned argv blocks (a block rule names the exe)  */
	EDR_BLOCK_RULE = 2,           /* some rule blocks: the group must not be dropped        */
};

enum edr_ctx_flag {          /* edr_rule_slot.flags / edr_group.flags: context a rule needs */
	EDR_CTX_PARENT = 1,           /* the parent's executable (names "pnames", "pinodes") */
	EDR_CTX_CWD = 2,              /* the working directory's directories ("dirs")         */
	EDR_CTX_ANCESTORS = 4,        /* the ancestors' executables, EDR_ANCESTOR_DEPTH of them */
	EDR_CTX_STDIO = 8,            /* fds 0-2 of the task and of its parent: inet sockets?  */
	EDR_CTX_CWDSYM = 16,          /* edr_group.flags only: the group's DFA reads a cwd-class
				       * symbol after every NUL ("cwdcls", read before the scan) */
};

enum edr_stdio_whose {       /* edr_rule.inet_stdio bits: whose standard streams count */
	EDR_STDIO_SELF = 1,           /* the new process's own fd 0, 1 or 2                    */
	EDR_STDIO_PARENT = 2,         /* its parent's fd 0, 1 or 2                             */
};

enum edr_prog {              /* tail-call index into "progs" (and "progs_lsm"): the agent puts
			      * function edr_<name> (edr_lsm_<name>) at EDR_PROG_<NAME> */
	EDR_PROG_SCAN = 0,
	EDR_PROG_JUDGE = 1,
	EDR_PROG_EMIT = 2,           /* the event with the executable's path (exe_path.c): the
				      * spare tail call; if it fails the event goes without it */
	EDR_PROG_CTX = 3,            /* the ancestors and standard streams (context.c), read
				      * between the entry and the judge: the entry program with
				      * them inlined was too branchy for 5.10's verifier */
	EDR_PROG_MAX = 4,
};

enum edr_counter {           /* index into the per-CPU counters array */
	EDR_CNT_EXECS = 0,
	EDR_CNT_BLOCKED = 1,
	EDR_CNT_WOULD_BLOCK = 2,
	EDR_CNT_LOGGED = 3,
	EDR_CNT_LOST = 4,         /* records a ring buffer could not take, any class */
	EDR_CNT_ALLOWED = 5,      /* an allow rule won over a block/log rule */
	EDR_CNT_ERRORS = 6,       /* a tail call failed: the exec was not judged */
	EDR_CNT_DROPPED = 7,      /* execs with candidate groups not evaluated (EDR_F_DROPPED) */
	EDR_CNT_LOST_BLOCK = 8,   /* block and would-block events lost (ring buffer full) */
	EDR_CNT_LOST_LOG = 9,     /* logged execs whose event was lost: each record's count */
	EDR_CNT_FOLDED = 10,      /* logged execs sent as part of a later event's count (or the
				   * agent's summary), not as an event of their own */
	EDR_CNT_MAX = 11,
};

/* --- map keys and values ----------------------------------------------------------------- */
struct edr_config {          /* array "config", index = slot */
	__u32 mode;              /* enum edr_mode */
	__u32 gen;               /* policy generation; copied into events */
	__u32 scoped;            /* 1: only execs under a cgroup in "scope" are seen */
	__u32 unscanned_block;   /* 1: an unscannable argv on a group with block rules blocks */
	__u32 backend;           /* enum edr_backend the agent attached; copied into events */
	__u32 n_wild;            /* groups of rules that name no executable */
	__u32 wild[EDR_GROUPS_PER_KEY];
	__u32 pf_group;          /* the prefilter: a group without rules whose DFA reads the
				  * literals of the prefiltered groups, EDR_NONE if none */
	__u32 n_pf;              /* prefiltered groups */
	__u64 pf_block;          /* bit i: group pf[i] has a block rule */
	__u32 pf[EDR_PF_BITS];   /* prefiltered group of each mask bit */
};

struct edr_group_list {      /* value of "names" and "inodes" */
	__u32 n;
	__u32 g[EDR_GROUPS_PER_KEY];
	__u32 over;              /* 0, or 1 when more groups apply to the key on this host than
				  * g holds (links make several policy names one file), with
				  * EDR_BLOCK_RULE set when one left out has a block rule */
};

struct edr_name_key {        /* key of "names": basename, NUL padded */
	__u32 slot;
	char name[EDR_NAME_MAX];
};

struct edr_inode_key {       /* key of "inodes": dev in kernel encoding (major << 20 | minor) */
	__u32 slot;
	__u32 dev;
	__u64 ino;
};

struct edr_size_key {        /* key of "fsizes": a protected file's size and head (identity.c) */
	__u32 slot;
	__u32 pad;
	__u64 size;
	__u64 head;          /* FNV-1a 64 of the first EDR_HEAD_BYTES, as EDR_HEAD_BYTES / 8
			      * little-endian words (zero-padded past the end of the file) */
};

struct edr_scope_key {       /* key of "scope": cgroup v2 id (= inode of its directory) */
	__u32 slot;
	__u32 pad;
	__u64 cgid;
};

struct edr_rule_slot {
	__u64 need;              /* condition bits that must all be set by the DFA scan */
	__u32 rule;              /* index into "rules" */
	__u32 flags;             /* enum edr_ctx_flag: context the rule needs (was: pad, 0) */
};

struct edr_group {           /* array "groups", index = slot * EDR_MAX_GROUPS + group */
	__u32 start;             /* flat row index of the DFA start state, or EDR_NONE (no DFA) */
	__u32 n_rules;
	__u32 has_block;         /* enum edr_block_bit: what an unscanned argv / a drop does */
	__u32 flags;             /* OR of the rule slots' flags (was: pad, 0), and
				  * EDR_CTX_CWDSYM when the DFA reads cwd-class symbols */
	__u32 part;              /* the "trans" value of the slot the DFA lies in */
	__u32 pad;
	__u8 cls[EDR_CLS_PAD];   /* symbol -> class */
	struct edr_rule_slot rules[EDR_RULES_PER_GROUP];
};

struct edr_rule {            /* array "rules", index = slot * EDR_MAX_RULES + rule */
	__u32 action;            /* enum edr_action */
	__u32 severity;          /* enum edr_severity */
	__u32 n_uids;            /* 0 = any uid */
	__u32 uids[EDR_UIDS_PER_RULE];
	__u32 fileless;          /* 1: holds only when the executable is fileless (EDR_F_FILELESS) */
	__u64 parents;           /* 0 = any parent; else one of these parent-key bits must be set */
	__u64 cwds;              /* 0 = any cwd; else one of these cwd-prefix bits must be set  */
	__u64 ancestors;         /* 0 = any; else some ancestor's parent-key bits meet these  */
	__u32 inet_stdio;        /* 0 = any; else enum edr_stdio_whose bits, one must hold     */
	__u32 pad;
};

/*
 * Context sets (values of "pnames", "pinodes", "dirs"): a u64 of key bits, one bit per
 * distinct parent executable / cwd prefix of the slot (at most EDR_KEY_BITS).  "pnames" is
 * keyed like "names" (the parent's real basename), "pinodes" and "dirs" like "inodes"
 * (the parent executable's inode; a directory's inode).  match.ancestor uses the same
 * key bits, OR-ed over the ancestors.  Values of "mcnames" / "mcinodes" (multi-call
 * executables by real basename / by inode) are a u32 1.
 */

struct edr_cwd_cls {          /* value of "cwdcls" (key: edr_inode_key of a directory) */
	__u16 cls[EDR_CWD_LEVELS];    /* class when the cwd is this directory (0), its child (1),
				       * its grandchild (2); 0 = none.  The nearest hit wins */
	__u16 pad;
};

/*
 * array "trans", index = slot * EDR_TRANS_PARTS + part: the DFAs of the slot end to end, in
 * EDR_TRANS_PARTS values (a DFA lies in one, edr_group.part), so the scan loop looks nothing
 * up per byte.  u32 entries (host byte order) = next state's flat row index |
 * accept id << EDR_ROW_BITS.  Declared as bytes: BCC generates per-element code for arrays of
 * wider types, which made the compile take seconds.
 */
struct edr_trans {
	__u8 raw[EDR_TRANS_MAX * 4] __attribute__((aligned(8))); /* aligned: one load per entry */
};

struct edr_logagg_key {       /* key of "logagg": (rule, real executable) of one action */
	__u32 gen;
	__u32 rule;
	__u32 dev;
	__u32 action;             /* enum edr_event_action: EDR_EV_LOGGED, folded logged execs;
				   * blocked/would_block: events their ring buffer refused */
	__u64 ino;
};

struct edr_logagg {           /* value of "logagg" (per CPU): execs of the key */
	__u64 window_ns;          /* logged: start of the current window (bpf_ktime_get_boot_ns);
				   * blocks: the last refused */
	__u64 seen;               /* execs of the key on this CPU, ever */
	__u64 sent;               /* logged: "seen" when its last event left (blocks: 0); the
				   * execs after it are pending: the agent writes a summary */
	__u64 in_window;          /* logged: execs of the key in the current window */
};

struct edr_accepts {         /* array "accepts", index = slot: u64 mask per accept id, as bytes */
	__u8 raw[EDR_ACCEPT_IDS * 8] __attribute__((aligned(8)));
};

/* --- the event --------------------------------------------------------------------------- */
/* Plain u64/u32/u16/u8 here: BCC decodes ring buffer records from these type names. */
struct edr_event {           /* ring buffer record; sent up to args[args_len] only */
	u64 ts_ns;             /* bpf_ktime_get_boot_ns() */
	u64 cgroup_id;
	u64 ino;               /* real executable (mm->exe_file) */
	u32 dev;
	u32 pid;               /* tgid of the new image */
	u32 ppid;
	u32 uid;
	u32 gid;
	u32 rule;              /* index into the generation's rules, EDR_NONE if none */
	u32 gen;               /* policy generation the decision used */
	u32 args_total;        /* length of the whole argv block (bytes, NULs included) */
	u16 args_len;          /* bytes of args[] that are valid */
	u16 filename_len;
	u8 action;             /* enum edr_event_action */
	u8 backend;            /* enum edr_backend */
	u8 stage;              /* enum edr_stage */
	u8 reason;             /* enum edr_reason */
	u32 flags;             /* enum edr_flag bits */
	u16 cwd_len;           /* bytes of cwd[] that are valid */
	u16 agg_cpu;           /* logged: the CPU whose "logagg" counts the key */
	u32 count;             /* execs this event stands for: 1, more when a logged event
				* carries execs folded into it under a flood */
	u32 agg_seq;           /* logged: the key's "seen" on agg_cpu after this exec, 0 when
				* not aggregated: the event stands for seen-count+1 .. seen */
	u16 exe_path_len;      /* bytes of exe_path[] that are valid */
	u16 pad2;
	char exe_name[EDR_NAME_MAX];       /* d_name of the real executable */
	char parent_name[EDR_NAME_MAX];    /* d_name of the parent's executable, "" if none */
	char filename[EDR_FILENAME_MAX];   /* as executed (bprm->filename) */
	char exe_path[EDR_EXE_PATH_MAX];   /* the real executable's path, walked in the kernel up to
					    * its mount namespace's root (a chroot's files keep their
					    * full path), EDR_F_EXE_PATH_PARTIAL */
	char cwd[EDR_CWD_MAX];             /* working directory (EDR_F_CWD_* flags) */
	char args[EDR_ARGS_MAX];           /* argv, NUL separated */
};

/* --- self-protection (bpf/guard.c, backend lsm only) ------------------------------------- */
#define EDR_GUARD_OBJS      1024   /* the agent's maps, programs, links and pins guarded      */

enum edr_guard_kind {        /* what another process was refused: index of "guard_log" */
	EDR_GUARD_SIGNAL = 0,    /* a signal that would stop or end the agent (arg: signal)      */
	EDR_GUARD_PTRACE = 1,    /* ptrace attach, /proc/PID/mem, pidfd_getfd (arg: mode)        */
	EDR_GUARD_UNLINK = 2,    /* unlink/rmdir of a pin or the agent's bpffs directory         */
	EDR_GUARD_RENAME = 3,    /* rename of one, or over one                                   */
	EDR_GUARD_OPEN = 4,      /* a pin opened (BPF_OBJ_GET): fds to links and maps (arg: mask)*/
	EDR_GUARD_MAP_WRITE = 5, /* a writable fd to one of the agent's maps (arg: map id)       */
	EDR_GUARD_BY_ID = 6,     /* an fd to its program or link by id (arg: id)                 */
	EDR_GUARD_MAX = 7,
};

enum edr_guard_obj {         /* kind of a "guard_objs" key */
	EDR_GOBJ_MAP = 1,        /* id: map id */
	EDR_GOBJ_PROG = 2,       /* id: program id */
	EDR_GOBJ_LINK = 3,       /* id: link id */
	EDR_GOBJ_FILE = 4,       /* id: inode number of a pin, dev: its s_dev (kernel encoding) */
	EDR_GOBJ_DIR = 5,        /* the same, of the instance and program directories */
};

struct edr_guard_key {       /* key of "guard_objs" */
	__u32 kind;              /* enum edr_guard_obj */
	__u32 dev;
	__u64 id;
};

struct edr_guard_rec {       /* value of "guard_log": refusals of one kind, the last one's caller */
	__u64 count;
	__u32 pid;
	__u32 arg;
	char comm[16];
};

#endif /* EDRFLEET_H */
