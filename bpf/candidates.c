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
		/* seen: one bit per group (EDR_MAX_GROUPS is a power of two), so a duplicate costs
		 * one test, not a walk over the candidates (16 x 16 compares per key otherwise) */
		__u32 g = l->g[i & (EDR_GROUPS_PER_KEY - 1)];
		__u64 bit = 1ULL << (g & 63);
		__u32 w = BOUNDED(g >> 6, EDR_MAX_GROUPS / 64);
		if (s->seen[w] & bit)
			continue;
		s->seen[w] |= bit;
		__u32 n = s->ncand;
		if (n < EDR_CAND_MAX) {
			s->cand[BOUNDED(n, EDR_CAND_MAX)] = g;
			s->ncand = n + 1;
			continue;
		}
		/* one group more than the kernel evaluates: fail closed if it could block */
		s->dropped = 1;
		__u32 gi = s->slot * EDR_MAX_GROUPS + g;
		struct edr_group *gr = groups.lookup(&gi);
		if (!gr || (gr->has_block & EDR_BLOCK_RULE))
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
 * Fill the event head and the candidate groups from the executable's file, the path as
 * executed and the first bytes the kernel read of the file (linux_binprm.buf).  Returns the scratch to continue with, or 0 when nothing is to be judged.
 */
static __always_inline struct edr_scratch *begin(void *file, const char *fname,
						 const char *head)
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
	s->csym = 0; /* no cwd class until cwd_class_ctx finds one (context.c) */
	s->unscanned_block = cfg->unscanned_block;
	s->dropped = 0;
	s->dropped_block = 0;
	s->calls = 0;
	s->pf = 0;
	__builtin_memset(s->seen, 0, sizeof(s->seen));
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

	/* candidate groups: the prefilter, inode, as-executed basename, real basename, fileless,
	 * size (a file not known by its inode), wildcard (the prefilter adds the groups whose literals it saw: expand_prefilter) */
#if EDR_WITH_PF
	if (cfg->pf_group < EDR_MAX_GROUPS) {
		s->cand[0] = cfg->pf_group;
		s->ncand = 1;
		s->pf = 1;
		s->seen[BOUNDED(cfg->pf_group >> 6, EDR_MAX_GROUPS / 64)] |=
			1ULL << (cfg->pf_group & 63);
	}
#endif
	s->ik.slot = slot;
	s->ik.dev = ev->dev;
	s->ik.ino = ev->ino;
	struct edr_group_list *known = inodes.lookup(&s->ik);
	add_cands(s, known);
	add_name(s, &ev->filename[BOUNDED(s->base, EDR_FILENAME_MAX)]);
	add_name(s, ev->exe_name);
	if (s->fileless) {       /* the empty name (no file has it) keys the fileless groups */
		__builtin_memset(s->nk.name, 0, sizeof(s->nk.name));
		s->nk.slot = slot;
		add_cands(s, names.lookup(&s->nk));
	}
	if (!known)              /* any file not known by its inode: judged by its size too */
		add_size_cands(s, inode, head); /* identity.c */
#if EDR_WITH_MULTICALL
	/* a multi-call binary (busybox): its applet is looked up once argv is read (add_applet) */
	s->multicall = mcinodes.lookup(&s->ik) != 0;
	if (!s->multicall) {
		__builtin_memset(s->nk.name, 0, sizeof(s->nk.name));
		s->nk.slot = slot;
		bpf_probe_read_kernel_str(s->nk.name, sizeof(s->nk.name), ev->exe_name);
		s->multicall = mcnames.lookup(&s->nk) != 0;
	}
#endif
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
#if EDR_WITH_MULTICALL
	if (s->multicall)
		return s;
#endif
	return s->ncand || s->loader ? s : 0;
}

#if EDR_WITH_MULTICALL
/* The end (NUL) and basename of the argv item at ``start`` of ev.args, read at most
 * EDR_APPLET_SCAN bytes far; aend stays 0 when it does not end there. */
static __always_inline void applet_item(struct edr_scratch *s, __u32 start)
{
	s->abase = start;
	s->aend = 0;
	for (int i = 0; i < EDR_APPLET_SCAN; i++) {
		__u32 k = start + i;
		if (k >= s->ev.args_len)
			break;
		char c = s->ev.args[BOUNDED(k, EDR_ARGS_MAX)];
		if (c == 0) {
			s->aend = k;
			break;
		}
		if (c == '/')
			s->abase = k + 1;
	}
	asm volatile("" ::: "memory");
}

/* argv[0]'s basename (in nk) is the executable's real basename: called by its own name. */
static __always_inline int own_name(struct edr_scratch *s)
{
	s->dup = 1;
	for (int i = 0; i < EDR_NAME_MAX; i++) {
		if (s->nk.name[i] != s->ev.exe_name[i])
			s->dup = 0;
	}
	asm volatile("" ::: "memory");
	return s->dup && s->nk.name[0];
}

/*
 * A multi-call binary runs the applet its argv[0] names, or its argv[1] when argv[0] is the
 * binary's own name or a multi-call name (busybox rm -rf x): that basename's groups are candidates too, as if the
 * applet were an executable of its own (a symlink rm -> busybox is found by its as-executed
 * name already).  Called once ev.args holds argv; returns the number of candidates.
 */
static __always_inline __u32 add_applet(struct edr_scratch *s)
{
	if (!s->multicall)
		return s->ncand;
	applet_item(s, 0);
	if (s->aend) {
		add_name(s, (const char *)&s->ev.args[BOUNDED(s->abase, EDR_ARGS_MAX)]);
		if (mcnames.lookup(&s->nk) || own_name(s)) {
			applet_item(s, s->aend + 1);
			if (s->aend)
				add_name(s, (const char *)&s->ev.args[BOUNDED(s->abase,
										EDR_ARGS_MAX)]);
		}
	}
	if (s->dropped)
		s->ev.flags |= EDR_F_DROPPED;
	return s->ncand;
}
#else
static __always_inline __u32 add_applet(struct edr_scratch *s)
{
	return s->ncand;
}
#endif

/*
 * Tail-call budget (EDR_TAIL_CALLS): one judge call per group plus one to start, and the argv
 * windows for a group with a DFA, shared evenly.  What does not fit is not scanned (flagged).
 * Called at the start (used = 1: the call into judge, from = 0) and after the prefilter
 * added its groups (used = the calls made, from = 1): the rest share what is left.
 * edrfleet/policy/simulate.py computes the same budget: keep them together.
 */
static __always_inline void fit_budget(struct edr_scratch *s, __u32 used, __u32 from)
{
	if (!from)
		s->scan_full = s->scan_len;
	s->scan_len = s->scan_full;
	s->scan_short = 0;
	s->dfas = 0;
	for (int i = 0; i < EDR_CAND_MAX; i++) {
		if (i >= s->ncand)
			break;
		struct edr_group *g = cand_group(s, i);
		if (i >= from && g && g->start != EDR_NONE)
			s->dfas += 1;
	}
	asm volatile("" ::: "memory");
	__u32 dfas = s->dfas;
	if (dfas) {
		__u32 fixed = s->ncand - from + used;
		__u32 windows = fixed < EDR_TAIL_CALLS ? (EDR_TAIL_CALLS - fixed) / dfas : 0;
		__u64 budget = (__u64)windows * EDR_SCAN_WINDOW;
		if (s->scan_len > budget) {
			s->scan_len = budget;
			s->scan_short = 1;
			s->ev.flags |= EDR_F_UNSCANNED;
		}
	}
}

#if EDR_WITH_PF
/*
 * The prefilter (cand[0]) has read argv: bit i of its mask makes group pf[i] a candidate, in
 * bit order while the cap allows; one more is dropped like in add_cands (fail closed when it
 * has a block rule).  Then the budget of the groups after it is computed again; a woken group
 * with a block rule that cannot read as far as the prefilter did makes the exec unscanned, and
 * so does a prefilter starved below its one window while a prefiltered group has a block rule.
 */
static __always_inline void expand_prefilter(struct edr_scratch *s)
{
	struct edr_config *cfg = config.lookup(&s->slot);
	if (!cfg)
		return;
	__u32 was = s->dropped;
	__u32 read = s->pos;   /* argv bytes the prefilter read */
	s->hit_block = 0;
	for (__u32 b = 0; b < EDR_PF_BITS; b++) {
		asm volatile("" : "+r"(b));
		if (b >= cfg->n_pf)
			break;
		if (!((s->mask >> (b & 63)) & 1))
			continue;
		__u32 n = s->ncand;
		if (n < EDR_CAND_MAX) {
			s->cand[BOUNDED(n, EDR_CAND_MAX)] = cfg->pf[b & (EDR_PF_BITS - 1)];
			s->ncand = n + 1;
			s->hit_block |= (cfg->pf_block >> (b & 63)) & 1;
			continue;
		}
		s->dropped = 1;
		if ((cfg->pf_block >> (b & 63)) & 1)
			s->dropped_block = EDR_BLOCK_RULE;
	}
	asm volatile("" ::: "memory");
	if (s->dropped && !was) {
		s->ev.flags |= EDR_F_DROPPED;
		count(EDR_CNT_DROPPED);
	}
	fit_budget(s, s->calls, 1);
	/* a group the prefilter woke may not read as far as the prefilter saw its literal (the
	 * prefilter took the windows): never fail open on that - unscanned, where it blocks */
	if (s->hit_block && s->scan_len < read)
		s->unscanned = EDR_BLOCK_UNSCANNED;
	/* within the compiler's candidate cap the prefilter reads at least one window; more
	 * candidates (links on the host) can leave it none: a prefiltered block rule it could
	 * not look for fails closed, never open */
	__u32 owed = s->scan_full < EDR_SCAN_WINDOW ? s->scan_full : EDR_SCAN_WINDOW;
	if (cfg->pf_block && read < owed)
		s->unscanned = EDR_BLOCK_UNSCANNED;
}
#endif
