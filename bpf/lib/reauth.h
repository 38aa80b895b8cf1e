/* reauth.h — reauthorization of live connections at a policy commit (iter/tcp, iter/udp run by
 * Engine.commit right after it publishes the new classifier; lfp_reauth_* in lfp_iter.bpf.c).
 *
 * WFP reauthorizes a flow when a filter changes at the layer that authorized it (R7.8), and
 * lazily, at the flow's next packet (R7.9). lfp has no per-packet program for TCP, so a commit
 * visits every live connection once instead, classifies it again with IS_REAUTHORIZE, and ends
 * the ones the new policy blocks with bpf_sock_destroy (the application sees ECONNABORTED; a TCP
 * peer gets a RST). A connection whose classification reaches a registered callout's filter is
 * reported (action CALLOUT) for the daemon to ask the callout; if it blocks, the daemon puts the
 * cookie in lfp_destroy and runs the pass again, which ends it first thing. What is visited:
 *
 *   1. Only sockets of lfp's workloads: an lfp_sk entry, and a cgroup (or an ancestor of it)
 *      that lfp_workloads still names. Every other socket of the machine is skipped untouched.
 *   2. TCP connections that still carry data (ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT). Listeners
 *      and connections not yet established are not reauthorized (a new SYN meets the new
 *      policy at its own hook anyway).
 *   3. The layer is the one that authorized the connection: ALE_AUTH_RECV_ACCEPT for an accepted
 *      connection (lfp_sk.parent_cookie names its listener, tcp.h), ALE_AUTH_CONNECT for one
 *      this socket connect()ed (LFP_SKF_AUTHORIZED at cgroup/connect, endpoint.h). A TCP
 *      connection adopted by the attach-time sweep has no known direction and is left alone.
 *   4. Connected UDP sockets, at ALE_AUTH_CONNECT (only connect() connects one). Unconnected UDP
 *      flows keep their lazy reauthorization: the next datagram of each (socket, peer) flow
 *      meets the new generation in lfp_flows and is classified again (lfp_flow_find, sk.h).
 *
 * The incoming values are rebuilt as the hooks build them: owner (uid, gid, executable,
 * cgroup) from lfp_sk, the local and remote endpoint and the protocol from the socket itself,
 * IPv4-mapped addresses at the V4 layer, IS_LOOPBACK from the remote address, plus
 * IS_REAUTHORIZE. IP_LOCAL_INTERFACE is what the authorizing hook saw: the bound device at
 * AUTH_CONNECT (0, FWP_EMPTY, for an unbound socket), the device the connection's packets
 * arrive on at RECV_ACCEPT (ingress classified its SYN with the device it arrived on). A block emits the
 * classify event (IS_REAUTHORIZE, BLOCK, the deciding filter, errno ECONNABORTED) before the socket is
 * destroyed, so it precedes the ENDPOINT_CLOSURE that sockops reports as the TCP socket reaches CLOSE. A
 * permit is silent: the connection goes on. Each ended connection writes its cookie to the iterator's output,
 * which is how the commit counts them. */
#pragma once
#include <bpf/bpf_core_read.h>
#include "pend.h"

#define ECONNABORTED 103
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_CLOSE_WAIT 8
#define LFP_MAX_CGROUP_DEPTH 32 /* cgroup levels searched for a workload above a socket's cgroup */

/* Kernel >= 6.5, iter/tcp and iter/udp programs only (docs/kernel-mechanisms.md §2). */
extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* 1 when the socket's cgroup, or one above it (programs attached to a cgroup cover its
 * subtree), is an attached workload; a detached workload's sockets are no longer lfp's. */
static __always_inline int lfp_in_workload(struct sock *sk)
{
	struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);

	for (int i = 0; i < LFP_MAX_CGROUP_DEPTH && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);
		if (bpf_map_lookup_elem(&lfp_workloads, &id))
			return 1;
		/* `self` is the first member of struct cgroup: its parent css is the parent cgroup */
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return 0;
}

/* The V4 layer that authorized this connection, or 0 when it is not reauthorized. */
static __always_inline __u16 lfp_reauth_layer(const struct lfp_sk *s, struct sock_common *skc, __u8 proto)
{
	if (proto != IPPROTO_TCP)
		return skc->skc_dport ? LFP_LAYER_AUTH_CONNECT_V4 : 0; /* unconnected: lazy, per datagram */
	__u8 state = skc->skc_state;
	if (state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_FIN_WAIT2 &&
	    state != TCP_CLOSE_WAIT)
		return 0;
	if (s->parent_cookie)
		return LFP_LAYER_AUTH_RECV_ACCEPT_V4;
	if ((s->flags & (LFP_SKF_AUTHORIZED | LFP_SKF_DISCOVERED)) == LFP_SKF_AUTHORIZED)
		return LFP_LAYER_AUTH_CONNECT_V4;
	return 0;
}

/* The connection's own tuple (the socket is connected, so every field is known), and its
 * IP_LOCAL_INTERFACE as the hook of `v4_layer` knew it. */
static __always_inline void lfp_reauth_tuple(struct lfp_event *e, struct sock_common *skc, struct sock *sk,
                                             __u16 v4_layer)
{
	e->ifindex = skc->skc_bound_dev_if;
	if (v4_layer == LFP_LAYER_AUTH_RECV_ACCEPT_V4 && sk->sk_rx_dst_ifindex)
		e->ifindex = sk->sk_rx_dst_ifindex; /* the arrival device of its latest packet */
	e->local_port = skc->skc_num;               /* host order */
	e->remote_port = bpf_ntohs(skc->skc_dport); /* network order */
	if (e->family == AF_INET) {
		e->local_addr_be[0] = skc->skc_rcv_saddr;
		e->remote_addr_be[0] = skc->skc_daddr;
	} else {
		BPF_CORE_READ_INTO(&e->local_addr_be, skc, skc_v6_rcv_saddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(&e->remote_addr_be, skc, skc_v6_daddr.in6_u.u6_addr32);
	}
	e->evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT | LFP_EVF_REMOTE;
}

/* Reauthorize one socket of the iteration; `skc` is the iterator's own pointer (the one
 * bpf_sock_destroy accepts), `sk` the same socket as a full socket. */
static __always_inline int lfp_reauthorize(struct seq_file *seq, struct sock_common *skc, struct sock *sk,
                                           __u8 proto)
{
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);
	if (!s)
		return 0; /* never seen by lfp's hooks: not a workload's socket */
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (s->cookie != cookie)
		return 0; /* an accepted child before its first hook: its listener's entry, not its own */
	if (bpf_map_lookup_elem(&lfp_destroy, &cookie)) { /* a held connection the daemon blocked */
		bpf_map_delete_elem(&lfp_destroy, &cookie);
		if (!bpf_sock_destroy(skc))
			bpf_seq_write(seq, &cookie, sizeof(cookie));
		return 0;
	}
	__u16 v4_layer = lfp_reauth_layer(s, skc, proto);
	if (!v4_layer || !lfp_in_workload(sk))
		return 0;

	struct lfp_event e;
	__u16 family = skc->skc_family;
	lfp_event_init_owner(&e, cookie, lfp_layer_for(v4_layer, family), LFP_EV_CLASSIFY, s);
	e.family = family;
	e.protocol = proto;
	lfp_reauth_tuple(&e, skc, sk, v4_layer);
	lfp_unmap(&e);
	e.cond_flags = LFP_FLAG_IS_REAUTHORIZE;
	if (lfp_is_loopback(&e))
		e.cond_flags |= LFP_FLAG_IS_LOOPBACK;
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	if (v.action == LFP_ACTION_CALLOUT) {
		/* a registered callout decides: the daemon asks it (it cannot pend a reauthorization,
		 * R6.4) and ends the connection if it blocks (lfp_destroy, then another pass) */
		lfp_apply(&e, &v);
		lfp_emit(&e);
		return 0;
	}
	if (v.action != LFP_ACTION_BLOCK)
		return 0;
	lfp_apply(&e, &v);
	e.error = ECONNABORTED; /* what tcp_abort/udp_abort report, whatever lfpBlockErrno says */
	lfp_emit(&e);
	if (bpf_sock_destroy(skc))
		return 0;
	bpf_seq_write(seq, &cookie, sizeof(cookie));
	return 0;
}
