// SPDX-License-Identifier: GPL-2.0
/* exec.c - the sigkill backend's entry point: the raw tracepoint sched_process_exec
 * (args: task, old_pid, bprm).  A raw tracepoint, not the classic one: its attachment is a
 * bpf_link (BPF_RAW_TRACEPOINT_OPEN, kernel 5.7 up) that the agent pins in bpffs, so
 * enforcement outlives the agent process; a perf-event link would need 5.15.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
	count(EDR_CNT_EXECS);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *mm = (void *)rd_ptr(task, EDR_OFF_TASK_MM);
	if (!mm)
		return 0;
	/* the real executable is mm->exe_file; the path as executed is bprm->filename */
	void *bprm = (void *)ctx->args[2];
	struct edr_scratch *s = begin((void *)rd_ptr(mm, EDR_OFF_MM_EXE_FILE),
				      (const char *)rd_ptr(bprm, EDR_OFF_BPRM_FILENAME),
				      (const char *)bprm + EDR_OFF_BPRM_BUF);
	if (!s)
		return 0;
	struct edr_event *ev = &s->ev;

	/* argv of the new image: first window copied into the event */
	__u64 arg_start = rd_ptr(mm, EDR_OFF_MM_ARG_START);
	__u64 arg_end = rd_ptr(mm, EDR_OFF_MM_ARG_END);
	__u64 total = arg_end > arg_start ? arg_end - arg_start : 0;
	if (total > 0x7fffffff)
		total = 0;
	s->arg_start = arg_start;
	ev->args_total = total;
	s->scan_len = total ? total - 1 : 0;
	__u32 len = total;
	if (len > EDR_ARGS_MAX) {
		len = EDR_ARGS_MAX;
		ev->flags |= EDR_F_ARGS_TRUNCATED;
	}
	if (len && edr_read_user(ev->args, CLAMP_LEN(len, EDR_ARGS_MAX), (void *)arg_start))
		len = 0;
	ev->args_len = len;
	if (s->loader)
		loader_program(s, 0); /* judged as PROGRAM: its groups, its argv */
	/* nothing to judge - unless the loader's PROGRAM went unread: that fails closed */
	if (!add_applet(s) && !s->dropped_block)
		return 0;
	fit_budget(s, 1, 0);
	progs.call(ctx, EDR_PROG_CTX);
	count(EDR_CNT_ERRORS);
	return 0;
}
