/* endpoint.h — ALE logic of the process-context hooks (socket creation, bind, connect, sendmsg,
 * release): build the incoming values from the hook's context, classify at the WFP layer,
 * remember the endpoint, emit the events, and turn the verdict into the hook's answer.
 *
 * Event order per endpoint (documented in the README, asserted by the kernel-path tests):
 *   TCP client : RA(create) AUTH_CONNECT RA(implicit bind, at TCP_CONNECT_CB) FLOW_ESTABLISHED
 *                ENDPOINT_CLOSURE RESOURCE_RELEASE
 *   UDP        : RA(create) [RA(implicit bind)] AUTH_CONNECT+FLOW_ESTABLISHED per new peer ...
 *                ENDPOINT_CLOSURE RESOURCE_RELEASE
 */
#pragma once
#include "pend.h"

/* IP_LOCAL_INTERFACE at post_bind: the kernel lets only sock_create and sock_release read
 * bound_dev_if from their context, but the context of every cgroup/sock hook is the struct sock
 * itself, so a read-only BTF cast reads it (one guarded load, no helper call). */
static __always_inline __u32 lfp_bound_dev(struct bpf_sock *ctx)
{
	const struct sock *sk = bpf_rdonly_cast(ctx, bpf_core_type_id_kernel(struct sock));
	return sk->__sk_common.skc_bound_dev_if;
}

static __always_inline void lfp_read_sock_local(struct lfp_event *e, struct bpf_sock *sk, int v6)
{
	e->local_port = sk->src_port; /* host order in struct bpf_sock */
	if (!v6) {
		e->local_addr_be[0] = sk->src_ip4;
		LFP_BARRIER();
	} else {
		e->local_addr_be[0] = sk->src_ip6[0];
		LFP_BARRIER();
		e->local_addr_be[1] = sk->src_ip6[1];
		LFP_BARRIER();
		e->local_addr_be[2] = sk->src_ip6[2];
		LFP_BARRIER();
		e->local_addr_be[3] = sk->src_ip6[3];
		LFP_BARRIER();
	}
	e->evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
}

static __always_inline void lfp_read_user_remote(struct lfp_event *e, struct bpf_sock_addr *ctx, int v6)
{
	e->remote_port = bpf_ntohs((__u16)ctx->user_port);
	if (!v6) {
		e->remote_addr_be[0] = ctx->user_ip4;
		LFP_BARRIER();
	} else {
		e->remote_addr_be[0] = ctx->user_ip6[0];
		LFP_BARRIER();
		e->remote_addr_be[1] = ctx->user_ip6[1];
		LFP_BARRIER();
		e->remote_addr_be[2] = ctx->user_ip6[2];
		LFP_BARRIER();
		e->remote_addr_be[3] = ctx->user_ip6[3];
		LFP_BARRIER();
	}
	e->evflags |= LFP_EVF_REMOTE;
}

/* ALE_RESOURCE_ASSIGNMENT at socket creation: only family/type/protocol are known here. */
static __always_inline int lfp_on_sock_create(struct bpf_sock *sk)
{
	struct lfp_event e;
	__u16 family = sk->family;
	__u64 cookie = bpf_get_socket_cookie(sk);

	lfp_event_init(&e, cookie, lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, family), LFP_EV_CLASSIFY);
	e.family = family;
	e.protocol = sk->protocol;
	e.ifindex = sk->bound_dev_if; /* 0 (FWP_EMPTY) unless a program before us set one */
	if (sk->type == SOCK_RAW)
		e.cond_flags |= LFP_FLAG_IS_RAW_ENDPOINT;
	struct lfp_verdict v = lfp_decide(&e);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0; /* no socket: no RESOURCE_RELEASE will follow */
	}
	lfp_sk_own(sk, cookie, &e);
	return 1;
}

/* ALE_RESOURCE_ASSIGNMENT at an explicit bind: the address and port the socket really got. */
static __always_inline int lfp_on_post_bind(struct bpf_sock *sk, int v6)
{
	struct lfp_event e;
	__u64 cookie = bpf_get_socket_cookie(sk);

	lfp_event_init(&e, cookie, v6 ? LFP_LAYER_RESOURCE_ASSIGNMENT_V6 : LFP_LAYER_RESOURCE_ASSIGNMENT_V4,
	               LFP_EV_CLASSIFY);
	e.family = v6 ? AF_INET6 : AF_INET;
	e.protocol = sk->protocol;
	e.ifindex = lfp_bound_dev(sk);
	lfp_read_sock_local(&e, sk, v6);
	if (lfp_is_unspecified(e.local_addr_be))
		e.cond_flags |= LFP_FLAG_IS_WILDCARD_BIND;
	lfp_unmap(&e);
	struct lfp_verdict v = lfp_decide(&e);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0; /* the kernel undoes the bind */
	}
	struct lfp_sk *s = lfp_sk_own(sk, cookie, &e);
	lfp_remember_local(s, &e);
	if (s)
		lfp_sk_set(s, LFP_SKF_ASSIGNED);
	return 1;
}

/* An implicit bind is about to happen (connect or first sendmsg of an unbound socket): the
 * event `e` is turned, in place, into its RESOURCE_ASSIGNMENT form with IS_IMPLICIT_BIND (no
 * remote fields) and back. In place because the verifier allows 512 bytes of stack for the whole
 * call chain and one event is 168. The local port is known for sendmsg (autobound already),
 * FWP_EMPTY for connect (bound after the hook). */
struct lfp_saved_remote {
	__u32 addr_be[4];
	__u16 port;
	__u16 layer;
	__u32 cond_flags;
	__u8 evflags;
};

static __always_inline void lfp_as_implicit_bind(struct lfp_event *e, struct lfp_saved_remote *sv)
{
	__builtin_memcpy(sv->addr_be, e->remote_addr_be, sizeof(sv->addr_be));
	sv->port = e->remote_port;
	sv->layer = e->layer;
	sv->cond_flags = e->cond_flags;
	sv->evflags = e->evflags;
	e->layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, e->family);
	e->evflags &= ~LFP_EVF_REMOTE;
	e->remote_port = 0;
	__builtin_memset(e->remote_addr_be, 0, sizeof(e->remote_addr_be));
	e->cond_flags = LFP_FLAG_IS_IMPLICIT_BIND;
}

static __always_inline void lfp_as_remote(struct lfp_event *e, const struct lfp_saved_remote *sv)
{
	__builtin_memcpy(e->remote_addr_be, sv->addr_be, sizeof(e->remote_addr_be));
	e->remote_port = sv->port;
	e->layer = sv->layer;
	e->cond_flags = sv->cond_flags;
	e->evflags = sv->evflags;
}

/* ALE_AUTH_CONNECT for connect() (TCP, connected UDP, raw), with the implicit bind before it. */
static __always_inline int lfp_on_connect(struct bpf_sock_addr *ctx, int v6)
{
	struct lfp_event e;
	struct lfp_saved_remote sv;
	struct lfp_verdict rv = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct bpf_sock *sk = ctx->sk;
	struct lfp_sk *s = 0;

	lfp_event_init(&e, cookie, v6 ? LFP_LAYER_AUTH_CONNECT_V6 : LFP_LAYER_AUTH_CONNECT_V4,
	               LFP_EV_CLASSIFY);
	e.family = v6 ? AF_INET6 : AF_INET;
	e.protocol = ctx->protocol;
	lfp_read_user_remote(&e, ctx, v6);
	if (sk) {
		/* IP_LOCAL_INTERFACE: only a socket bound to a device knows it here; the route (and
		 * so the interface) of an unbound one is chosen after this hook */
		e.ifindex = sk->bound_dev_if;
		s = lfp_sk_own(sk, cookie, &e);
		/* a TCP socket whose earlier connect() failed gave its implicit port back: this
		 * connect binds anew */
		if (s && e.protocol == IPPROTO_TCP && !sk->src_port)
			lfp_sk_clear(s, LFP_SKF_BOUND | LFP_SKF_ASSIGNED);
		if (s && (s->flags & LFP_SKF_BOUND)) {
			__builtin_memcpy(e.local_addr_be, s->local_addr_be, sizeof(e.local_addr_be));
			e.local_port = s->local_port;
			e.evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
		}
	}
	lfp_unmap(&e);
	if (lfp_is_loopback(&e))
		e.cond_flags |= LFP_FLAG_IS_LOOPBACK;

	int implicit = s && !(s->flags & LFP_SKF_ASSIGNED);
	if (implicit) {
		lfp_as_implicit_bind(&e, &sv);
		rv = lfp_classify(e.layer, &e);
		if (rv.action == LFP_ACTION_BLOCK) {
			lfp_apply(&e, &rv);
			lfp_emit(&e);
			bpf_set_retval(-rv.block_errno);
			return 0;
		}
		lfp_as_remote(&e, &sv);
	}
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	struct lfp_flow_key k;
	lfp_flow_key(&k, cookie, &e);
	if (v.action == LFP_ACTION_CALLOUT && !lfp_pend_begin_sk(s, &k, &e, &v, sk))
		lfp_pend_refuse(&v);
	if (v.action == LFP_ACTION_BLOCK) {
		lfp_apply(&e, &v);
		lfp_emit(&e);
		bpf_set_retval(-v.block_errno);
		return 0;
	}
	if (v.action == LFP_ACTION_CALLOUT && e.protocol == IPPROTO_TCP)
		lfp_pend_tcp(ctx);
	if (implicit && s) {
		if (e.protocol == IPPROTO_TCP) {
			/* reported at TCP_CONNECT_CB, once the kernel has chosen the port */
			s->ra_action = rv.action;
			s->ra_filter_id = rv.filter_id;
			lfp_sk_set(s, LFP_SKF_ASSIGNED | LFP_SKF_RA_PENDING);
		} else {
			lfp_sk_set(s, LFP_SKF_ASSIGNED);
			lfp_as_implicit_bind(&e, &sv);
			lfp_apply(&e, &rv);
			lfp_emit(&e);
			lfp_as_remote(&e, &sv);
		}
	}
	lfp_apply(&e, &v);
	lfp_emit(&e);
	if (s) {
		lfp_sk_set(s, LFP_SKF_AUTHORIZED);
		if (e.protocol == IPPROTO_TCP)
			lfp_sk_clear(s, LFP_SKF_CLOSED); /* TCP: one closure per authorized connection */
	}
	if (e.protocol != IPPROTO_TCP) {
		/* non-TCP: the flow to this peer exists now (R7.6); remember it so the peer's
		 * replies are not classified again at RECV_ACCEPT. A held flow is established when
		 * the daemon completes it. */
		lfp_flow_store(&k, &v);
		if (v.action != LFP_ACTION_CALLOUT)
			lfp_notify(&e, LFP_LAYER_FLOW_ESTABLISHED_V4);
	}
	return 1;
}

/* ALE_AUTH_CONNECT for the first datagram to each new peer of an unconnected socket. */
static __always_inline int lfp_on_sendmsg(struct bpf_sock_addr *ctx, int v6)
{
	struct lfp_event e;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct bpf_sock *sk = ctx->sk;
	struct lfp_sk *s = 0;
	struct lfp_flow_key k;

	/* Every datagram comes here: find its flow first, and fill in the task's fields (and
	 * read its executable) only for a new peer. */
	__builtin_memset(&e, 0, sizeof(e));
	e.cookie = cookie;
	e.layer = v6 ? LFP_LAYER_AUTH_CONNECT_V6 : LFP_LAYER_AUTH_CONNECT_V4;
	e.kind = LFP_EV_CLASSIFY;
	e.family = v6 ? AF_INET6 : AF_INET;
	e.protocol = ctx->protocol;
	lfp_read_user_remote(&e, ctx, v6);
	lfp_unmap(&e);
	lfp_flow_key(&k, cookie, &e);
	struct lfp_flow *f = lfp_flow_find(&k, &e);
	if (f) { /* a known peer: the flow's verdict, no new classification or event */
		if (f->action == LFP_ACTION_BLOCK) {
			bpf_set_retval(-(f->block_errno ? f->block_errno : 1));
			return 0;
		}
		return 1;
	}
	lfp_event_init_current(&e);
	if (sk) {
		e.ifindex = sk->bound_dev_if; /* as at connect: the bound device or FWP_EMPTY */
		s = lfp_sk_own(sk, cookie, &e);
		if (s && !(s->flags & LFP_SKF_ASSIGNED)) {
			/* inet_send_prepare() autobound the socket before this hook: the port is real */
			struct lfp_saved_remote sv;
			lfp_read_sock_local(&e, sk, v6);
			lfp_unmap(&e);
			lfp_as_implicit_bind(&e, &sv);
			struct lfp_verdict rv = lfp_decide(&e);
			if (rv.action == LFP_ACTION_BLOCK) {
				bpf_set_retval(-rv.block_errno);
				return 0;
			}
			lfp_as_remote(&e, &sv);
			e.kind = LFP_EV_CLASSIFY;
			lfp_remember_local(s, &e);
			lfp_sk_set(s, LFP_SKF_ASSIGNED);
		} else if (s && (s->flags & LFP_SKF_BOUND)) {
			__builtin_memcpy(e.local_addr_be, s->local_addr_be, sizeof(e.local_addr_be));
			e.local_port = s->local_port;
			e.evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
		}
	}
	if (lfp_is_loopback(&e))
		e.cond_flags |= LFP_FLAG_IS_LOOPBACK;
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	if (v.action == LFP_ACTION_CALLOUT && !lfp_pend_begin(s, &k, &e, &v))
		lfp_pend_refuse(&v);
	lfp_apply(&e, &v);
	lfp_emit(&e);
	lfp_flow_store(&k, &v);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0;
	}
	if (s)
		lfp_sk_set(s, LFP_SKF_AUTHORIZED);
	/* a reauthorized flow was established before; a held one is when the daemon completes it.
	 * The held datagram goes on to egress, which drops it (R6.5). */
	if (!(e.cond_flags & LFP_FLAG_IS_REAUTHORIZE) && v.action != LFP_ACTION_CALLOUT)
		lfp_notify(&e, LFP_LAYER_FLOW_ESTABLISHED_V4);
	return 1;
}

/* fd closed. RESOURCE_RELEASE carries the handle given at RESOURCE_ASSIGNMENT. A TCP
 * connection or listener that sockops follows is still closing: its ENDPOINT_CLOSURE and then
 * RESOURCE_RELEASE are reported when it reaches CLOSE (lfp_on_tcp_close). The hand-over with
 * that softirq path goes through atomics on lfp_sk.flags: RELEASED is set here before CLOSED is
 * looked at, CLOSED is set there before RELEASED is looked at, so one side always reports. */
static __always_inline int lfp_on_sock_release(struct bpf_sock *sk)
{
	struct lfp_event e;
	__u16 family = sk->family;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);
	int tcp = sk->protocol == IPPROTO_TCP;

	lfp_pend_release(sk, s, cookie);
	if (s && tcp) {
		__u32 old = lfp_sk_set(s, LFP_SKF_RELEASED);
		if ((old & LFP_SKF_STATECB) && (old & (LFP_SKF_AUTHORIZED | LFP_SKF_LISTENER)) &&
		    !(old & LFP_SKF_CLOSED) && sk->state != TCP_CLOSE)
			return 1;
	}
	lfp_event_init_owner(&e, cookie, lfp_layer_for(LFP_LAYER_ENDPOINT_CLOSURE_V4, family), LFP_EV_NOTIFY,
	                     s);
	e.family = family;
	e.protocol = sk->protocol;
	e.ifindex = sk->bound_dev_if;
	if (!s)
		lfp_event_init_current(&e);
	__u16 dport = bpf_ntohs((__u16)sk->dst_port);
	if (dport) {
		e.remote_port = dport;
		if (family == AF_INET) {
			e.remote_addr_be[0] = sk->dst_ip4;
			LFP_BARRIER();
		} else {
			e.remote_addr_be[0] = sk->dst_ip6[0];
			LFP_BARRIER();
			e.remote_addr_be[1] = sk->dst_ip6[1];
			LFP_BARRIER();
			e.remote_addr_be[2] = sk->dst_ip6[2];
			LFP_BARRIER();
			e.remote_addr_be[3] = sk->dst_ip6[3];
			LFP_BARRIER();
		}
		e.evflags |= LFP_EVF_REMOTE;
	}
	lfp_unmap(&e);
	if (!s) {
		/* a socket that predates the attach and that the sweep could not see (not in a
		 * hash table: never bound): report it as found, so its release has an assignment */
		__u16 layer = e.layer;
		e.layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, e.family);
		lfp_emit(&e);
		e.layer = layer;
	}
	if (s && (s->flags & (LFP_SKF_AUTHORIZED | LFP_SKF_LISTENER)) &&
	    !(lfp_sk_set(s, LFP_SKF_CLOSED) & LFP_SKF_CLOSED))
		lfp_notify(&e, LFP_LAYER_ENDPOINT_CLOSURE_V4);
	if (s && (lfp_sk_set(s, LFP_SKF_RR_DONE) & LFP_SKF_RR_DONE))
		return 1;
	/* RESOURCE_RELEASE carries no remote fields (R3.20) */
	e.evflags &= ~LFP_EVF_REMOTE;
	e.remote_port = 0;
	__builtin_memset(e.remote_addr_be, 0, sizeof(e.remote_addr_be));
	lfp_notify(&e, LFP_LAYER_RESOURCE_RELEASE_V4);
	return 1;
}
