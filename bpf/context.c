// SPDX-License-Identifier: GPL-2.0
/* context.c - match.parent, .ancestor, .cwd and .inet_stdio: the parent's executable, the
 * ancestors' walk, the cwd walk, the standard streams of the task and of its parent.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

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

#if EDR_WITH_ANCESTORS || EDR_WITH_STDIO || EDR_WITH_CWDSYM
/* rd_ptr into the scratch map: each inlined rd_ptr keeps a stack slot of its own, and the
 * judge program is near the 512-byte stack limit; these walks read through one map word. */
static __always_inline __u64 sc_ptr(struct edr_scratch *s, __u64 base, __u32 off)
{
	s->rd = 0;
	bpf_probe_read_kernel(&s->rd, sizeof(s->rd), (const char *)base + off);
	return s->rd;
}

/* inode_id through the scratch map: the key of an inode (s->ck) for these walks. */
static __always_inline void sc_inode_id(struct edr_scratch *s, __u64 inode)
{
	s->ck.slot = s->slot;
	s->ck.ino = sc_ptr(s, inode, EDR_OFF_INODE_INO);
	s->ck.dev = sc_ptr(s, sc_ptr(s, inode, EDR_OFF_INODE_SB), EDR_OFF_SB_DEV);
}
#endif

#if EDR_WITH_ANCESTORS
/*
 * The ancestors' executables: their parent-key bits OR-ed, from the parent up through
 * real_parent, EDR_ANCESTOR_DEPTH of them (a task without an mm, a kernel thread, adds none;
 * the walk ends at init_task, its own parent).  Wrappers in between (timeout, nohup, sh -c)
 * hide nothing closer than the limit.
 */
static __always_inline int ancestor_step(struct edr_scratch *s)
{
	if (!s->anc)
		return 0;
	__u64 mm = sc_ptr(s, s->anc, EDR_OFF_TASK_MM);
	__u64 file = mm ? sc_ptr(s, mm, EDR_OFF_MM_EXE_FILE) : 0;
	if (file) {
		sc_inode_id(s, sc_ptr(s, file, EDR_OFF_FILE_INODE));
		__u64 *v = pinodes.lookup(&s->ck);
		if (v)
			s->abits |= *v;
		__builtin_memset(s->ak.name, 0, sizeof(s->ak.name));
		s->ak.slot = s->slot;
		__u64 name = sc_ptr(s, sc_ptr(s, file, EDR_OFF_FILE_DENTRY), EDR_OFF_DENTRY_NAME);
		long n = bpf_probe_read_kernel_str(s->ak.name, sizeof(s->ak.name), (void *)name);
		if (n > 1 && n < EDR_NAME_MAX) {
			v = pnames.lookup(&s->ak);
			if (v)
				s->abits |= *v;
		}
	}
	__u64 up = sc_ptr(s, s->anc, EDR_OFF_TASK_REAL_PARENT);
	if (up == s->anc)
		return 0;
	s->anc = up;
	return 1;
}

/* Unrolled by hand: as a loop (clang ignores #pragma unroll here) the verifiers of 5.10 and
 * 6.1 kept a state per loop-counter range and branch and gave up ("sequence of 8193 jumps"). */
_Static_assert(EDR_ANCESTOR_DEPTH == 8, "ancestors_ctx takes EDR_ANCESTOR_DEPTH steps");
static __always_inline void ancestors_ctx(struct edr_scratch *s)
{
	s->ctx_done |= EDR_CTX_ANCESTORS;
	s->abits = 0;
	s->anc = sc_ptr(s, bpf_get_current_task(), EDR_OFF_TASK_REAL_PARENT);
	if (ancestor_step(s) && ancestor_step(s) && ancestor_step(s) && ancestor_step(s) &&
	    ancestor_step(s) && ancestor_step(s) && ancestor_step(s))
		ancestor_step(s);
}
#endif

#if EDR_WITH_STDIO
/* Is fd 0, 1 or 2 of this task a network socket?  files -> fdt -> fd[i] -> file: a socket's
 * inode has mode S_IFSOCK and its file's private_data is the struct socket, whose sk says the
 * family.  Pipes, ptys, files and unix socket pairs (sshd's sessions, pipelines) are not. */
static __always_inline int fd_inet(struct edr_scratch *s, __u64 fds, __u32 max, __u32 i)
{
	if (i >= max)
		return 0;
	__u64 file = sc_ptr(s, fds, i * sizeof(__u64));
	if (!file)
		return 0;
	__u16 mode = (__u16)sc_ptr(s, sc_ptr(s, file, EDR_OFF_FILE_INODE), EDR_OFF_INODE_MODE);
	if ((mode & EDR_S_IFMT) != EDR_S_IFSOCK)
		return 0;
	__u64 sock = sc_ptr(s, file, EDR_OFF_FILE_PRIVATE);
	__u64 sk = sock ? sc_ptr(s, sock, EDR_OFF_SOCKET_SK) : 0;
	__u16 family = sk ? (__u16)sc_ptr(s, sk, EDR_OFF_SK_FAMILY) : 0;
	return family == EDR_AF_INET || family == EDR_AF_INET6;
}

/* fds 0-2 by hand, for the reason ancestors_ctx gives */
_Static_assert(EDR_STDIO_FDS == 3, "stdio_inet checks EDR_STDIO_FDS descriptors");
static __always_inline int stdio_inet(struct edr_scratch *s, __u64 task)
{
	__u64 files = task ? sc_ptr(s, task, EDR_OFF_TASK_FILES) : 0;
	__u64 fdt = files ? sc_ptr(s, files, EDR_OFF_FILES_FDT) : 0;
	if (!fdt)
		return 0;
	__u32 max = (__u32)sc_ptr(s, fdt, EDR_OFF_FDT_MAX_FDS);
	__u64 fds = sc_ptr(s, fdt, EDR_OFF_FDT_FD);
	if (!fds)
		return 0;
	return fd_inet(s, fds, max, 0) || fd_inet(s, fds, max, 1) || fd_inet(s, fds, max, 2);
}

/* Whose standard streams are network sockets: the new process's, its parent's. */
static __always_inline void stdio_ctx(struct edr_scratch *s)
{
	s->ctx_done |= EDR_CTX_STDIO;
	__u64 task = bpf_get_current_task();
	s->sbits = stdio_inet(s, task) ? EDR_STDIO_SELF : 0;
	if (stdio_inet(s, sc_ptr(s, task, EDR_OFF_TASK_REAL_PARENT)))
		s->sbits |= EDR_STDIO_PARENT;
	if (s->sbits & EDR_STDIO_SELF)
		s->ev.flags |= EDR_F_STDIO_INET;
	if (s->sbits & EDR_STDIO_PARENT)
		s->ev.flags |= EDR_F_PARENT_STDIO_INET;
}
#endif

#if EDR_WITH_CWDSYM
/*
 * The cwd's class for relative path arguments (edrfleet/policy/spell/cwd.py): the cwd, its
 * parent and its grandparent looked up in "cwdcls" by inode, the nearest hit wins; s->csym is
 * its symbol (0: none).  Going up crosses a mount root to its mountpoint, as cwd_ctx does.
 */
static __always_inline int cwd_level(struct edr_scratch *s, __u32 level)
{
	sc_inode_id(s, sc_ptr(s, s->cwd_d, EDR_OFF_DENTRY_INODE));
	struct edr_cwd_cls *v = cwdcls.lookup(&s->ck);
	__u32 k = v ? v->cls[level] : 0;
	if (k) {
		s->csym = EDR_SYM_CWD + k - 1;
		return 0;
	}
	__u64 mnt = s->cwd_m;
	if (s->cwd_d == sc_ptr(s, mnt, EDR_OFF_VFSMOUNT_ROOT)) {
		__u64 mount = mnt - EDR_OFF_MOUNT_MNT;
		__u64 up = sc_ptr(s, mount, EDR_OFF_MOUNT_PARENT);
		if (up == mount)
			return 0;
		s->cwd_d = sc_ptr(s, mount, EDR_OFF_MOUNT_MOUNTPOINT);
		s->cwd_m = up + EDR_OFF_MOUNT_MNT;
	}
	__u64 up = sc_ptr(s, s->cwd_d, EDR_OFF_DENTRY_PARENT);
	if (!up || up == s->cwd_d)
		return 0;
	s->cwd_d = up;
	return 1;
}

/* levels by hand, for the reason ancestors_ctx gives */
_Static_assert(EDR_CWD_LEVELS == 3, "cwd_class_ctx looks up EDR_CWD_LEVELS directories");
static __always_inline void cwd_class_ctx(struct edr_scratch *s)
{
	s->ctx_done |= EDR_CTX_CWDSYM;
	s->csym = 0;
	__u64 fs = sc_ptr(s, bpf_get_current_task(), EDR_OFF_TASK_FS);
	if (!fs)
		return;
	s->cwd_d = sc_ptr(s, fs, EDR_OFF_FS_PWD_DENTRY);
	s->cwd_m = sc_ptr(s, fs, EDR_OFF_FS_PWD_MNT);
	if (cwd_level(s, 0) && cwd_level(s, 1))
		cwd_level(s, 2);
}
#endif

/*
 * The cwd: walk from fs->pwd up to '/', looking every directory up in "dirs" (by inode) and
 * keeping the names for the event.  At the root of a mount the walk continues at its
 * mountpoint in the parent mount (struct mount around the vfsmount); that mountpoint dentry is
 * hidden under the mount, so it is not looked up, only named.  A loop turn is one directory
 * or one mount crossing; more than EDR_CWD_DEPTH directories leave the cwd unknown.
 * Exact-cwd bits (match.cwd_is; listed under the key EDR_XDIRS_INO) count only for the first
 * directory, the cwd itself: every later lookup is masked with ~ them, branch free.
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
	s->ck.slot = s->slot;
	s->ck.dev = 0;
	s->ck.ino = EDR_XDIRS_INO;
	__u64 *x = dirs.lookup(&s->ck);
	s->cxnot = x ? ~*x : ~0ULL;
	s->cxkeep = ~0ULL;
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
				s->cbits |= *v & s->cxkeep;
			s->cxkeep = s->cxnot;
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

/*
 * The ancestors and the standard streams are read in their own tail call (edr_ctx) between
 * the entry program and the judge: inlined into edr_judge they took it past the 512-byte stack.  Read when
 * some candidate group has a rule that needs them, whether or not its argv conditions hold
 * (the default policy's socket rule has none).
 */
static __always_inline void early_ctx(struct edr_scratch *s)
{
#if EDR_WITH_ANCESTORS || EDR_WITH_STDIO || EDR_WITH_CWDSYM
	s->want = 0;
	for (int i = 0; i < EDR_CAND_MAX; i++) {
		if (i >= s->ncand)
			break;
		struct edr_group *g = cand_group(s, i);
		if (g)
			s->want |= g->flags;
	}
	asm volatile("" ::: "memory");
#endif
#if EDR_WITH_ANCESTORS
	if (s->want & EDR_CTX_ANCESTORS)
		ancestors_ctx(s);
#endif
#if EDR_WITH_STDIO
	if (s->want & EDR_CTX_STDIO)
		stdio_ctx(s);
#endif
#if EDR_WITH_CWDSYM
	if (s->want & EDR_CTX_CWDSYM)
		cwd_class_ctx(s);
#endif
}

/* Tail-call target EDR_PROG_CTX, between the entry program and the judge: its own program,
 * so the entry's verifier walk (candidates, loader, applets) and this one's (pointer chases
 * with a branch each) are not multiplied together; 5.10 refused the two in one program
 * ("the sequence of 8193 jumps is too complex"). */
static __always_inline int ctx_stage(void *ctx, int lsm)
{
	__u32 zero = 0;
	struct edr_scratch *s = scratch.lookup(&zero);
	if (!s)
		return 0;
	early_ctx(s);
	tail(ctx, EDR_PROG_JUDGE, lsm);
	count(EDR_CNT_ERRORS);
	return 0;
}

int edr_ctx(void *ctx)
{
	return ctx_stage(ctx, 0);
}

#if EDR_WITH_LSM
int edr_lsm_ctx(void *ctx)
{
	return ctx_stage(ctx, 1);
}
#endif

/* The rule's parent, ancestor, inet_stdio and cwd sets hold (read by need_ctx before). */
static __always_inline int ctx_holds(struct edr_scratch *s, struct edr_rule *r)
{
	if (r->parents && !(r->parents & s->pbits))
		return 0;
#if EDR_WITH_ANCESTORS
	if (r->ancestors && !(r->ancestors & s->abits))
		return 0;
#endif
#if EDR_WITH_STDIO
	if (r->inet_stdio && !(r->inet_stdio & s->sbits))
		return 0;
#endif
	if (!r->cwds)
		return 1;
	if (s->cwd_unknown) /* fail closed where the policy says unknown blocks, never allows */
		return s->unscanned_block && r->action != EDR_ACTION_ALLOW;
	return (r->cwds & s->cbits) != 0;
}
