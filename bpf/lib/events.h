/* events.h — ALE event records: fill once on the stack, copy into every subscriber's ring.
 *
 * Wake-ups are batched: a wake-up per event costs ~13 µs per connect on this VM
 * (docs/kernel-mechanisms.md §5), so a record only forces one when its ring already holds
 * LFP_WAKEUP_BYTES; consumers also drain on a timeout. A record that does not fit is counted
 * in the ring's per-CPU drop counter, and the per-ring sequence number shows the gap. Telemetry
 * never changes a verdict. */
#pragma once
#include <bpf/bpf_core_read.h>
#include "maps.h"

/* The process-context fields of an event: the task running the hook (process-context hooks),
 * or the closer of a socket lfp never saw created. */
static __always_inline void lfp_event_init_current(struct lfp_event *e)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	e->pid = (__u32)pt;
	e->tgid = pt >> 32;
	e->uid = (__u32)ug;
	e->gid = ug >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->evflags |= LFP_EVF_OWNER;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* ALE_APP_ID: the executable by file identity (inode + device), which the compiler
	 * resolves the policy's path to; the path itself cannot be read in these hooks. */
	/* Through the BTF-typed task pointer the chain is plain loads (the JIT guards each against
	 * faults) instead of one bpf_probe_read_kernel per hop: about 200 ns less per event. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file *exe = mm ? mm->exe_file : 0;
	struct inode *ino = exe ? exe->f_inode : 0;
	if (ino) {
		e->exe_ino = ino->i_ino;
		struct super_block *sb = ino->i_sb;
		e->exe_dev = sb ? sb->s_dev : 0;
	}
}

/* A new event about `cookie` raised by the current task. */
static __always_inline void lfp_event_init(struct lfp_event *e, __u64 cookie, __u16 layer, __u8 kind)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->cookie = cookie;
	e->layer = layer;
	e->kind = kind;
	lfp_event_init_current(e);
}

struct lfp_emit_ctx {
	struct lfp_event *e;
	__u32 mask; /* lfp_sub_mask: slots with a ring */
	int delivered;
};

/* One subscriber slot. A bpf_loop callback rather than an unrolled loop: the verifier checks
 * it once per call site instead of sixteen copies, which keeps load time in milliseconds. */
static long lfp_emit_slot(__u32 i, void *data)
{
	struct lfp_emit_ctx *c = data;
	__u32 slot = i;
	if (!(c->mask & (1u << (slot & 31))))
		return 0;
	void *rb = bpf_map_lookup_elem(&lfp_subs, &slot);
	if (!rb)
		return 0;
	__u64 *seq = bpf_map_lookup_elem(&lfp_sub_seq, &slot);
	if (!seq)
		return 0;
	struct lfp_event *e = c->e;
	e->seq = __sync_fetch_and_add(seq, 1);
	__u64 flags = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >= LFP_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
	                                                                           : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(rb, e, sizeof(*e), flags)) {
		__u64 *d = bpf_map_lookup_elem(&lfp_sub_drops, &slot);
		if (d)
			*d += 1;
	} else {
		c->delivered = 1;
	}
	return 0;
}

static __always_inline void lfp_emit(struct lfp_event *e)
{
	__u32 zero = 0;
	const __u32 *mask = bpf_map_lookup_elem(&lfp_sub_mask, &zero);
	if (!mask || !*mask) { /* nobody listens: enforcement without telemetry costs nothing more */
		lfp_stat_inc(LFP_STAT_NO_SUBSCRIBER);
		return;
	}
	struct lfp_emit_ctx c = { .e = e, .mask = *mask };

	e->ts_ns = bpf_ktime_get_ns();
	/* name the workload now: a tail may read the event after a short-lived workload is gone */
	__u64 cg = e->cgroup_id;
	__u32 *wid = bpf_map_lookup_elem(&lfp_workloads, &cg);
	e->workload_id = wid ? *wid : 0;
	bpf_loop(LFP_MAX_SUBSCRIBERS, lfp_emit_slot, &c, 0);
	lfp_stat_inc(c.delivered ? LFP_STAT_EVENTS : LFP_STAT_NO_SUBSCRIBER);
}
