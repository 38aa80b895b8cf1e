/* tcp.h — the TCP connection lifetime from sockops: implicit binds, listens, establishment,
 * accepted children (with their listener as parent) and the close that ends each connection.
 * sockops callbacks often run in softirq context, so every event takes its owner from lfp_sk. */
#pragma once
#include <bpf/bpf_core_read.h>
#include "endpoint.h"

static __always_inline void lfp_skops_tuple(struct lfp_event *e, struct bpf_sock_ops *skops)
{
	e->family = skops->family;
	e->protocol = IPPROTO_TCP;
	e->local_port = skops->local_port;              /* host order */
	e->remote_port = bpf_ntohl(skops->remote_port); /* network order in the upper half */
	if (skops->family == AF_INET) {
		e->local_addr_be[0] = skops->local_ip4;
		LFP_BARRIER();
		e->remote_addr_be[0] = skops->remote_ip4;
		LFP_BARRIER();
	} else {
		e->local_addr_be[0] = skops->local_ip6[0];
		LFP_BARRIER();
		e->local_addr_be[1] = skops->local_ip6[1];
		LFP_BARRIER();
		e->local_addr_be[2] = skops->local_ip6[2];
		LFP_BARRIER();
		e->local_addr_be[3] = skops->local_ip6[3];
		LFP_BARRIER();
		e->remote_addr_be[0] = skops->remote_ip6[0];
		LFP_BARRIER();
		e->remote_addr_be[1] = skops->remote_ip6[1];
		LFP_BARRIER();
		e->remote_addr_be[2] = skops->remote_ip6[2];
		LFP_BARRIER();
		e->remote_addr_be[3] = skops->remote_ip6[3];
		LFP_BARRIER();
	}
	e->evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
	if (e->remote_port)
		e->evflags |= LFP_EVF_REMOTE;
	struct bpf_sock *sk = skops->sk;
	if (sk)
		e->ifindex = sk->bound_dev_if; /* the bound device (listen, implicit bind), or 0 */
}

static __always_inline void lfp_want_state_cb(struct bpf_sock_ops *skops, struct lfp_sk *s)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	lfp_sk_set(s, LFP_SKF_STATECB);
}

/* SYN about to leave: the implicit bind of connect() has its port now. */
static __always_inline void lfp_on_tcp_connect_cb(struct bpf_sock_ops *skops, struct lfp_sk *s, __u64 cookie)
{
	struct lfp_event e;

	lfp_want_state_cb(skops, s);
	lfp_event_init_owner(&e, cookie, 0, LFP_EV_CLASSIFY, s);
	lfp_skops_tuple(&e, skops);
	lfp_unmap(&e);
	lfp_remember_local(s, &e);
	s->family = e.family;
	if (!(s->flags & LFP_SKF_RA_PENDING))
		return;
	lfp_sk_clear(s, LFP_SKF_RA_PENDING);
	/* the RESOURCE_ASSIGNMENT decided at connect(), reported with the port */
	e.layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, e.family);
	e.evflags &= ~LFP_EVF_REMOTE;
	e.remote_port = 0;
	__builtin_memset(e.remote_addr_be, 0, sizeof(e.remote_addr_be));
	e.cond_flags = LFP_FLAG_IS_IMPLICIT_BIND;
	e.action = s->ra_action;
	e.filter_id = s->ra_filter_id;
	lfp_emit(&e);
}

/* listen(): RESOURCE_ASSIGNMENT for a listen without bind (autobind), then ALE_AUTH_LISTEN.
 * No hook can refuse listen() on this kernel (no cgroup hook in inet_listen, LSM programs do
 * not load here: docs/kernel-mechanisms.md §3b), so a blocked listener is marked and every SYN to
 * it is dropped at ingress: nobody can connect to it. */
static __always_inline void lfp_on_tcp_listen_cb(struct bpf_sock_ops *skops, struct lfp_sk *s, __u64 cookie)
{
	struct lfp_event e;

	lfp_want_state_cb(skops, s);
	lfp_sk_set(s, LFP_SKF_LISTENER);
	lfp_event_init_owner(&e, cookie, 0, LFP_EV_CLASSIFY, s);
	lfp_skops_tuple(&e, skops);
	lfp_unmap(&e);
	lfp_remember_local(s, &e);
	s->family = e.family;
	if (!(s->flags & LFP_SKF_ASSIGNED)) {
		lfp_sk_set(s, LFP_SKF_ASSIGNED);
		e.layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, e.family);
		e.cond_flags = LFP_FLAG_IS_IMPLICIT_BIND;
		if (lfp_decide(&e).action == LFP_ACTION_BLOCK)
			lfp_sk_set(s, LFP_SKF_LISTEN_BLOCKED);
	}
	e.layer = lfp_layer_for(LFP_LAYER_AUTH_LISTEN_V4, e.family);
	e.cond_flags = lfp_is_unspecified(e.local_addr_be) ? LFP_FLAG_IS_WILDCARD_BIND : 0;
	if (lfp_decide(&e).action == LFP_ACTION_BLOCK)
		lfp_sk_set(s, LFP_SKF_LISTEN_BLOCKED);
}

/* A connection is established. For an accepted child this is its first hook: its lfp_sk is a
 * clone of the listener's, so it learns its parent, then reports its RESOURCE_ASSIGNMENT. */
static __always_inline void lfp_on_tcp_established(struct bpf_sock_ops *skops, struct lfp_sk *s, __u64 cookie,
                                                   int passive)
{
	struct lfp_event e;

	lfp_want_state_cb(skops, s);
	if (passive && s->cookie != cookie) {
		s->parent_cookie = s->cookie; /* the clone still names the listener */
		s->cookie = cookie;
		/* keep only what the child inherits for real: its owner */
		__u32 owner = s->flags & LFP_SKF_OWNER_UNKNOWN;
		s->flags = LFP_SKF_STATECB | LFP_SKF_AUTHORIZED | LFP_SKF_ASSIGNED | owner;
	}
	lfp_event_init_owner(&e, cookie, 0, LFP_EV_CLASSIFY, s);
	lfp_skops_tuple(&e, skops);
	lfp_unmap(&e);
	lfp_remember_local(s, &e);
	s->family = e.family;
	if (passive) {
		e.layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, e.family);
		e.action = LFP_ACTION_PERMIT;
		lfp_emit(&e);
		/* the pending inbound flow of the listener is done */
		struct lfp_flow_key k;
		lfp_flow_key(&k, s->parent_cookie, &e);
		bpf_map_delete_elem(&lfp_flows, &k);
	}
	lfp_notify(&e, LFP_LAYER_FLOW_ESTABLISHED_V4);
}

/* An accepted connection nobody accept()ed has no struct socket and never will: no
 * sock_release comes for it, so its CLOSE is also its release. */
static __always_inline int lfp_never_accepted(struct bpf_sock *sk, const struct lfp_sk *s)
{
	if (!s->parent_cookie)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	return BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_socket) == 0;
}

/* The socket reached CLOSE: one ENDPOINT_CLOSURE per authorized connection or listener, then
 * the RESOURCE_RELEASE that sock_release deferred (see lfp_on_sock_release for the hand-over). */
static __always_inline void lfp_on_tcp_close(struct bpf_sock_ops *skops, struct bpf_sock *sk,
                                             struct lfp_sk *s, __u64 cookie)
{
	struct lfp_event e;

	lfp_event_init_owner(&e, cookie, 0, LFP_EV_NOTIFY, s);
	lfp_skops_tuple(&e, skops);
	if (s->flags & LFP_SKF_BOUND) { /* the remembered tuple survives a reset that zeroed ports */
		__builtin_memcpy(e.local_addr_be, s->local_addr_be, sizeof(e.local_addr_be));
		e.local_port = s->local_port;
	}
	lfp_unmap(&e);
	__u32 old = lfp_sk_set(s, LFP_SKF_CLOSED);
	if ((old & (LFP_SKF_AUTHORIZED | LFP_SKF_LISTENER)) && !(old & LFP_SKF_CLOSED))
		lfp_notify(&e, LFP_LAYER_ENDPOINT_CLOSURE_V4);
	__u32 now = lfp_sk_set(s, 0); /* an atomic read: sees a RELEASED set before our CLOSED */
	if (!(now & LFP_SKF_RELEASED) && !lfp_never_accepted(sk, s))
		return;
	if (lfp_sk_set(s, LFP_SKF_RR_DONE) & LFP_SKF_RR_DONE)
		return;
	e.evflags &= ~LFP_EVF_REMOTE;
	e.remote_port = 0;
	__builtin_memset(e.remote_addr_be, 0, sizeof(e.remote_addr_be));
	lfp_notify(&e, LFP_LAYER_RESOURCE_RELEASE_V4);
}

static __always_inline int lfp_on_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (lfp_pend_sockops(skops, op))
		return 1;
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_TCP_LISTEN_CB &&
	    op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	if (op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] != TCP_CLOSE)
			return 1;
		struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);
		if (s && s->cookie == cookie)
			lfp_on_tcp_close(skops, sk, s, cookie);
		return 1;
	}
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 1;
	if (op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && s->cookie != cookie) {
		s->cookie = cookie; /* a socket lfp did not see created */
		lfp_sk_set(s, LFP_SKF_OWNER_UNKNOWN);
	}
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		lfp_on_tcp_connect_cb(skops, s, cookie);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		lfp_on_tcp_listen_cb(skops, s, cookie);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		lfp_pend_established(skops, s);
		lfp_on_tcp_established(skops, s, cookie, 0);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		lfp_on_tcp_established(skops, s, cookie, 1);
		break;
	}
	return 1;
}
