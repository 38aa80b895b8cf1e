// SPDX-License-Identifier: GPL-2.0
/* ALE_AUTH_CONNECT_V4/V6: connect() of every socket in the cgroup, and the first datagram to
 * each new peer of an unconnected socket (sendmsg). Logic: lib/endpoint.h. */
#include "lib/endpoint.h"

SEC("cgroup/connect4")
int lfp_connect4(struct bpf_sock_addr *ctx)
{
	return lfp_on_connect(ctx, 0);
}

SEC("cgroup/connect6")
int lfp_connect6(struct bpf_sock_addr *ctx)
{
	return lfp_on_connect(ctx, 1);
}

SEC("cgroup/sendmsg4")
int lfp_sendmsg4(struct bpf_sock_addr *ctx)
{
	return lfp_on_sendmsg(ctx, 0);
}

SEC("cgroup/sendmsg6")
int lfp_sendmsg6(struct bpf_sock_addr *ctx)
{
	return lfp_on_sendmsg(ctx, 1);
}
