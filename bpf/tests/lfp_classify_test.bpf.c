// SPDX-License-Identifier: GPL-2.0
/* A test-runnable wrapper around the real classifier (lib/classify.h): BPF_PROG_TEST_RUN cannot
 * drive the sock_addr hooks, so the differential tests feed inputs through this program. It
 * shares the pinned lfp_policy (the test loads it with the engine's pin root) and classifies
 * lfp_test_io[0 .. count) in one run, so a test covers millions of inputs in a few seconds. */
#include "../lib/classify.h"

/* Checked by the loader like lfp.bpf.o's (see bpf/lfp.bpf.c). */
const volatile __u32 lfp_abi_version = LFP_ABI_VERSION;

/* i -> one input and its verdict. Written by the test (inputs) and by this program (verdicts). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LFP_TEST_BATCH);
	__type(key, __u32);
	__type(value, struct lfp_test_case);
} lfp_test_io SEC(".maps");

struct lfp_test_args {
	__u32 count;
};

static long lfp_test_one(__u32 i, void *data)
{
	struct lfp_test_case *c = bpf_map_lookup_elem(&lfp_test_io, &i);
	if (!c)
		return 1;
	lfp_classify_walk(c->layer, &c->in, &c->out);
	return 0;
}

SEC("syscall")
int lfp_classify_test(struct lfp_test_args *args)
{
	__u32 n = args->count;
	if (n > LFP_TEST_BATCH)
		n = LFP_TEST_BATCH;
	bpf_loop(n, lfp_test_one, 0, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
