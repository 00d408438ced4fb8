// SPDX-License-Identifier: GPL-2.0
/* exec.c - the sigkill backend's entry point: sched:sched_process_exec.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	count(EDR_CNT_EXECS);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *mm = (void *)rd_ptr(task, EDR_OFF_TASK_MM);
	if (!mm)
		return 0;
	/* the real executable is mm->exe_file; the path as executed is bprm->filename */
	unsigned short fn_off = args->data_loc_filename & 0xFFFF;
	struct edr_scratch *s = begin((void *)rd_ptr(mm, EDR_OFF_MM_EXE_FILE),
				      (char *)args + fn_off);
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
	if (!add_applet(s))
		return 0;
	early_ctx(s);
	fit_budget(s, 1, 0);
	progs.call(args, EDR_PROG_JUDGE);
	count(EDR_CNT_ERRORS);
	return 0;
}
