// SPDX-License-Identifier: GPL-2.0
/*
 * edrfleet.c - capture every exec, decide in the kernel, block before the first instruction.
 *
 * Loaded by the agent with BCC.  The agent passes, as -D flags:
 *   EDR_OFF_*          kernel struct offsets read from BTF (never from header files: the
 *                      headers on these machines do not describe the running kernel);
 *   EDR_MAX_*          map capacities sized from the policy;
 *   EDR_WITH_UIDS/CTX  0 when no rule of the policy has match.user / match.parent or .cwd;
 *   EDR_USE_PERFBUF    perf buffer instead of ring buffer (kernels without BPF ring buffer);
 *   EDR_WITH_LSM       also build the bprm_check_security program (backend "lsm").
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
#ifdef EDR_WITH_LSM /* struct pt_regs; a tenth of the compile, needed by the LSM hook only */
#include <uapi/linux/ptrace.h>
#endif
#include "edrfleet.h"

#define EDR_SIGKILL 9
#ifndef EDR_RINGBUF_PAGES
#define EDR_RINGBUF_PAGES 256
#endif
#define EDR_PROG_SCAN 0
#define EDR_PROG_JUDGE 1
#ifndef EDR_SCAN_WINDOW     /* argv bytes one edr_scan call reads: a power of two <= EDR_ARGS_MAX;
			     * older verifiers (6.1) need a smaller one, the agent steps down */
#define EDR_SCAN_WINDOW EDR_ARGS_MAX
#endif
#define EDR_TAIL_CALLS 32   /* MAX_TAIL_CALL_CNT (33) minus one spare */
#define EDR_EPERM 1
#define EDR_NR_EXECVE 59    /* x86_64 */
#define EDR_NR_EXECVEAT 322
#define EDR_LSM_ARGS 128    /* argv pointers the LSM hook copies */

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
	__u32 dup;                       /* add_cands: group already a candidate */
	__u32 base;                      /* offset of the basename in ev.filename */
	__u32 n;                         /* bytes in win */
	__u32 scan_short;                /* scan_len was cut to fit the tail-call budget */
	__u32 scan_failed;               /* reading argv from the new mm failed */
	__u32 unscanned;                 /* a group with block rules was not read to the end */
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
	struct edr_inode_key ck;         /* context lookups */
	struct edr_name_key pk;
	__u64 cwd_names[EDR_CWD_DEPTH];  /* d_name.name of the cwd's components, leaf first */
	__u8 cwdbuf[EDR_CWD_MAX + 256];  /* the cwd path being built for the event */
	__u32 lpos;                      /* LSM: bytes of argv copied into lbuf */
	__u32 ldone;                     /* LSM: the argv array's NULL was reached */
	__u32 fileless;                  /* the executable's inode has no link (EDR_F_FILELESS) */
	__u8 lbuf[2 * EDR_ARGS_MAX];     /* LSM: argv copied from the caller, NUL separated */
};

BPF_ARRAY(active, __u32, 1);
BPF_ARRAY(config, struct edr_config, EDR_SLOTS);
BPF_HASH(names, struct edr_name_key, struct edr_group_list, EDR_SLOTS * EDR_MAX_NAMES);
BPF_HASH(inodes, struct edr_inode_key, struct edr_group_list, EDR_SLOTS * EDR_MAX_INODES);
BPF_HASH(scope, struct edr_scope_key, __u32, EDR_SLOTS * EDR_MAX_SCOPE);
BPF_HASH(pnames, struct edr_name_key, __u64, EDR_SLOTS * EDR_MAX_PNAMES);
BPF_HASH(pinodes, struct edr_inode_key, __u64, EDR_SLOTS * EDR_MAX_PINODES);
BPF_HASH(dirs, struct edr_inode_key, __u64, EDR_SLOTS * EDR_MAX_DIRS);
BPF_ARRAY(accepts, struct edr_accepts, EDR_SLOTS);
BPF_ARRAY(groups, struct edr_group, EDR_SLOTS * EDR_MAX_GROUPS);
BPF_ARRAY(rules, struct edr_rule, EDR_SLOTS * EDR_MAX_RULES);
BPF_ARRAY(trans, struct edr_trans, EDR_SLOTS);
BPF_PERCPU_ARRAY(counters, __u64, EDR_CNT_MAX);
BPF_PERCPU_ARRAY(scratch, struct edr_scratch, 1);
BPF_PROG_ARRAY(progs, 2);
#ifdef EDR_WITH_LSM
BPF_PROG_ARRAY(progs_lsm, 2);
BPF_TABLE("lru_hash", __u32, __u32, lsm_passed, 16384); /* pids the LSM hook judged */
#endif
#ifdef EDR_USE_PERFBUF
BPF_PERF_OUTPUT(events);
#else
BPF_RINGBUF_OUTPUT(events, EDR_RINGBUF_PAGES);
#endif

/* The helpers bpf_probe_read_user{,_str} under names of our own: for every call spelled with
 * BCC's names, BCC 0.26 resolves a kernel symbol to pick a fallback for kernels before 5.5
 * (which this program does not support), reading all of /proc/kallsyms each time; that was a
 * third of the compile.  Same helper ids, same prototypes as BCC's helpers.h. */
static long (*edr_read_user)(void *dst, __u32 size, const void *unsafe_ptr) =
	(void *)BPF_FUNC_probe_read_user;
static long (*edr_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) =
	(void *)BPF_FUNC_probe_read_user_str;

/* Clamp a length so the verifier sees 0 <= len <= max: done in asm because clang may otherwise
 * compare one copy of the register and use another. */
#define CLAMP_LEN(len, max)                                                          \
	({                                                                           \
		__u64 __l = (len);                                                   \
		asm volatile("if %[l] <= %[m] goto +1; %[l] = %[m];"                 \
			     : [l] "+r"(__l)                                         \
			     : [m] "i"(max));                                        \
		__l;                                                                 \
	})

/* Index into an array of a power-of-two size; the barrier stops clang from dropping the mask
 * after a compare it believes makes it redundant (the verifier may not see that compare). */
#define BOUNDED(i, size)                                                             \
	({                                                                           \
		__u64 __i = (i);                                                     \
		asm volatile("" : "+r"(__i));                                        \
		__i & ((size) - 1);                                                  \
	})

static __always_inline void count(__u32 which)
{
	__u64 *c = counters.lookup(&which);
	if (c)
		*c += 1;
}

static __always_inline __u64 rd_ptr(const void *base, __u32 off)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline __u32 rd_u32(const void *base, __u32 off)
{
	__u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

/* Scope: the exec's cgroup or one of its ancestors is listed (descendants included). */
static __always_inline int in_scope(__u32 slot)
{
	struct edr_scope_key k = {.slot = slot};
	for (int level = 0; level < EDR_CGROUP_DEPTH; level++) {
		k.cgid = bpf_get_current_ancestor_cgroup_id(level);
		if (k.cgid == 0)
			break;
		if (scope.lookup(&k))
			return 1;
	}
	return 0;
}

/*
 * Loop-carried values live in the scratch map, not in registers: the verifier does not track
 * map contents, so paths that differ only there merge instead of multiplying.
 */
static __always_inline void add_cands(struct edr_scratch *s, struct edr_group_list *l)
{
	if (!l)
		return;
	for (__u32 i = 0; i < EDR_GROUPS_PER_KEY; i++) {
		/* an opaque index: as a pointer walk over the list (which clang makes of this
		 * loop at some optimization settings) the 6.1 verifier cannot bound it */
		asm volatile("" : "+r"(i));
		if (i >= l->n)
			break;
		s->dup = 0;
		for (int j = 0; j < EDR_CAND_MAX; j++) {
			if (j < s->ncand && s->cand[j] == l->g[i & (EDR_GROUPS_PER_KEY - 1)])
				s->dup = 1;
		}
		asm volatile("" ::: "memory");
		__u32 n = s->ncand;
		if (!s->dup && n < EDR_CAND_MAX) {
			s->cand[BOUNDED(n, EDR_CAND_MAX)] = l->g[i & (EDR_GROUPS_PER_KEY - 1)];
			s->ncand = n + 1;
		}
	}
}

/* Look a basename up in "names"; a name that fills the key may be cut, so it never matches. */
static __always_inline void add_name(struct edr_scratch *s, const char *name)
{
	__builtin_memset(s->nk.name, 0, sizeof(s->nk.name));
	s->nk.slot = s->slot;
	long n = bpf_probe_read_kernel_str(s->nk.name, sizeof(s->nk.name), name);
	if (n <= 1 || n >= EDR_NAME_MAX)
		return;
	add_cands(s, names.lookup(&s->nk));
}

#define EDR_ROW_MASK ((1u << EDR_ROW_BITS) - 1)

/* One DFA step; branch free so a 4 KiB window stays within the verifier's limits. */
static __always_inline __u32 dfa_step(const struct edr_trans *t, const struct edr_accepts *a,
				      const struct edr_group *g, __u32 state, __u32 sym,
				      __u64 *mask)
{
	__u32 e = ((const __u32 *)t->raw)[(state + g->cls[sym]) & (EDR_TRANS_MAX - 1)];
	*mask |= ((const __u64 *)a->raw)[(e >> EDR_ROW_BITS) & (EDR_ACCEPT_IDS - 1)];
	return e & EDR_ROW_MASK;
}

static __always_inline void inode_id(struct edr_scratch *s, void *inode)
{
	s->ck.slot = s->slot;
	s->ck.dev = rd_u32((void *)rd_ptr(inode, EDR_OFF_INODE_SB), EDR_OFF_SB_DEV);
	s->ck.ino = rd_ptr(inode, EDR_OFF_INODE_INO);
}

/* The parent's executable: its key bits (by inode, by real basename) and its name. */
static __always_inline void parent_ctx(struct edr_scratch *s)
{
	s->ctx_done |= EDR_CTX_PARENT;
	s->pbits = 0;
	__builtin_memset(s->pk.name, 0, sizeof(s->pk.name));
	s->pk.slot = s->slot;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *parent = (void *)rd_ptr(task, EDR_OFF_TASK_REAL_PARENT);
	void *pmm = (void *)rd_ptr(parent, EDR_OFF_TASK_MM);
	void *file = pmm ? (void *)rd_ptr(pmm, EDR_OFF_MM_EXE_FILE) : 0;
	if (file) {
		inode_id(s, (void *)rd_ptr(file, EDR_OFF_FILE_INODE));
		__u64 *v = pinodes.lookup(&s->ck);
		if (v)
			s->pbits |= *v;
		void *dentry = (void *)rd_ptr(file, EDR_OFF_FILE_DENTRY);
		long n = bpf_probe_read_kernel_str(s->pk.name, sizeof(s->pk.name),
						   (void *)rd_ptr(dentry, EDR_OFF_DENTRY_NAME));
		if (n > 1 && n < EDR_NAME_MAX) {
			v = pnames.lookup(&s->pk);
			if (v)
				s->pbits |= *v;
		}
	}
	__builtin_memcpy(s->ev.parent_name, s->pk.name, sizeof(s->ev.parent_name));
}

/*
 * The cwd: walk from fs->pwd up to '/', looking every directory up in "dirs" (by inode) and
 * keeping the names for the event.  At the root of a mount the walk continues at its
 * mountpoint in the parent mount (struct mount around the vfsmount); that mountpoint dentry is
 * hidden under the mount, so it is not looked up, only named.  A loop turn is one directory
 * or one mount crossing; more than EDR_CWD_DEPTH directories leave the cwd unknown.
 */
static __always_inline void cwd_ctx(struct edr_scratch *s)
{
	s->ctx_done |= EDR_CTX_CWD;
	s->cbits = 0;
	s->ncwd = 0;
	s->cwd_unknown = 1;
	s->dirs_seen = 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *fs = (void *)rd_ptr(task, EDR_OFF_TASK_FS);
	if (!fs)
		return;
	__u64 dentry = rd_ptr(fs, EDR_OFF_FS_PWD_DENTRY);
	__u64 mnt = rd_ptr(fs, EDR_OFF_FS_PWD_MNT);
	int hidden = 0;
	for (int i = 0; i < 2 * EDR_CWD_DEPTH; i++) {
		if (!hidden) {
			if (s->dirs_seen >= EDR_CWD_DEPTH)
				break;
			inode_id(s, (void *)rd_ptr((void *)dentry, EDR_OFF_DENTRY_INODE));
			__u64 *v = dirs.lookup(&s->ck);
			if (v)
				s->cbits |= *v;
			s->dirs_seen += 1;
		}
		hidden = 0;
		__u64 mount = mnt - EDR_OFF_MOUNT_MNT;
		if (dentry == rd_ptr((void *)mnt, EDR_OFF_VFSMOUNT_ROOT)) {
			__u64 up = rd_ptr((void *)mount, EDR_OFF_MOUNT_PARENT);
			if (up == mount) {
				s->cwd_unknown = 0;
				break;
			}
			dentry = rd_ptr((void *)mount, EDR_OFF_MOUNT_MOUNTPOINT);
			mnt = up + EDR_OFF_MOUNT_MNT;
			hidden = 1;
			continue;
		}
		__u64 up = rd_ptr((void *)dentry, EDR_OFF_DENTRY_PARENT);
		if (up == dentry || !up) {
			s->cwd_unknown = !up;
			break;
		}
		__u32 k = s->ncwd;
		if (k < EDR_CWD_DEPTH) {
			s->cwd_names[BOUNDED(k, EDR_CWD_DEPTH)] =
				rd_ptr((void *)dentry, EDR_OFF_DENTRY_NAME);
			s->ncwd = k + 1;
		}
		dentry = up;
	}
}

/* The cwd as a path for the event, from the names the walk kept (root first).  The write
 * position lives in the scratch map: in a register the verifier tracked a different range per
 * name and per path, and this loop alone cost 170 000 verified instructions. */
static __always_inline void cwd_string(struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	s->cpos = 0;
	for (int i = EDR_CWD_DEPTH - 1; i >= 0; i--) {
		if (i >= s->ncwd)
			continue;
		__u32 pos = s->cpos;
		if (pos + 1 >= EDR_CWD_MAX) {
			ev->flags |= EDR_F_CWD_TRUNCATED;
			break;
		}
		s->cwdbuf[BOUNDED(pos, EDR_CWD_MAX)] = '/';
		long n = bpf_probe_read_kernel_str(&s->cwdbuf[BOUNDED(pos + 1, EDR_CWD_MAX)], 256,
						   (void *)s->cwd_names[i & (EDR_CWD_DEPTH - 1)]);
		s->cpos = pos + 1 + (n > 1 ? n - 1 : 0);
		asm volatile("" ::: "memory");
	}
	__u32 pos = s->cpos;
	if (!pos) {
		s->cwdbuf[0] = '/';
		pos = 1;
	}
	if (pos > EDR_CWD_MAX) {
		pos = EDR_CWD_MAX;
		ev->flags |= EDR_F_CWD_TRUNCATED;
	}
	if (s->cwd_unknown)
		ev->flags |= EDR_F_CWD_UNKNOWN;
	bpf_probe_read_kernel(ev->cwd, EDR_CWD_MAX, s->cwdbuf);
	ev->cwd_len = pos;
}

/* Read the context that rules of this group need, once per exec, only for rules whose argv
 * conditions hold. */
static __always_inline void need_ctx(struct edr_scratch *s, struct edr_group *g)
{
	s->want = 0;
	for (int i = 0; i < EDR_RULES_PER_GROUP; i++) {
		if (i >= g->n_rules)
			break;
		struct edr_rule_slot *rs = &g->rules[i];
		if (rs->flags && (s->mask & rs->need) == rs->need)
			s->want |= rs->flags;
	}
	asm volatile("" ::: "memory");
	__u32 want = s->want & ~s->ctx_done;
	if (want & EDR_CTX_PARENT)
		parent_ctx(s);
	if (want & EDR_CTX_CWD)
		cwd_ctx(s);
}

/* The rule's parent and cwd sets hold (both read by need_ctx before). */
static __always_inline int ctx_holds(struct edr_scratch *s, struct edr_rule *r)
{
	if (r->parents && !(r->parents & s->pbits))
		return 0;
	if (!r->cwds)
		return 1;
	if (s->cwd_unknown) /* fail closed where the policy says unknown blocks, never allows */
		return s->unscanned_block && r->action != EDR_ACTION_ALLOW;
	return (r->cwds & s->cbits) != 0;
}

/* Match the group's rule slots against the condition bits and remember the best rules. */
static __always_inline void judge_group(struct edr_scratch *s, struct edr_group *g)
{
#if EDR_WITH_UIDS
	__u32 uid = (__u32)bpf_get_current_uid_gid();
#endif
#if EDR_WITH_CTX
	if (g->flags)
		need_ctx(s, g);
#endif
	for (int i = 0; i < EDR_RULES_PER_GROUP; i++) {
		if (i >= g->n_rules)
			break;
		struct edr_rule_slot *rs = &g->rules[i];
		if ((s->mask & rs->need) != rs->need)
			continue;
		__u32 ri = s->slot * EDR_MAX_RULES + rs->rule;
		struct edr_rule *r = rules.lookup(&ri);
		if (!r)
			continue;
		if (r->fileless && !s->fileless)
			continue;
#if EDR_WITH_UIDS
		if (r->n_uids) {
			/* the verdict in the scratch map, the list end by break: paths that differ
			 * only there merge (with a register flag this loop doubled every path) */
			s->uid_ok = 0;
			for (int u = 0; u < EDR_UIDS_PER_RULE; u++) {
				if (u >= r->n_uids)
					break;
				if (r->uids[u] == uid)
					s->uid_ok = 1;
			}
			asm volatile("" ::: "memory");
			if (!s->uid_ok)
				continue;
		}
#endif
#if EDR_WITH_CTX
		if (rs->flags && !ctx_holds(s, r))
			continue;
#endif
		if (r->action == EDR_ACTION_ALLOW && rs->rule < s->best_allow)
			s->best_allow = rs->rule;
		else if (r->action == EDR_ACTION_BLOCK && rs->rule < s->best_block)
			s->best_block = rs->rule;
		else if (r->action == EDR_ACTION_LOG && rs->rule < s->best_log)
			s->best_log = rs->rule;
	}
}

static __always_inline void emit(void *ctx, struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	__u32 size = offsetof(struct edr_event, args) + CLAMP_LEN(ev->args_len, EDR_ARGS_MAX);
#ifdef EDR_USE_PERFBUF
	if (events.perf_submit(ctx, ev, size))
		count(EDR_CNT_LOST);
#else
	/* Only a kill wakes the agent at once; other events wait for its next poll (<= 200 ms):
	 * a wake-up per logged exec cost more than the exec itself (bench/exec_overhead). */
	__u64 flags = ev->action == EDR_EV_BLOCKED ? 0 : BPF_RB_NO_WAKEUP;
	if (events.ringbuf_output(ev, size, flags))
		count(EDR_CNT_LOST);
#endif
}

/* Tail call into this stage's prog array (a prog array serves one program type only);
 * ``lsm`` is a constant in every caller, so clang keeps one of the two calls. */
static __always_inline void tail(void *ctx, __u32 idx, int lsm)
{
#ifdef EDR_WITH_LSM
	if (lsm) {
		progs_lsm.call(ctx, idx);
		return;
	}
#endif
	progs.call(ctx, idx);
}

/*
 * Turn the best rules into a verdict.  At exec time a block is a SIGKILL; in the LSM hook it
 * is -EPERM returned to execve (the exec never happens).  Returns the LSM verdict.
 */
static __always_inline int finish(void *ctx, struct edr_scratch *s, int lsm)
{
	struct edr_event *ev = &s->ev;
	struct edr_config *cfg = config.lookup(&s->slot);
	if (!cfg)
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (s->best_allow != EDR_NONE) {
		if (s->best_block != EDR_NONE || s->best_log != EDR_NONE)
			count(EDR_CNT_ALLOWED);
		return 0;
	}
	int verdict = 0;
	int block = s->best_block != EDR_NONE || (s->unscanned && cfg->unscanned_block);
	if (block) {
		ev->rule = s->best_block;
		ev->reason = s->best_block != EDR_NONE ? EDR_REASON_RULE : EDR_REASON_UNSCANNED;
#ifdef EDR_WITH_LSM
		if (!lsm && lsm_passed.lookup(&pid))
			ev->reason = EDR_REASON_RECHECK;
#endif
		if (cfg->mode == EDR_MODE_ENFORCE) {
			if (lsm)
				verdict = -EDR_EPERM;
			else
				bpf_send_signal(EDR_SIGKILL);
			ev->action = EDR_EV_BLOCKED;
			count(EDR_CNT_BLOCKED);
		} else {
			ev->action = EDR_EV_WOULD_BLOCK;
			count(EDR_CNT_WOULD_BLOCK);
		}
	} else if (s->best_log != EDR_NONE) {
		if (lsm)
			return 0; /* logged once, at exec time, with the argv the program received */
		ev->rule = s->best_log;
		ev->reason = EDR_REASON_RULE;
		ev->action = EDR_EV_LOGGED;
		count(EDR_CNT_LOGGED);
	} else {
		return 0;
	}
	/* a monitor-mode would_block is reported once, at exec time */
	if (lsm && !verdict)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 gid_uid = bpf_get_current_uid_gid();
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->pid = pid;
	ev->ppid = rd_u32((void *)rd_ptr(task, EDR_OFF_TASK_REAL_PARENT), EDR_OFF_TASK_TGID);
	ev->uid = (__u32)gid_uid;
	ev->gid = gid_uid >> 32;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->gen = cfg->gen;
	ev->backend = cfg->backend;
	ev->stage = lsm ? EDR_STAGE_LSM : EDR_STAGE_EXEC;
	if (s->scan_short || s->scan_failed)
		ev->flags |= EDR_F_UNSCANNED;
	if (!(s->ctx_done & EDR_CTX_PARENT))
		parent_ctx(s);
	if (!(s->ctx_done & EDR_CTX_CWD))
		cwd_ctx(s);
	cwd_string(s);
	emit(ctx, s);
	return verdict;
}

static __always_inline struct edr_group *cand_group(struct edr_scratch *s, __u32 ci)
{
	if (ci >= EDR_CAND_MAX)
		return 0;
	__u32 gi = s->slot * EDR_MAX_GROUPS + s->cand[BOUNDED(ci, EDR_CAND_MAX)];
	return groups.lookup(&gi);
}

/*
 * scan: one tail call = one window of EDR_ARGS_MAX argv bytes of group cand[ci]: from the new
 * mm at exec time, from the copy in lbuf in the LSM hook.  The verifier walks the loop once
 * per distinct entry state and once per exit, so everything it needs comes from the scratch
 * map (one state) and each exit only saves and tail-calls: scan again, else judge.
 */
static __always_inline int scan(void *ctx, int lsm)
{
	__u32 zero = 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	struct edr_group *g = cand_group(s, s->ci);
	const struct edr_trans *t = trans.lookup(&s->slot);
	const struct edr_accepts *a = accepts.lookup(&s->slot);
	if (!g || !t || !a)
		return 0;
	__u32 rest = s->scan_len - s->pos;
	s->n = rest > EDR_SCAN_WINDOW ? EDR_SCAN_WINDOW : rest;
	asm volatile("" ::: "memory");
	long err;
	if (lsm)
		err = bpf_probe_read_kernel(s->win, CLAMP_LEN(s->n, EDR_SCAN_WINDOW),
					    &s->lbuf[BOUNDED(s->pos, EDR_ARGS_MAX)]);
	else
		err = edr_read_user(s->win, CLAMP_LEN(s->n, EDR_SCAN_WINDOW),
				    (void *)(s->arg_start + s->pos));
	if (err) {
		s->scan_failed = 1;
		s->n = 0;
	}
	asm volatile("" ::: "memory");
	/* the mask only tells the verifier what is already true (n <= window); a clamp would
	 * give it a second path, n == window, and the loop would be walked twice */
	__u32 n = s->n & (2 * EDR_SCAN_WINDOW - 1);
	__u64 mask = s->mask;
	/* dfa_step without its row mask: e keeps its accept id above EDR_ROW_BITS, which the
	 * index mask drops (EDR_TRANS_MAX divides 1 << EDR_ROW_BITS); the row mask is applied
	 * once after the loop.  Every instruction here is verified once per argv byte. */
	__u32 e = s->state;
	const __u32 *tr = (const __u32 *)t->raw;
	const __u64 *ac = (const __u64 *)a->raw;
#pragma clang loop unroll(disable)
	for (__u64 i = 0; i < EDR_SCAN_WINDOW; i++) {
		/* Hide the induction from clang: otherwise it rewrites the loop into a pointer walk
		 * or a trip count compared with "!=", which the 6.1 verifier cannot bound. */
		asm volatile("" : "+r"(i));
		if (i >= n)
			break;
		e = tr[(e + g->cls[s->win[i & (EDR_SCAN_WINDOW - 1)]]) & (EDR_TRANS_MAX - 1)];
		mask |= ac[(e >> EDR_ROW_BITS) & (EDR_ACCEPT_IDS - 1)];
	}
	__u32 state = e & EDR_ROW_MASK;
	s->mask = mask;
	s->state = state;
	/* n again from the map: the loop's compares gave the register a different range in every
	 * turn, so the verifier walked this exit 4096 times instead of once */
	asm volatile("" ::: "memory");
	n = s->n & (2 * EDR_SCAN_WINDOW - 1);
	s->pos += n;
	if (n && s->pos < s->scan_len)
		tail(ctx, EDR_PROG_SCAN, lsm);
	tail(ctx, EDR_PROG_JUDGE, lsm);
	return 0;
}

/*
 * judge: one candidate group per call.  A group with a DFA is first sent through scan (BOS
 * fed here, the windows there, EOS here when it comes back).  After the last: the verdict.
 */
static __always_inline int judge(void *ctx, int lsm)
{
	__u32 zero = 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	__u32 ci = s->ci;
	struct edr_group *g = cand_group(s, ci);
	if (!g)
		return 0;
	const struct edr_trans *t = trans.lookup(&s->slot);
	const struct edr_accepts *a = accepts.lookup(&s->slot);
	if (!t || !a)
		return 0;
	if (g->start == EDR_NONE) {
		s->mask = 0;
	} else if (s->scanning != ci) {
		__u64 mask = 0;
		s->state = dfa_step(t, a, g, g->start, EDR_SYM_BOS, &mask);
		s->mask = mask;
		s->scanning = ci;
		s->pos = 0;
		if (s->scan_len) {
			tail(ctx, EDR_PROG_SCAN, lsm);
			count(EDR_CNT_ERRORS);
			return 0;
		}
		dfa_step(t, a, g, s->state, EDR_SYM_EOS, &s->mask);
	} else if (!s->scan_short && !s->scan_failed) {
		dfa_step(t, a, g, s->state, EDR_SYM_EOS, &s->mask);
	}
	if (s->scan_short || s->scan_failed)
		s->unscanned |= g->has_block;
	judge_group(s, g);
	s->ci = ci + 1;
	if (s->ci < s->ncand) {
		tail(ctx, EDR_PROG_JUDGE, lsm);
		count(EDR_CNT_ERRORS);
		return 0;
	}
	return finish(ctx, s, lsm);
}

int edr_scan(void *ctx)
{
	return scan(ctx, 0);
}

int edr_judge(void *ctx)
{
	return judge(ctx, 0);
}

/*
 * Fill the event head and the candidate groups from the executable's file and the path as
 * executed.  Returns the scratch to continue with, or 0 when nothing is to be judged.
 */
static __always_inline struct edr_scratch *begin(void *file, const char *fname)
{
	__u32 zero = 0;
	__u32 *ap = active.lookup(&zero);
	if (!ap)
		return 0;
	__u32 slot = *ap & 1;
	struct edr_config *cfg = config.lookup(&slot);
	if (!cfg || cfg->mode == 0)
		return 0;
	if (cfg->scoped && !in_scope(slot))
		return 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	struct edr_event *ev = &s->ev;
	s->slot = slot;
	s->ncand = 0;
	s->ci = 0;
	s->pos = 0;
	s->scanning = EDR_NONE;
	s->scan_short = 0;
	s->scan_failed = 0;
	s->unscanned = 0;
	s->best_allow = EDR_NONE;
	s->best_block = EDR_NONE;
	s->best_log = EDR_NONE;
	s->ctx_done = 0;
	s->unscanned_block = cfg->unscanned_block;
	ev->flags = 0;
	ev->cwd_len = 0;
	ev->rule = EDR_NONE;

	void *inode = (void *)rd_ptr(file, EDR_OFF_FILE_INODE);
	ev->ino = rd_ptr(inode, EDR_OFF_INODE_INO);
	ev->dev = rd_u32((void *)rd_ptr(inode, EDR_OFF_INODE_SB), EDR_OFF_SB_DEV);
	/* No name on any filesystem (memfd, O_TMPFILE, unlinked): a copy no path rule can name.
	 * A failed read (which zeroes its buffer) is not taken for nlink 0. */
	__u32 nlink = 1;
	if (!inode || bpf_probe_read_kernel(&nlink, sizeof(nlink),
					    (const char *)inode + EDR_OFF_INODE_NLINK))
		nlink = 1;
	s->fileless = nlink == 0;
	if (s->fileless)
		ev->flags |= EDR_F_FILELESS;
	void *dentry = (void *)rd_ptr(file, EDR_OFF_FILE_DENTRY);
	__builtin_memset(ev->exe_name, 0, sizeof(ev->exe_name));
	bpf_probe_read_kernel_str(ev->exe_name, sizeof(ev->exe_name),
				  (void *)rd_ptr(dentry, EDR_OFF_DENTRY_NAME));

	long fl = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), fname);
	if (fl < 1)
		fl = 1;
	ev->filename_len = fl - 1;
	if (fl >= EDR_FILENAME_MAX)
		ev->flags |= EDR_F_FILENAME_TRUNCATED;
	s->base = 0;
	for (int i = 0; i < EDR_FILENAME_MAX; i++) {
		char c = ev->filename[i];
		if (c == 0)
			break;
		if (c == '/')
			s->base = i + 1;
	}
	asm volatile("" ::: "memory");

	/* candidate groups: inode, as-executed basename, real basename, wildcard */
	s->ik.slot = slot;
	s->ik.dev = ev->dev;
	s->ik.ino = ev->ino;
	add_cands(s, inodes.lookup(&s->ik));
	add_name(s, &ev->filename[BOUNDED(s->base, EDR_FILENAME_MAX)]);
	add_name(s, ev->exe_name);
	if (s->fileless) {       /* the empty name (no file has it) keys the fileless groups */
		__builtin_memset(s->nk.name, 0, sizeof(s->nk.name));
		s->nk.slot = slot;
		add_cands(s, names.lookup(&s->nk));
	}
	if (cfg->n_wild) {
		struct edr_group_list wl = {.n = cfg->n_wild};
		__builtin_memcpy(wl.g, cfg->wild, sizeof(wl.g));
		add_cands(s, &wl);
	}
	return s->ncand ? s : 0;
}

/*
 * Tail-call budget (EDR_TAIL_CALLS): judge once per group, plus once more and the argv
 * windows for a group with a DFA.  What does not fit is not scanned (flagged).
 */
static __always_inline void fit_budget(struct edr_scratch *s)
{
	s->dfas = 0;
	for (int i = 0; i < EDR_CAND_MAX; i++) {
		if (i >= s->ncand)
			break;
		struct edr_group *g = cand_group(s, i);
		if (g && g->start != EDR_NONE)
			s->dfas += 1;
	}
	asm volatile("" ::: "memory");
	__u32 dfas = s->dfas;
	if (dfas) {
		__u32 fixed = s->ncand + dfas;
		__u32 windows = fixed < EDR_TAIL_CALLS ? (EDR_TAIL_CALLS - fixed) / dfas : 0;
		__u64 budget = (__u64)windows * EDR_SCAN_WINDOW;
		if (s->scan_len > budget) {
			s->scan_len = budget;
			s->scan_short = 1;
			s->ev.flags |= EDR_F_UNSCANNED;
		}
	}
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	count(EDR_CNT_EXECS);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *mm = (void *)rd_ptr(task, EDR_OFF_TASK_MM);
	if (!mm)
		return 0;
	/* the real executable is mm->exe_file; the path as executed is bprm->filename */
	unsigned short fn_off = args->data_loc_filename & 0xFFFF;
	struct edr_scratch *s = begin((void *)rd_ptr(mm, EDR_OFF_MM_EXE_FILE),
				      (char *)args + fn_off);
	if (!s)
		return 0;
	struct edr_event *ev = &s->ev;

	/* argv of the new image: first window copied into the event */
	__u64 arg_start = rd_ptr(mm, EDR_OFF_MM_ARG_START);
	__u64 arg_end = rd_ptr(mm, EDR_OFF_MM_ARG_END);
	__u64 total = arg_end > arg_start ? arg_end - arg_start : 0;
	if (total > 0x7fffffff)
		total = 0;
	s->arg_start = arg_start;
	ev->args_total = total;
	s->scan_len = total ? total - 1 : 0;
	__u32 len = total;
	if (len > EDR_ARGS_MAX) {
		len = EDR_ARGS_MAX;
		ev->flags |= EDR_F_ARGS_TRUNCATED;
	}
	if (len && edr_read_user(ev->args, CLAMP_LEN(len, EDR_ARGS_MAX), (void *)arg_start))
		len = 0;
	ev->args_len = len;
	fit_budget(s);
	progs.call(args, EDR_PROG_JUDGE);
	count(EDR_CNT_ERRORS);
	return 0;
}

#ifdef EDR_WITH_LSM
int edr_lsm_scan(void *ctx)
{
	return scan(ctx, 1);
}

int edr_lsm_judge(void *ctx)
{
	return judge(ctx, 1);
}

/*
 * Backend "lsm": bprm_check_security(bprm), before the exec is committed.  argv is not in a
 * mm we can read yet, so it is copied from the calling process (its registers still hold the
 * execve/execveat arguments).  Another thread may change that memory after the kernel copied
 * it: whatever passes here is judged again at sched_process_exec on the argv the program
 * really received (a block there carries reason "recheck").  Anything this hook cannot read
 * completely is left to that second check.
 */
int edr_lsm_check(unsigned long long *ctx)
{
	void *bprm = (void *)ctx[0];
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	lsm_passed.delete(&pid); /* set again below only if this hook judges this exec */
	struct edr_scratch *s = begin((void *)rd_ptr(bprm, EDR_OFF_BPRM_FILE),
				      (const char *)rd_ptr(bprm, EDR_OFF_BPRM_FILENAME));
	if (!s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	void *regs = (void *)bpf_task_pt_regs(task);
	__u64 nr = rd_ptr(regs, offsetof(struct pt_regs, orig_ax));
	__u64 argv;
	if (nr == EDR_NR_EXECVE)
		argv = rd_ptr(regs, offsetof(struct pt_regs, si));
	else if (nr == EDR_NR_EXECVEAT)
		argv = rd_ptr(regs, offsetof(struct pt_regs, dx));
	else
		return 0;
	s->lpos = 0;
	s->ldone = 0;
	for (int i = 0; i < EDR_LSM_ARGS; i++) {
		__u64 p = 0;
		if (edr_read_user(&p, sizeof(p), (void *)(argv + i * 8)))
			break;
		if (!p) {
			s->ldone = 1;
			break;
		}
		__u32 off = s->lpos;
		if (off >= EDR_ARGS_MAX)
			break;
		long n = edr_read_user_str(&s->lbuf[BOUNDED(off, EDR_ARGS_MAX)],
					   EDR_ARGS_MAX, (void *)p);
		if (n <= 0)
			break;
		s->lpos = off + n;
	}
	asm volatile("" ::: "memory");
	if (!s->ldone || s->lpos > EDR_ARGS_MAX)
		return 0; /* not all of argv in hand: the exec-time check decides */
	__u32 total = s->lpos;
	struct edr_event *ev = &s->ev;
	ev->args_total = total;
	s->scan_len = total ? total - 1 : 0;
	if (total && bpf_probe_read_kernel(ev->args, CLAMP_LEN(total, EDR_ARGS_MAX), s->lbuf))
		total = 0;
	ev->args_len = total;
	fit_budget(s);
	__u32 one = 1;
	lsm_passed.update(&pid, &one); /* judged here: a block at exec time is a "recheck" */
	progs_lsm.call(ctx, EDR_PROG_JUDGE);
	count(EDR_CNT_ERRORS);
	return 0;
}
#endif
