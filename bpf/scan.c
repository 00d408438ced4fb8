// SPDX-License-Identifier: GPL-2.0
/* scan.c - the DFA scan of argv, one window per tail call, and the judge per group.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

#define EDR_ROW_MASK ((1u << EDR_ROW_BITS) - 1)

/* The "trans" value holding group g's DFA (edr_group.part of the slot's EDR_TRANS_PARTS). */
static __always_inline const struct edr_trans *trans_of(struct edr_scratch *s,
							const struct edr_group *g)
{
	s->tkey = s->slot * EDR_TRANS_PARTS + (g->part < EDR_TRANS_PARTS ? g->part : 0);
	return trans.lookup(&s->tkey);
}

/* One DFA step; branch free so a 4 KiB window stays within the verifier's limits. */
static __always_inline __u32 dfa_step(const struct edr_trans *t, const struct edr_accepts *a,
				      const struct edr_group *g, __u32 state, __u32 sym,
				      __u64 *mask)
{
	__u32 e = ((const __u32 *)t->raw)[(state + g->cls[sym]) & (EDR_TRANS_MAX - 1)];
	*mask |= ((const __u64 *)a->raw)[(e >> EDR_ROW_BITS) & (EDR_ACCEPT_IDS - 1)];
	return e & EDR_ROW_MASK;
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
	s->calls += 1;
	struct edr_group *g = cand_group(s, s->ci);
	if (!g)
		return 0;
	const struct edr_trans *t = trans_of(s, g);
	const struct edr_accepts *a = accepts.lookup(&s->slot);
	if (!t || !a)
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
#if EDR_WITH_CWDSYM
	/* A relative argument is joined to the cwd: a DFA that reads cwd-class symbols reads NUL
	 * as the column "NUL, then the cwd's class symbol" (the agent builds it); without a
	 * class (csym 0) that is NUL's own column.  The byte classes are read from a copy with
	 * NUL's replaced: any per-byte work here costs the verifier 4096 times (a select in the
	 * loop took the 4 KiB window past its budget on 6.18).  A program without path matchers
	 * reads the group's table itself. */
	bpf_probe_read_kernel(s->lcls, sizeof(s->lcls), g->cls);
	s->lcls[0] = g->cls[(g->flags & EDR_CTX_CWDSYM ? s->csym : 0) & (EDR_CLS_PAD - 1)];
	asm volatile("" ::: "memory");
#define EDR_SCAN_CLS s->lcls
#else
#define EDR_SCAN_CLS g->cls
#endif
#pragma clang loop unroll(disable)
	for (__u64 i = 0; i < EDR_SCAN_WINDOW; i++) {
		/* Hide the induction from clang: otherwise it rewrites the loop into a pointer walk
		 * or a trip count compared with "!=", which the 6.1 verifier cannot bound. */
		asm volatile("" : "+r"(i));
		if (i >= n)
			break;
		e = tr[(e + EDR_SCAN_CLS[s->win[i & (EDR_SCAN_WINDOW - 1)]]) & (EDR_TRANS_MAX - 1)];
		mask |= ac[(e >> EDR_ROW_BITS) & (EDR_ACCEPT_IDS - 1)];
	}
#undef EDR_SCAN_CLS
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

/* Feed BOS to candidate ci's DFA and send it through scan.  Returns only when there is no
 * argv to scan (EOS fed here, the group is ready to judge) or the tail call failed (-1). */
static __always_inline int start_scan(void *ctx, struct edr_scratch *s, struct edr_group *g,
				      const struct edr_trans *t, const struct edr_accepts *a,
				      __u32 ci, int lsm)
{
	__u64 mask = 0;
	s->state = dfa_step(t, a, g, g->start, EDR_SYM_BOS, &mask);
	s->mask = mask;
	s->scanning = ci;
	s->pos = 0;
	if (s->scan_len) {
		tail(ctx, EDR_PROG_SCAN, lsm);
		count(EDR_CNT_ERRORS);
		return -1;
	}
	dfa_step(t, a, g, s->state, EDR_SYM_EOS, &s->mask);
	return 0;
}

/*
 * judge: one candidate group per call.  A group with a DFA is first sent through scan (BOS
 * fed here, the windows there, EOS here when it comes back); the call that judges a group
 * also starts the next one's scan, so a group costs its windows and one judge call
 * (fit_budget counts on it).  After the last: the verdict.
 */
static __always_inline int judge(void *ctx, int lsm)
{
	__u32 zero = 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	s->calls += 1;
	const struct edr_accepts *a = accepts.lookup(&s->slot);
	if (!a)
		return 0;
	__u32 ci = s->ci;
	/* ci == ncand at once: no candidate at all, a loader whose PROGRAM went unread (the
	 * verdict fails closed) */
	if (ci < s->ncand) {
		struct edr_group *g = cand_group(s, ci);
		if (!g)
			return 0;
		const struct edr_trans *t = trans_of(s, g);
		if (!t)
			return 0;
		if (g->start == EDR_NONE) {
			s->mask = 0;
		} else if (s->scanning != ci) {
			if (start_scan(ctx, s, g, t, a, ci, lsm))
				return 0;
		} else if (!s->scan_short && !s->scan_failed) {
			dfa_step(t, a, g, s->state, EDR_SYM_EOS, &s->mask);
		}
		if (s->scan_short || s->scan_failed)
			s->unscanned |= g->has_block & EDR_BLOCK_UNSCANNED;
#if EDR_WITH_PF
		if (ci == 0 && s->pf)
			expand_prefilter(s);
		else
#endif
			judge_group(s, g);
		s->ci = ci + 1;
	}
	if (s->ci >= s->ncand)
		return finish(ctx, s, lsm);
	struct edr_group *next = cand_group(s, s->ci);
	if (next && next->start != EDR_NONE && s->scan_len) {
		const struct edr_trans *t = trans_of(s, next);
		if (t)
			start_scan(ctx, s, next, t, a, s->ci, lsm);
		return 0;
	}
	tail(ctx, EDR_PROG_JUDGE, lsm);
	count(EDR_CNT_ERRORS);
	return 0;
}

int edr_scan(void *ctx)
{
	return scan(ctx, 0);
}

int edr_judge(void *ctx)
{
	return judge(ctx, 0);
}
