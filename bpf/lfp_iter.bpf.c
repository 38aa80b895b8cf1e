// SPDX-License-Identifier: GPL-2.0
/* Socket iterators, run on demand rather than attached: the attach-time sweep of sockets that
 * predate the attach (lfp_sweep_*, run by `lfp attach`; logic: lib/sweep.h) and the
 * reauthorization of live connections at a commit (lfp_reauth_*, run by Engine.commit; logic:
 * lib/reauth.h). Userspace tells them apart by name. */
#include "lib/sweep.h"
#include "lib/reauth.h"

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

/* ctx->sk_common and ctx->udp_sk are loaded once: the NULL check must be on the very register
 * bpf_sock_destroy receives (docs/kernel-mechanisms.md §2). */
SEC("iter/tcp")
int lfp_reauth_tcp(struct bpf_iter__tcp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc); /* full sockets: no TIME_WAIT, no requests */
	if (!tp)
		return 0;
	return lfp_reauthorize(seq, skc, (struct sock *)tp, IPPROTO_TCP);
}

SEC("iter/udp")
int lfp_reauth_udp(struct bpf_iter__udp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct udp_sock *udp = ctx->udp_sk;
	if (!udp)
		return 0;
	return lfp_reauthorize(seq, (struct sock_common *)udp, (struct sock *)udp, IPPROTO_UDP);
}
