// SPDX-License-Identifier: GPL-2.0
/* candidates.c - the candidate groups of one exec and its tail-call budget.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

/*
 * Loop-carried values live in the scratch map, not in registers: the verifier does not track
 * map contents, so paths that differ only there merge instead of multiplying.
 */
static __always_inline void add_cands(struct edr_scratch *s, struct edr_group_list *l)
{
	if (!l)
		return;
	/* groups the agent could not list for this key (host links): never silent */
	if (l->over) {
		s->dropped = 1;
		s->dropped_block |= l->over & EDR_BLOCK_RULE;
	}
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
		if (s->dup)
			continue;
		if (n < EDR_CAND_MAX) {
			s->cand[BOUNDED(n, EDR_CAND_MAX)] = l->g[i & (EDR_GROUPS_PER_KEY - 1)];
			s->ncand = n + 1;
			continue;
		}
		/* one group more than the kernel evaluates: fail closed if it could block */
		s->dropped = 1;
		__u32 gi = s->slot * EDR_MAX_GROUPS + l->g[i & (EDR_GROUPS_PER_KEY - 1)];
		struct edr_group *g = groups.lookup(&gi);
		if (!g || (g->has_block & EDR_BLOCK_RULE))
			s->dropped_block = EDR_BLOCK_RULE;
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

static __always_inline struct edr_group *cand_group(struct edr_scratch *s, __u32 ci)
{
	if (ci >= EDR_CAND_MAX)
		return 0;
	__u32 gi = s->slot * EDR_MAX_GROUPS + s->cand[BOUNDED(ci, EDR_CAND_MAX)];
	return groups.lookup(&gi);
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
	s->dropped = 0;
	s->dropped_block = 0;
	ev->flags = 0;
	ev->cwd_len = 0;
	ev->rule = EDR_NONE;

	s->exe_file = (__u64)file;
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
		add_size_cands(s, inode); /* identity.c */
	}
	if (cfg->n_wild) {
		struct edr_group_list wl = {.n = cfg->n_wild};
		__builtin_memcpy(wl.g, cfg->wild, sizeof(wl.g));
		add_cands(s, &wl);
	}
	if (s->dropped) {
		ev->flags |= EDR_F_DROPPED;
		count(EDR_CNT_DROPPED);
	}
	s->loader = is_loader(ev->exe_name); /* identity.c: judged as PROGRAM once argv is read */
	return s->ncand || s->loader ? s : 0;
}

/*
 * Tail-call budget (EDR_TAIL_CALLS): one judge call per group plus one to start, and the argv
 * windows for a group with a DFA, shared evenly.  What does not fit is not scanned (flagged).
 * edrfleet/policy/simulate.py computes the same budget: keep them together.
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
		__u32 fixed = s->ncand + 1;
		__u32 windows = fixed < EDR_TAIL_CALLS ? (EDR_TAIL_CALLS - fixed) / dfas : 0;
		__u64 budget = (__u64)windows * EDR_SCAN_WINDOW;
		if (s->scan_len > budget) {
			s->scan_len = budget;
			s->scan_short = 1;
			s->ev.flags |= EDR_F_UNSCANNED;
		}
	}
}
