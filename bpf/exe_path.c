// SPDX-License-Identifier: GPL-2.0
/* exe_path.c - process.executable from the kernel: the path of the file really executed.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

/*
 * Walk the executable's f_path (bprm->file, or mm->exe_file at exec time) up to the root of
 * its mount namespace: a dentry at the root of its mount continues at the mountpoint in the
 * parent mount, as the cwd walk does.  The walk ignores the task's root on purpose: a copy
 * of rm in a chroot is named by its full path (/srv/jail/usr/bin/rm), never as the chroot
 * sees it.  bpf_d_path would do this for us but only from a few hooks (not tracepoints), and
 * it stops at the task's root.  Names are kept leaf first; more than EDR_CWD_DEPTH of them
 * leave the path partial (EDR_F_EXE_PATH_PARTIAL: the event carries the tail).
 */
static __always_inline void exe_walk(struct edr_scratch *s)
{
	s->nexe = 0;
	s->exe_partial = 1;
	if (!s->exe_file)
		return;
	/* the walk's position lives in the scratch map: with the cwd walk inlined into the same
	 * judge program, locals here pushed its stack past 512 bytes */
	s->ewd = rd_ptr((void *)s->exe_file, EDR_OFF_FILE_DENTRY);
	s->ewm = rd_ptr((void *)s->exe_file, EDR_OFF_FILE_MNT);
	/* unrolled: rolled, LLVM 14 (Debian 12's BCC) laid the loop out with a fall-through
	 * into its head, a back-edge 6.1's verifier refuses */
#pragma unroll
	for (int i = 0; i < 2 * EDR_CWD_DEPTH; i++) {
		if (s->ewd == rd_ptr((void *)s->ewm, EDR_OFF_VFSMOUNT_ROOT)) {
			__u64 mount = s->ewm - EDR_OFF_MOUNT_MNT;
			__u64 up = rd_ptr((void *)mount, EDR_OFF_MOUNT_PARENT);
			if (up == mount || !up) {
				s->exe_partial = !up;
				break;
			}
			s->ewd = rd_ptr((void *)mount, EDR_OFF_MOUNT_MOUNTPOINT);
			s->ewm = up + EDR_OFF_MOUNT_MNT;
			continue;
		}
		__u64 up = rd_ptr((void *)s->ewd, EDR_OFF_DENTRY_PARENT);
		__u32 k = s->nexe;
		if (k >= EDR_CWD_DEPTH)
			break;
		s->exe_names[BOUNDED(k, EDR_CWD_DEPTH)] = rd_ptr((void *)s->ewd,
								 EDR_OFF_DENTRY_NAME);
		s->nexe = k + 1;
		if (up == s->ewd || !up) { /* a root that is no mount's (an unlinked tree) */
			s->exe_partial = !up;
			break;
		}
		s->ewd = up;
	}
}

/* The names, root first, as one path in the event (the cwd_string way: the write position
 * lives in the scratch map, which keeps the verifier's work small). */
static __always_inline void exe_path(struct edr_scratch *s)
{
	struct edr_event *ev = &s->ev;
	exe_walk(s);
	s->epos = 0;
#pragma clang loop unroll(disable)
	for (int i = EDR_CWD_DEPTH - 1; i >= 0; i--) {
		if (i >= s->nexe)
			continue;
		__u32 pos = s->epos;
		if (pos + 1 >= EDR_EXE_PATH_MAX) {
			s->exe_partial = 1;
			break;
		}
		s->exebuf[BOUNDED(pos, EDR_EXE_PATH_MAX)] = '/';
		long n = bpf_probe_read_kernel_str(&s->exebuf[BOUNDED(pos + 1, EDR_EXE_PATH_MAX)],
						   256, (void *)s->exe_names[i & (EDR_CWD_DEPTH - 1)]);
		s->epos = pos + 1 + (n > 1 ? n - 1 : 0);
		asm volatile("" ::: "memory");
	}
	__u32 pos = s->epos;
	if (pos > EDR_EXE_PATH_MAX) {
		pos = EDR_EXE_PATH_MAX;
		s->exe_partial = 1;
	}
	if (s->exe_partial)
		ev->flags |= EDR_F_EXE_PATH_PARTIAL;
	bpf_probe_read_kernel(ev->exe_path, EDR_EXE_PATH_MAX, s->exebuf);
	ev->exe_path_len = pos;
}

/* Tail-call target EDR_PROG_EMIT: the event's parent, cwd and executable path, then the event;
 * returns finish()'s verdict. */
static __always_inline int emit_with_path(void *ctx)
{
	__u32 zero = 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	if (!(s->ctx_done & EDR_CTX_PARENT))
		parent_ctx(s);
	if (!(s->ctx_done & EDR_CTX_CWD))
		cwd_ctx(s);
	cwd_string(s);
	exe_path(s);
	emit(ctx, s);
	return s->verdict;
}

int edr_emit(void *ctx)
{
	return emit_with_path(ctx);
}

#if EDR_WITH_LSM
int edr_lsm_emit(void *ctx)
{
	/* 6.12's verifier checks an LSM program's return value is in [-4095, 0]: the verdict
	 * read back from the scratch map is any u32 to it */
	return emit_with_path(ctx) == -EDR_EPERM ? -EDR_EPERM : 0;
}
#endif
