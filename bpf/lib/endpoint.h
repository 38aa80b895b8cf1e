/* endpoint.h — the ALE logic behind each hook: build the incoming values from the hook's
 * context, classify at the WFP layer, remember the endpoint, emit the event, and turn the
 * verdict into the hook's answer. The SEC() entries in bpf/lfp_*.bpf.c are one-line calls. */
#pragma once
#include <bpf/bpf_endian.h>
#include "classify.h"
#include "events.h"

#define SOCK_RAW 3

/* keep clang from merging v4/v6 context loads into one load with a computed offset, which
 * the verifier rejects ("dereference of modified ctx ptr") */
#define LFP_BARRIER() asm volatile("" ::: "memory")

static __always_inline __u16 lfp_layer_for(__u16 v4_layer, __u16 family)
{
	return family == AF_INET6 ? v4_layer + 1 : v4_layer;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4 traffic of a dual-stack socket:
 * classify it at the V4 layer with the IPv4 address. */
static __always_inline int lfp_is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void lfp_unmap(struct lfp_event *e)
{
	if (e->family != AF_INET6)
		return;
	int r = (e->evflags & LFP_EVF_REMOTE) && lfp_is_v4mapped(e->remote_addr_be);
	int l = (e->evflags & LFP_EVF_LOCAL_ADDR) && lfp_is_v4mapped(e->local_addr_be);
	/* unmap only when every known address is v4 (or unspecified) */
	if (!r && !l)
		return;
	if ((e->evflags & LFP_EVF_REMOTE) && !r)
		return;
	if ((e->evflags & LFP_EVF_LOCAL_ADDR) && !l &&
	    (e->local_addr_be[0] | e->local_addr_be[1] | e->local_addr_be[2] | e->local_addr_be[3]))
		return;
	e->family = AF_INET;
	e->layer -= 1;
	e->remote_addr_be[0] = r ? e->remote_addr_be[3] : 0;
	e->local_addr_be[0] = l ? e->local_addr_be[3] : 0;
	e->remote_addr_be[1] = e->remote_addr_be[2] = e->remote_addr_be[3] = 0;
	e->local_addr_be[1] = e->local_addr_be[2] = e->local_addr_be[3] = 0;
}

static __always_inline int lfp_is_loopback(const struct lfp_event *e)
{
	if (e->family == AF_INET)
		return (bpf_ntohl(e->remote_addr_be[0]) >> 24) == 127;
	return e->remote_addr_be[0] == 0 && e->remote_addr_be[1] == 0 && e->remote_addr_be[2] == 0 &&
	       e->remote_addr_be[3] == bpf_htonl(1);
}

static __always_inline void lfp_apply(struct lfp_event *e, const struct lfp_verdict *v)
{
	e->action = v->action;
	e->filter_id = v->filter_id;
	e->generation = v->generation;
	e->error = v->action == LFP_ACTION_BLOCK ? v->block_errno : 0;
}

static __always_inline struct lfp_sk *lfp_sk_of(struct bpf_sock *sk, const struct lfp_event *e)
{
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (s && !s->tgid) {
		s->cgroup_id = e->cgroup_id;
		s->uid = e->uid;
		s->gid = e->gid;
		s->tgid = e->tgid;
		s->protocol = e->protocol;
		s->family = e->family;
	}
	return s;
}

static __always_inline void lfp_remember_local(struct lfp_sk *s, const struct lfp_event *e)
{
	if (!s || !(e->evflags & LFP_EVF_LOCAL_PORT))
		return;
	__builtin_memcpy(s->local_addr_be, e->local_addr_be, sizeof(s->local_addr_be));
	s->local_port = e->local_port;
	s->family = e->family;
	s->flags |= LFP_SKF_BOUND;
}

/* ALE_RESOURCE_ASSIGNMENT at socket creation: only family/type/protocol are known here. */
static __always_inline int lfp_on_sock_create(struct bpf_sock *sk)
{
	struct lfp_event e;
	__u16 family = sk->family;
	__u16 layer = lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, family);

	lfp_event_init(&e, bpf_get_socket_cookie(sk), layer, LFP_EV_CLASSIFY);
	e.family = family;
	e.protocol = sk->protocol;
	if (sk->type == SOCK_RAW)
		e.cond_flags |= LFP_FLAG_IS_RAW_ENDPOINT;
	struct lfp_verdict v = lfp_classify(layer, &e);
	lfp_apply(&e, &v);
	lfp_emit(&e);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0;
	}
	lfp_sk_of(sk, &e);
	return 1;
}

/* ALE_RESOURCE_ASSIGNMENT at an explicit bind: the address and port the socket really got. */
static __always_inline int lfp_on_post_bind(struct bpf_sock *sk, int v6)
{
	struct lfp_event e;
	__u16 layer = v6 ? LFP_LAYER_RESOURCE_ASSIGNMENT_V6 : LFP_LAYER_RESOURCE_ASSIGNMENT_V4;

	lfp_event_init(&e, bpf_get_socket_cookie(sk), layer, LFP_EV_CLASSIFY);
	e.family = v6 ? AF_INET6 : AF_INET;
	e.protocol = sk->protocol;
	e.local_port = sk->src_port; /* host order in struct bpf_sock */
	if (!v6) {
		e.local_addr_be[0] = sk->src_ip4;
		LFP_BARRIER();
	} else {
		e.local_addr_be[0] = sk->src_ip6[0];
		LFP_BARRIER();
		e.local_addr_be[1] = sk->src_ip6[1];
		LFP_BARRIER();
		e.local_addr_be[2] = sk->src_ip6[2];
		LFP_BARRIER();
		e.local_addr_be[3] = sk->src_ip6[3];
		LFP_BARRIER();
	}
	e.evflags = LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
	if (!(e.local_addr_be[0] | e.local_addr_be[1] | e.local_addr_be[2] | e.local_addr_be[3]))
		e.cond_flags |= LFP_FLAG_IS_WILDCARD_BIND;
	lfp_unmap(&e);
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	lfp_apply(&e, &v);
	lfp_emit(&e);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0; /* the kernel undoes the bind */
	}
	lfp_remember_local(lfp_sk_of(sk, &e), &e);
	return 1;
}

/* ALE_AUTH_CONNECT: connect() of TCP, connected UDP and raw sockets. */
static __always_inline int lfp_on_connect(struct bpf_sock_addr *ctx, int v6)
{
	struct lfp_event e;
	__u16 layer = v6 ? LFP_LAYER_AUTH_CONNECT_V6 : LFP_LAYER_AUTH_CONNECT_V4;

	lfp_event_init(&e, bpf_get_socket_cookie(ctx), layer, LFP_EV_CLASSIFY);
	e.family = v6 ? AF_INET6 : AF_INET;
	e.protocol = ctx->protocol;
	e.remote_port = bpf_ntohs((__u16)ctx->user_port);
	if (!v6) {
		e.remote_addr_be[0] = ctx->user_ip4;
		LFP_BARRIER();
	} else {
		e.remote_addr_be[0] = ctx->user_ip6[0];
		LFP_BARRIER();
		e.remote_addr_be[1] = ctx->user_ip6[1];
		LFP_BARRIER();
		e.remote_addr_be[2] = ctx->user_ip6[2];
		LFP_BARRIER();
		e.remote_addr_be[3] = ctx->user_ip6[3];
		LFP_BARRIER();
	}
	e.evflags = LFP_EVF_REMOTE;
	struct bpf_sock *sk = ctx->sk;
	struct lfp_sk *s = 0;
	if (sk) {
		s = lfp_sk_of(sk, &e);
		if (s && (s->flags & LFP_SKF_BOUND)) {
			__builtin_memcpy(e.local_addr_be, s->local_addr_be, sizeof(e.local_addr_be));
			e.local_port = s->local_port;
			e.evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
		}
	}
	lfp_unmap(&e);
	if (lfp_is_loopback(&e))
		e.cond_flags |= LFP_FLAG_IS_LOOPBACK;
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	lfp_apply(&e, &v);
	lfp_emit(&e);
	if (v.action == LFP_ACTION_BLOCK) {
		bpf_set_retval(-v.block_errno);
		return 0;
	}
	return 1;
}

/* fd closed: ALE_ENDPOINT_CLOSURE (for now, per socket) then ALE_RESOURCE_RELEASE, with the
 * cookie given at RESOURCE_ASSIGNMENT. The local tuple comes from lfp_sk: src_* is unreadable
 * in this context. */
static __always_inline int lfp_on_sock_release(struct bpf_sock *sk)
{
	struct lfp_event e;
	__u16 family = sk->family;
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);

	lfp_event_init(&e, bpf_get_socket_cookie(sk), lfp_layer_for(LFP_LAYER_ENDPOINT_CLOSURE_V4, family),
		       LFP_EV_NOTIFY);
	e.family = family;
	e.protocol = sk->protocol;
	e.action = LFP_ACTION_NONE;
	if (s) {
		e.uid = s->uid;
		e.gid = s->gid;
		e.cgroup_id = s->cgroup_id;
		e.parent_cookie = s->parent_cookie;
		if (s->flags & LFP_SKF_BOUND) {
			__builtin_memcpy(e.local_addr_be, s->local_addr_be, sizeof(e.local_addr_be));
			e.local_port = s->local_port;
			e.evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
		}
	}
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
	lfp_emit(&e);
	/* RESOURCE_RELEASE carries no remote fields (R3.20) */
	e.layer = lfp_layer_for(LFP_LAYER_RESOURCE_RELEASE_V4, e.family);
	e.evflags &= ~LFP_EVF_REMOTE;
	e.remote_port = 0;
	__builtin_memset(e.remote_addr_be, 0, sizeof(e.remote_addr_be));
	lfp_emit(&e);
	return 1;
}
