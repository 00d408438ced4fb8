// SPDX-License-Identifier: GPL-2.0
/*
 * edrfleet.c - capture every exec, decide in the kernel, block before the first instruction.
 *
 * This file: the program's own constants, its per-CPU scratch state and its maps.  The
 * program is this file and the others of bpf/, joined in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES after edrfleet.h into the one text BCC compiles
 * (BCC rewrites map calls only in its main file): helpers.c, candidates.c, context.c,
 * verdict.c, scan.c, exec.c, lsm.c, guard.c.
 *
 * Loaded by the agent with BCC.  The agent passes, as -D flags (switches of edrfleet.h):
 *   EDR_OFF_*          kernel struct offsets read from BTF (never from header files: the
 *                      headers on these machines do not describe the running kernel);
 *   EDR_MAX_*          map capacities sized from the policy;
 *   EDR_WITH_UIDS/CTX  0 when no rule of the policy has match.user / match.parent or .cwd;
 *   EDR_WITH_ANCESTORS/STDIO  0 when no rule has match.ancestor / match.inet_stdio;
 *   EDR_WITH_MULTICALL 0 when the policy lists no multi-call executable;
 *   EDR_WITH_CWDSYM    0 when no DFA reads cwd-class symbols (no path: matcher);
 *   EDR_USE_PERFBUF    perf buffer instead of ring buffer (kernels without BPF ring buffer);
 *   EDR_WITH_LSM       also build the bprm_check_security programs (backend "lsm", x86-64);
 *   EDR_SCAN_WINDOW    argv bytes one edr_scan call reads.
 *
 * Decision point (backend sigkill): sched:sched_process_exec.  The exec is committed, the new
 * image has not run an instruction, argv sits in the new mm between mm->arg_start and
 * mm->arg_end (no other thread can race it: de_thread() has run), and mm->exe_file is the real
 * executable.  bpf_send_signal(SIGKILL) there stops the program before it starts.
 *
 * Context (match.user, match.parent, match.cwd) is decided here too, and only read when a
 * rule whose argv conditions already hold needs it (the group's flags say whether any does):
 * the parent's executable (real_parent->mm->exe_file) by inode and real basename, and the
 * directories from the cwd up to '/' (a d_parent walk crossing mounts, EDR_CWD_DEPTH
 * directories at most; a deeper cwd is unknown and fails closed like an unscanned argv).
 *
 * Matching (docs/policy-bundle.md): the candidate groups for this exec come from the real
 * executable's inode, the as-executed basename, the real basename, the fileless list (an
 * executable with no link: memfd, O_TMPFILE, deleted) and the wildcard list; each
 * group's DFA reads BOS, argv joined by NUL, EOS, in windows of EDR_ARGS_MAX bytes, one window
 * per tail call of edr_scan (BCC 0.26 has no bpf_loop callbacks; the kernel's limit of 33 tail
 * calls bounds the scan to ~128 KiB of argv, beyond that the exec is "unscanned").
 */

#define EDR_SIGKILL 9
#define EDR_EPERM 1

struct edr_scratch {
	struct edr_event ev;             /* built in place, sent as is */
	__u8 win[EDR_ARGS_MAX];          /* argv window being scanned, read from the new mm */
	struct edr_name_key nk;
	struct edr_inode_key ik;
	__u64 arg_start;                 /* user address of argv in the new mm */
	__u64 mask;                      /* condition bits of the group being scanned */
	__u32 scan_len;                  /* argv bytes to scan (block minus its final NUL) */
	__u32 slot;
	__u32 ncand;
	__u32 ci;                        /* candidate being scanned */
	__u32 cand[EDR_CAND_MAX];
	__u32 state;                     /* flat row index of the DFA state */
	__u32 pos;                       /* argv bytes of the current group already scanned */
	__u32 best_allow;                /* lowest matching rule index per action */
	__u32 best_log;
	__u32 best_block;
	__u32 scanning;                  /* candidate whose DFA edr_scan is reading */
	__u32 dfas;                      /* candidates with a DFA */
	__u32 calls;                     /* scan and judge calls of this exec so far */
	__u32 scan_full;                 /* argv bytes of the exec (scan_len before fit_budget) */
	__u32 pf;                        /* cand[0] is the prefilter */
	__u32 hit_block;                 /* a group the prefilter added has a block rule */
	__u64 seen[EDR_MAX_GROUPS / 64]; /* add_cands: groups already candidates (or dropped) */
	__u32 base;                      /* offset of the basename in ev.filename */
	__u32 n;                         /* bytes in win */
	__u32 scan_short;                /* scan_len was cut to fit the tail-call budget */
	__u32 scan_failed;               /* reading argv from the new mm failed */
	__u32 unscanned;                 /* a group with block rules was not read to the end */
	__u32 dropped;                   /* a candidate group was not evaluated (EDR_F_DROPPED) */
	__u32 dropped_block;             /* EDR_BLOCK_RULE: one of those has a block rule */
	__u32 ctx_done;                  /* enum edr_ctx_flag: context already read for this exec */
	__u32 want;                      /* enum edr_ctx_flag: context the group being judged needs */
	__u32 cwd_unknown;               /* the cwd walk did not reach '/' */
	__u32 ncwd;                      /* names in cwd_names */
	__u32 cpos;                      /* cwd_string: bytes of cwdbuf built */
	__u32 uid_ok;                    /* judge_group: the rule's uid list holds */
	__u32 unscanned_block;           /* config: what is unknown blocks */
	__u32 dirs_seen;                 /* cwd walk: directories looked up */
	__u64 pbits;                     /* parent-key bits of the parent's executable */
	__u64 cbits;                     /* cwd-prefix bits of the cwd's directories */
	__u64 cxkeep;                    /* cwd walk: bits a directory may set (exact-cwd bits only at the cwd) */
	__u64 cxnot;                     /* ~ the slot's exact-cwd bits (EDR_XDIRS_INO key of "dirs") */
	struct edr_inode_key ck;         /* context lookups */
	struct edr_name_key pk;
	__u64 cwd_names[EDR_CWD_DEPTH];  /* d_name.name of the cwd's components, leaf first */
	__u8 cwdbuf[EDR_CWD_MAX + 256];  /* the cwd path being built for the event */
	__u32 lpos;                      /* LSM: bytes of argv copied into lbuf */
	__u32 ldone;                     /* LSM: the argv array's NULL was reached */
	__u32 fileless;                  /* the executable's inode has no link (EDR_F_FILELESS) */
	__u8 lbuf[2 * EDR_ARGS_MAX];     /* LSM: argv copied from the caller, NUL separated */
	__u64 abits;                     /* parent-key bits of the ancestors' executables */
	__u64 anc;                       /* ancestors' walk: the task being read */
	struct edr_name_key ak;          /* ancestors' walk: name lookups */
	__u32 sbits;                     /* enum edr_stdio_whose: fds 0-2 holding an inet socket */
	__u32 multicall;                 /* the executable is a multi-call binary (busybox) */
	__u32 abase;                     /* add_applet: basename offset of the argv item in args */
	__u32 aend;                      /* add_applet: offset of the argv item's NUL, 0 = none */
	__u32 dup;                       /* own_name: argv[0]'s basename is the executable's */
	__u64 rd;                        /* sc_ptr: the word read (a map word, not a stack slot) */
	__u64 exe_file;                  /* struct file * of the executable (exe_path.c) */
	__u64 head[EDR_HEAD_BYTES / 8];  /* the executable's first bytes (identity.c) */
	__u32 verdict;                   /* finish -> edr_emit: the LSM verdict to return */
	__u64 ewd;                       /* exe_path.c walk: dentry */
	__u64 ewm;                       /* exe_path.c walk: vfsmount */
	__u32 nexe;                      /* names in exe_names */
	__u32 epos;                      /* exe_string: bytes of exebuf built */
	__u32 exe_partial;               /* the walk did not reach the namespace's root */
	__u64 exe_names[EDR_CWD_DEPTH];  /* d_name.name of the executable's path, leaf first */
	__u8 exebuf[EDR_EXE_PATH_MAX + 256];
	__u32 loader;                    /* the executable is the dynamic loader (loader.c) */
	__u32 lprog;                     /* loader.c: offset of PROGRAM in argv, EDR_NONE if none */
	__u32 lstart;                    /* loader.c: offset of the next argument */
	__u32 lbase;                     /* loader.c: offset of PROGRAM's basename */
	__u32 lskip;                     /* loader.c: the argument is an option's value */
	__u64 lhash;                     /* loader.c: FNV-1a of the argument being read */
	struct edr_logagg_key lak;       /* verdict.c fold_key: the "logagg" key */
	struct edr_logagg lav;           /* verdict.c fold_key: a fresh value */
	__u32 csym;                      /* cwd-class symbol of the cwd (EDR_SYM_CWD + k - 1), 0: none */
	__u32 tkey;                      /* trans_of: the "trans" key of a group's DFA */
	__u8 lcls[256];                  /* scan: the group's byte classes, NUL's joined to the cwd */
	__u64 cwd_d;                     /* cwd_class_ctx walk: dentry */
	__u64 cwd_m;                     /* cwd_class_ctx walk: vfsmount */
};

BPF_ARRAY(active, __u32, 1);
BPF_ARRAY(config, struct edr_config, EDR_SLOTS);
BPF_HASH(names, struct edr_name_key, struct edr_group_list, EDR_SLOTS * EDR_MAX_NAMES);
BPF_HASH(inodes, struct edr_inode_key, struct edr_group_list, EDR_SLOTS * EDR_MAX_INODES);
BPF_HASH(scope, struct edr_scope_key, __u32, EDR_SLOTS * EDR_MAX_SCOPE);
BPF_HASH(pnames, struct edr_name_key, __u64, EDR_SLOTS * EDR_MAX_PNAMES);
BPF_HASH(pinodes, struct edr_inode_key, __u64, EDR_SLOTS * EDR_MAX_PINODES);
BPF_HASH(dirs, struct edr_inode_key, __u64, EDR_SLOTS * EDR_MAX_DIRS);
BPF_HASH(mcnames, struct edr_name_key, __u32, EDR_SLOTS * EDR_MAX_MCNAMES);
BPF_HASH(mcinodes, struct edr_inode_key, __u32, EDR_SLOTS * EDR_MAX_MCINODES);
BPF_ARRAY(accepts, struct edr_accepts, EDR_SLOTS);
BPF_ARRAY(groups, struct edr_group, EDR_SLOTS * EDR_MAX_GROUPS);
BPF_ARRAY(rules, struct edr_rule, EDR_SLOTS * EDR_MAX_RULES);
BPF_ARRAY(trans, struct edr_trans, EDR_SLOTS * EDR_TRANS_PARTS);
BPF_HASH(cwdcls, struct edr_inode_key, struct edr_cwd_cls, EDR_SLOTS * EDR_MAX_CWDCLS);
BPF_PERCPU_ARRAY(counters, __u64, EDR_CNT_MAX);
BPF_PERCPU_ARRAY(scratch, struct edr_scratch, 1);
BPF_PROG_ARRAY(progs, EDR_PROG_MAX);
#if EDR_WITH_LSM
BPF_PROG_ARRAY(progs_lsm, EDR_PROG_MAX);
BPF_TABLE("lru_hash", __u32, __u32, lsm_passed, 16384); /* pids the LSM hook judged */
#endif
BPF_TABLE("percpu_hash", struct edr_logagg_key, struct edr_logagg, logagg, EDR_LOGAGG_MAX);
#if EDR_USE_PERFBUF
BPF_PERF_OUTPUT(events);
#else
BPF_RINGBUF_OUTPUT(events, EDR_RINGBUF_LOG_PAGES);          /* logged execs */
BPF_RINGBUF_OUTPUT(events_block, EDR_RINGBUF_BLOCK_PAGES);  /* blocks, would-blocks */
#endif
