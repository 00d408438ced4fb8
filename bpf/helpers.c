// SPDX-License-Identifier: GPL-2.0
/* helpers.c - reads, bounds for the verifier, counters, scope, tail calls.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

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

static __always_inline void count_n(__u32 which, __u64 n)
{
	__u64 *c = counters.lookup(&which);
	if (c)
		*c += n;
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
#if EDR_WITH_SCOPE
	struct edr_scope_key k = {.slot = slot};
	for (int level = 0; level < EDR_CGROUP_DEPTH; level++) {
		k.cgid = bpf_get_current_ancestor_cgroup_id(level);
		if (k.cgid == 0)
			break;
		if (scope.lookup(&k))
			return 1;
	}
#endif
	/* without EDR_WITH_SCOPE (no ancestor-cgroup helper for tracepoints: 5.10) the agent loads
	 * no scoped policy, so cfg->scoped is never set and this is never asked */
	return 0;
}

/* Tail call into this stage's prog array (a prog array serves one program type only);
 * ``lsm`` is a constant in every caller, so clang keeps one of the two calls. */
static __always_inline void tail(void *ctx, __u32 idx, int lsm)
{
#if EDR_WITH_LSM
	if (lsm) {
		progs_lsm.call(ctx, idx);
		return;
	}
#endif
	progs.call(ctx, idx);
}
