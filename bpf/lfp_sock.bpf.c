// SPDX-License-Identifier: GPL-2.0
/* Socket lifetime hooks: ALE_RESOURCE_ASSIGNMENT (creation, explicit bind) and
 * ALE_ENDPOINT_CLOSURE / ALE_RESOURCE_RELEASE (fd closed). Logic: lib/endpoint.h. */
#include "lib/endpoint.h"

SEC("cgroup/sock_create")
int lfp_sock_create(struct bpf_sock *sk)
{
	return lfp_on_sock_create(sk);
}

SEC("cgroup/post_bind4")
int lfp_post_bind4(struct bpf_sock *sk)
{
	return lfp_on_post_bind(sk, 0);
}

SEC("cgroup/post_bind6")
int lfp_post_bind6(struct bpf_sock *sk)
{
	return lfp_on_post_bind(sk, 1);
}

SEC("cgroup/sock_release")
int lfp_sock_release(struct bpf_sock *sk)
{
	return lfp_on_sock_release(sk);
}

char LICENSE[] SEC("license") = "GPL";
