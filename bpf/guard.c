// SPDX-License-Identifier: GPL-2.0
/* guard.c - backend lsm: the agent, its pins and its maps defend themselves.
 * Part of the one BPF program (edrfleet/kernel_abi.py BPF_SOURCES); built only with
 * EDR_WITH_LSM, attached by edrfleet/agent/pinned/selfguard.py next to bprm_check_security.
 *
 * While "guard_self" holds the agent's tgid, every other process is refused (-EPERM):
 *   task_kill            a signal that would stop or end the agent.  Let through: signal 0
 *                        (is it alive?), SIGHUP (the unit's reload), SIGCHLD, SIGCONT, SIGURG,
 *                        SIGWINCH, and anything pid 1 sends (the unit's stop: systemd's
 *                        SIGTERM, then SIGKILL).  Signals the kernel sends (OOM) never come here.
 *   ptrace_access_check  PTRACE_MODE_ATTACH: ptrace, /proc/PID/mem, process_vm_writev,
 *                        pidfd_getfd (reads of /proc/PID/status and the like stay open)
 *   inode_unlink/rmdir/rename  of a pin or of the agent's bpffs directories (or over one)
 *   inode_permission     opening a pin (BPF_OBJ_GET goes through it): no fd to a link or map
 *   bpf_map              a writable fd to one of the agent's maps (by id, by pin: bpftool's
 *                        `map update` gets one first)
 *   bpf                  BPF_PROG/LINK_GET_FD_BY_ID of the agent's programs and links (no fd,
 *                        no BPF_LINK_DETACH / BPF_LINK_UPDATE)
 * Objects are named by id (maps, programs, links) and by (s_dev, inode number) (pins,
 * directories) in "guard_objs", filled by the agent: a name an attacker can reuse is never
 * what decides.  The guard ends with the agent: sched_process_exit of its main thread clears
 * "guard_self" (a disarm, the unit's stop, a crash), so `agent disarm` can then unpin.
 */

#if EDR_WITH_LSM
#define EDR_SIGHUP 1
#define EDR_SIGCHLD 17
#define EDR_SIGCONT 18
#define EDR_SIGURG 23
#define EDR_SIGWINCH 28
#define EDR_PTRACE_MODE_ATTACH 0x02
#define EDR_FMODE_WRITE 0x2
#define EDR_BPF_PROG_GET_FD_BY_ID 13
#define EDR_BPF_LINK_GET_FD_BY_ID 30

BPF_ARRAY(guard_self, __u32, 1);  /* tgid of the agent; 0: the guard is off */
BPF_HASH(guard_objs, struct edr_guard_key, __u32, EDR_GUARD_OBJS);
BPF_ARRAY(guard_log, struct edr_guard_rec, EDR_GUARD_MAX);

/* The tgid the guard protects if the caller is another process, else 0. */
static __always_inline __u32 guard_other(void)
{
	int zero = 0;
	__u32 *owner = guard_self.lookup(&zero);
	if (!owner || !*owner)
		return 0;
	__u32 me = bpf_get_current_pid_tgid() >> 32;
	return me == *owner ? 0 : *owner;
}

static __always_inline int guard_refuse(__u32 kind, __u32 arg)
{
	struct edr_guard_rec *r = guard_log.lookup(&kind);
	if (r) {
		__sync_fetch_and_add(&r->count, 1);
		r->pid = bpf_get_current_pid_tgid() >> 32;
		r->arg = arg;
		bpf_get_current_comm(r->comm, sizeof(r->comm));
	}
	return -EDR_EPERM;
}

static __always_inline int guarded_id(__u32 kind, __u64 id)
{
	struct edr_guard_key k = {.kind = kind, .id = id};
	return guard_objs.lookup(&k) != 0;
}

/* Is ``inode`` one of the agent's pins (EDR_GOBJ_FILE) or directories (EDR_GOBJ_DIR)? */
static __always_inline int guarded_inode(__u64 inode, __u32 kind)
{
	if (!inode)
		return 0;
	struct edr_guard_key k = {.kind = kind};
	k.id = rd_ptr((void *)inode, EDR_OFF_INODE_INO);
	k.dev = rd_u32((void *)rd_ptr((void *)inode, EDR_OFF_INODE_SB), EDR_OFF_SB_DEV);
	return guard_objs.lookup(&k) != 0;
}

static __always_inline int guarded_dentry(__u64 dentry)
{
	__u64 inode = dentry ? rd_ptr((void *)dentry, EDR_OFF_DENTRY_INODE) : 0;
	return guarded_inode(inode, EDR_GOBJ_FILE) || guarded_inode(inode, EDR_GOBJ_DIR);
}

/* task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *) */
int edr_guard_kill(unsigned long long *ctx)
{
	__u32 owner = guard_other();
	if (!owner)
		return 0;
	int sig = (int)ctx[2];
	if (sig == 0 || sig == EDR_SIGHUP || sig == EDR_SIGCHLD || sig == EDR_SIGCONT ||
	    sig == EDR_SIGURG || sig == EDR_SIGWINCH)
		return 0;
	if ((bpf_get_current_pid_tgid() >> 32) == 1)
		return 0; /* the service manager: the unit's stop */
	if (rd_u32((void *)ctx[0], EDR_OFF_TASK_TGID) != owner)
		return 0;
	return guard_refuse(EDR_GUARD_SIGNAL, sig);
}

/* ptrace_access_check(struct task_struct *child, unsigned int mode) */
int edr_guard_ptrace(unsigned long long *ctx)
{
	__u32 owner = guard_other();
	__u32 mode = (__u32)ctx[1];
	if (!owner || !(mode & EDR_PTRACE_MODE_ATTACH))
		return 0;
	if (rd_u32((void *)ctx[0], EDR_OFF_TASK_TGID) != owner)
		return 0;
	return guard_refuse(EDR_GUARD_PTRACE, mode);
}

/* inode_unlink(struct inode *dir, struct dentry *dentry); inode_rmdir: the same */
int edr_guard_unlink(unsigned long long *ctx)
{
	if (!guard_other() || !guarded_dentry(ctx[1]))
		return 0;
	return guard_refuse(EDR_GUARD_UNLINK, 0);
}

/* inode_rename(struct inode *old_dir, struct dentry *old, struct inode *new_dir,
 *              struct dentry *new): moving a pin away, or another file over one */
int edr_guard_rename(unsigned long long *ctx)
{
	if (!guard_other() || !(guarded_dentry(ctx[1]) || guarded_dentry(ctx[3])))
		return 0;
	return guard_refuse(EDR_GUARD_RENAME, 0);
}

/* inode_permission(struct inode *inode, int mask): every open of a pin, BPF_OBJ_GET too */
int edr_guard_open(unsigned long long *ctx)
{
	if (!guard_other() || !guarded_inode(ctx[0], EDR_GOBJ_FILE))
		return 0;
	return guard_refuse(EDR_GUARD_OPEN, (__u32)ctx[1]);
}

/* bpf_map(struct bpf_map *map, fmode_t fmode): a new fd to a map */
int edr_guard_map(unsigned long long *ctx)
{
	if (!((__u32)ctx[1] & EDR_FMODE_WRITE) || !guard_other())
		return 0;
	__u32 id = rd_u32((void *)ctx[0], EDR_OFF_BPF_MAP_ID);
	if (!guarded_id(EDR_GOBJ_MAP, id))
		return 0;
	return guard_refuse(EDR_GUARD_MAP_WRITE, id);
}

/* bpf(int cmd, union bpf_attr *attr, unsigned int size): attr is the kernel's copy */
int edr_guard_bpf(unsigned long long *ctx)
{
	int cmd = (int)ctx[0];
	__u32 kind;
	if (cmd == EDR_BPF_PROG_GET_FD_BY_ID)
		kind = EDR_GOBJ_PROG;
	else if (cmd == EDR_BPF_LINK_GET_FD_BY_ID)
		kind = EDR_GOBJ_LINK;
	else
		return 0;
	if (!guard_other())
		return 0;
	__u32 id = rd_u32((void *)ctx[1], 0); /* prog_id / link_id: the union's first word */
	if (!guarded_id(kind, id))
		return 0;
	return guard_refuse(EDR_GUARD_BY_ID, id);
}

/* raw tracepoint sched_process_exit: the agent's main thread ends, so does the guard */
int edr_guard_exit(void *ctx)
{
	int zero = 0;
	__u32 *owner = guard_self.lookup(&zero);
	if (owner && *owner && (__u32)bpf_get_current_pid_tgid() == *owner)
		*owner = 0;
	return 0;
}
#endif /* EDR_WITH_LSM */
