// SPDX-License-Identifier: GPL-2.0
/* Attach-time sweep of sockets that predate the attach. Logic: lib/sweep.h. */
#include "lib/sweep.h"

SEC("iter/tcp")
int lfp_sweep_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc); /* full sockets only */
	if (!tp)
		return 0;
	return lfp_adopt((struct sock *)tp, IPPROTO_TCP);
}

SEC("iter/udp")
int lfp_sweep_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	if (!udp)
		return 0;
	return lfp_adopt((struct sock *)udp, IPPROTO_UDP);
}
