// SPDX-License-Identifier: GPL-2.0
/* verdict.c - a group's rules against the scan's condition bits; the verdict; the event.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

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

/* The "logagg" value of the event's (rule, executable, action) on this CPU; 0: map full.  The
 * key and the fresh value live in the scratch map: on judge's stack (this is inlined there as
 * emit's fallback) they pushed it past 512 bytes with the context matchers compiled in. */
static __always_inline struct edr_logagg *fold_key(struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	s->lak.gen = ev->gen;
	s->lak.rule = ev->rule;
	s->lak.dev = ev->dev;
	s->lak.action = ev->action;
	s->lak.ino = ev->ino;
	struct edr_logagg *a = logagg.lookup(&s->lak);
	if (a)
		return a;
	__builtin_memset(&s->lav, 0, sizeof(s->lav));
	s->lav.window_ns = ev->ts_ns;
	logagg.insert(&s->lak, &s->lav);
	return logagg.lookup(&s->lak);
}

/* A block event its ring buffer refused: counted under its key, so the agent writes a summary
 * (rule, executable, count) from the key's last event it has. */
static __always_inline void keep_refused_block(struct edr_scratch *s)
{
	struct edr_logagg *a = fold_key(s);
	if (!a)
		return; /* the map is full: counted in EDR_CNT_LOST_BLOCK only */
	a->seen += 1;
	a->window_ns = s->ev.ts_ns;
}

/* Fold a logged exec into its (rule, executable) key on this CPU.  Returns 1 when the exec
 * sends no event (counted into the key's next one, or the agent's summary); 0 when it sends
 * one, with ev->count the execs it stands for.  Per CPU, so nothing else writes the value. */
static __always_inline int fold_log(struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	struct edr_logagg *a = fold_key(s);
	if (!a)
		return 0; /* the map is full: this key sends every exec (count 1, agg_seq 0) */
	a->seen += 1;
	if (ev->ts_ns - a->window_ns >= EDR_LOGAGG_WINDOW_MS * 1000000ULL) {
		a->window_ns = ev->ts_ns;
		a->in_window = 0;
	}
	a->in_window += 1;
	if (a->in_window > EDR_LOGAGG_BURST) {
		count(EDR_CNT_FOLDED);
		return 1;
	}
	ev->count = a->seen - a->sent;
	ev->agg_seq = a->seen;
	ev->agg_cpu = bpf_get_smp_processor_id();
	a->sent = a->seen;
	return 0;
}

static __always_inline void emit(void *ctx, struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	__u32 size = offsetof(struct edr_event, args) + CLAMP_LEN(ev->args_len, EDR_ARGS_MAX);
	int logged = ev->action == EDR_EV_LOGGED;
	ev->count = 1;
	ev->agg_seq = 0;
	ev->agg_cpu = 0;
	if (logged && fold_log(s))
		return;
#if EDR_USE_PERFBUF
	if (events.perf_submit(ctx, ev, size)) {
#else
	long err;
	if (logged) {
		/* a wake-up per logged exec cost more than the exec itself (bench/exec_overhead):
		 * one per EDR_LOG_WAKE_EVERY of a CPU, the agent's poll picks up the rest */
		__u32 which = EDR_CNT_LOGGED;
		__u64 *n = counters.lookup(&which);
		__u64 flags = n && *n % EDR_LOG_WAKE_EVERY == 0 ? BPF_RB_FORCE_WAKEUP :
			BPF_RB_NO_WAKEUP;
		err = events.ringbuf_output(ev, size, flags);
	} else {
		err = events_block.ringbuf_output(ev, size, BPF_RB_FORCE_WAKEUP);
	}
	if (err) {
#endif
		count(EDR_CNT_LOST);
		if (logged)
			count_n(EDR_CNT_LOST_LOG, ev->count);
		else {
			count(EDR_CNT_LOST_BLOCK);
			keep_refused_block(s);
		}
	}
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
	/* what was not evaluated blocks like what was not scanned (limits.unscanned) */
	int block = s->best_block != EDR_NONE ||
		((s->unscanned || s->dropped_block) && cfg->unscanned_block);
	if (block) {
		ev->rule = s->best_block;
		ev->reason = s->best_block != EDR_NONE ? EDR_REASON_RULE :
			s->dropped_block ? EDR_REASON_DROPPED : EDR_REASON_UNSCANNED;
#if EDR_WITH_LSM
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
	/* the event's parent, cwd and path walks in a program of their own: inlined here they
	 * pushed judge's stack past 512 bytes (with the context matchers compiled in) */
	s->verdict = verdict;
	ev->exe_path_len = 0;
	tail(ctx, EDR_PROG_EMIT, lsm);
	emit(ctx, s); /* the tail call failed: the event goes without the executable's path */
	return verdict;
}
