// SPDX-License-Identifier: GPL-2.0
/* loader.c - the dynamic loader run directly is judged as the program it runs.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

/*
 * `ld-linux-x86-64.so.2 [OPTION...] PROGRAM [ARG...]` maps PROGRAM itself: the kernel only
 * ever executes the loader, and PROGRAM is opened, not executed.  glibc's rtld takes its
 * options one by one from argv[1] while each is exactly one of its own (strcmp), some with a
 * value; the first other argument is PROGRAM.  Each argument is compared by its 64-bit FNV-1a
 * hash (a file named to collide with an option would need a 2^64 search).  PROGRAM's basename
 * adds its rule groups, and argv is scanned from PROGRAM on: the rules see the argv PROGRAM
 * receives.  The event keeps the whole argv (EDR_F_LOADER).  PROGRAM is named by its basename
 * only: the kernel has no inode for a path in argv.
 */
#define EDR_FNV_OFFSET 0xcbf29ce484222325ULL
#define EDR_FNV_PRIME 0x100000001b3ULL
#define EDR_LOADER_ARGS 16  /* loader arguments read for PROGRAM: options and values */
#define EDR_LOADER_OPT 24   /* bytes of an argument hashed: the longest option has 22 */

static __always_inline int loader_option(__u64 h)
{
	if (h == 0x7ef3a12304d5d1eeULL || /* --library-path */
	    h == 0x638c7b60c598ca5eULL || /* --inhibit-rpath */
	    h == 0xe463e5822f01fdb6ULL || /* --audit */
	    h == 0xc3509065c096f3d4ULL || /* --preload */
	    h == 0xb7a0c846cdf5ef13ULL || /* --argv0 */
	    h == 0x817bedb492f1c1eeULL || /* --glibc-hwcaps-prepend */
	    h == 0xfd743853e492b652ULL)   /* --glibc-hwcaps-mask */
		return 2;
	if (h == 0x8eb3c4c22078a137ULL || /* --list */
	    h == 0x55ffc1e6eb3978f2ULL || /* --verify */
	    h == 0xfdd4226d1b382c9dULL || /* --inhibit-cache */
	    h == 0x31379e40fdbba74aULL || /* --list-tunables */
	    h == 0xaf4192b927be2d46ULL || /* --list-diagnostics */
	    h == 0x5daaf2e4c8a8bf3cULL || /* --help */
	    h == 0x7139422d517b1111ULL)   /* --version */
		return 1;
	return 0;
}

/* Find PROGRAM in the loader's argv (the event's copy: the first EDR_ARGS_MAX bytes), one
 * argument per turn: its length from a string read, its hash over at most EDR_LOADER_OPT bytes
 * (no option is longer).  State lives in the scratch map to keep the verifier's paths few. */
static __always_inline void loader_program(struct edr_scratch *s, int lsm)
{
	struct edr_event *ev = &s->ev;
	s->lprog = EDR_NONE;
	s->lstart = 0;
	s->lskip = 0;
	for (int k = 0; k < EDR_LOADER_ARGS; k++) {
		__u32 pos = s->lstart;
		if (pos >= ev->args_len || pos >= EDR_ARGS_MAX)
			break;
		long n = bpf_probe_read_kernel_str(s->win, EDR_ARGS_MAX,
						   &ev->args[BOUNDED(pos, EDR_ARGS_MAX)]);
		if (n <= 0)
			break;
		s->lstart = pos + n;
		if (k == 0)
			continue; /* the loader's own argv[0] */
		if (s->lskip) {
			s->lskip = 0;
			continue;
		}
		s->lhash = EDR_FNV_OFFSET;
		for (int i = 0; i < EDR_LOADER_OPT; i++) {
			if (i >= n - 1)
				break;
			s->lhash = (s->lhash ^ s->win[i]) * EDR_FNV_PRIME;
		}
		int o = n - 1 <= EDR_LOADER_OPT ? loader_option(s->lhash) : 0;
		if (!o) {
			s->lprog = pos;
			break;
		}
		s->lskip = o == 2;
	}
	asm volatile("" ::: "memory");
	__u32 off = s->lprog;
	if (off == EDR_NONE || off >= EDR_ARGS_MAX) {
		/* more loader options than read, or PROGRAM past the event's argv: whatever the
		 * loader runs was not judged - never silent (it blocks where a group could) */
		if (s->lstart < ev->args_total) {
			s->dropped = 1;
			s->dropped_block = EDR_BLOCK_RULE;
			ev->flags |= EDR_F_DROPPED;
		}
		return;
	}
	ev->flags |= EDR_F_LOADER;
	s->lbase = off;
	for (int i = 0; i < EDR_FILENAME_MAX; i++) { /* PROGRAM's basename */
		__u32 p = off + i;
		if (p >= EDR_ARGS_MAX)
			break;
		__u8 c = ev->args[BOUNDED(p, EDR_ARGS_MAX)];
		if (!c)
			break;
		if (c == '/')
			s->lbase = p + 1;
	}
	asm volatile("" ::: "memory");
	add_name(s, (const char *)&ev->args[BOUNDED(s->lbase, EDR_ARGS_MAX)]);
	s->scan_len = s->scan_len > off ? s->scan_len - off : 0;
	if (lsm) /* the LSM scan reads lbuf from 0: PROGRAM's argv moves to its start */
		bpf_probe_read_kernel(s->lbuf, EDR_ARGS_MAX, &s->lbuf[BOUNDED(off, EDR_ARGS_MAX)]);
	else
		s->arg_start += off;
}
