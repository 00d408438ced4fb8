// SPDX-License-Identifier: GPL-2.0
/* identity.c - an unknown copy of a protected file, by its size; the loader.
 * Part of the one BPF program: the agent joins bpf/ files in the order of
 * edrfleet/kernel_abi.py BPF_SOURCES (BCC rewrites map calls in one text only). */

/*
 * A file the kernel does not know by its inode - a copy anywhere (another filesystem, an
 * overlay, a memfd, O_TMPFILE, a deleted file run by descriptor), made at any time, the agent
 * running, stopped or dead - is judged by its size and head: a byte-identical copy has the
 * protected file's size and first EDR_HEAD_BYTES (the ELF header and program headers, which
 * the kernel has read into linux_binprm.buf), and that needs nothing from user space.  An exec
 * whose file is not in "inodes" and whose (size, hash of the head) is a protected file's
 * ("fsizes", filled by the agent's identity keeper) is judged as that file as well - its
 * rules, argv conditions included, apply.  The head keeps other programs of the same size out
 * (on a Debian 12 host 62 of 2 498 executables share a size with a protected file of the
 * default policy; the one sharing its head too is a byte-identical copy: pidwait = pgrep;
 * bench/size_namesakes.py).  runc's memfd re-exec is its own binary: judged as
 * before.  A modified copy (another size, or another head) is not matched (docs/policy.md).
 */
BPF_HASH(fsizes, struct edr_size_key, struct edr_group_list, EDR_SLOTS * EDR_MAX_INODES);

static __always_inline void add_cands(struct edr_scratch *s, struct edr_group_list *l);

static __always_inline void add_size_cands(struct edr_scratch *s, void *inode,
					   const char *head)
{
	struct edr_size_key k = {.slot = s->slot};
	if (!inode || bpf_probe_read_kernel(&k.size, sizeof(k.size),
					    (const char *)inode + EDR_OFF_INODE_SIZE) || !k.size)
		return;
	if (bpf_probe_read_kernel(s->head, sizeof(s->head), head))
		__builtin_memset(s->head, 0, sizeof(s->head));
	__u64 h = 0xcbf29ce484222325ULL;
#pragma unroll
	for (int i = 0; i < EDR_HEAD_BYTES / 8; i++)
		h = (h ^ s->head[i]) * 0x100000001b3ULL;
	k.head = h;
	add_cands(s, fsizes.lookup(&k));
}

/* The dynamic loader, by the real executable's name: ld-linux*.so*, ld-musl-*, ld64.so*. */
static __always_inline int is_loader(const char *name)
{
	if (name[0] != 'l' || name[1] != 'd')
		return 0;
	if (name[2] == '-' && name[3] == 'l' && name[4] == 'i' && name[5] == 'n' &&
	    name[6] == 'u' && name[7] == 'x')
		return 1;
	if (name[2] == '-' && name[3] == 'm' && name[4] == 'u' && name[5] == 's' && name[6] == 'l')
		return 1;
	return name[2] == '6' && name[3] == '4' && name[4] == '.';
}
