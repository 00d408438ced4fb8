// SPDX-License-Identifier: GPL-2.0
/* lsm.c - the lsm backend's entry points (bprm_check_security).  x86-64 only: the syscall
 * numbers and the pt_regs fields the argv pointer is read from are x86-64's (the agent
 * builds this part only there, edrfleet/agent/lsm_probe.py).
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

#if EDR_WITH_LSM
#include <uapi/linux/ptrace.h> /* struct pt_regs; a tenth of the compile */

#define EDR_NR_EXECVE 59    /* x86_64 */
#define EDR_NR_EXECVEAT 322
#define EDR_LSM_ARGS 128    /* argv pointers the LSM hook copies */

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
				      (const char *)rd_ptr(bprm, EDR_OFF_BPRM_FILENAME),
				      (const char *)bprm + EDR_OFF_BPRM_BUF);
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
	if (s->loader)
		loader_program(s, 1); /* judged as PROGRAM: its groups, its argv */
	/* nothing to judge - unless the loader's PROGRAM went unread: that fails closed */
	if (!add_applet(s) && !s->dropped_block)
		return 0;
	fit_budget(s, 1, 0);
	__u32 one = 1;
	lsm_passed.update(&pid, &one); /* judged here: a block at exec time is a "recheck" */
	progs_lsm.call(ctx, EDR_PROG_CTX);
	count(EDR_CNT_ERRORS);
	return 0;
}
#endif /* EDR_WITH_LSM */
