/* sweep.h — adopt sockets that existed before lfp attached to a cgroup (iter/tcp, iter/udp run
 * by `lfp attach`): give them an lfp_sk so their ENDPOINT_CLOSURE and RESOURCE_RELEASE are
 * reported, and report them once as discovered (RESOURCE_ASSIGNMENT, action NONE). */
#pragma once
#include <bpf/bpf_core_read.h>
#include "sk.h"

static __always_inline int lfp_adopt(struct sock *sk, __u8 proto)
{
	__u32 zero = 0;
	__u64 *target = bpf_map_lookup_elem(&lfp_sweep, &zero);
	if (!target || !*target)
		return 0;
	__u64 cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	if (cg != *target)
		return 0;
	if (bpf_sk_storage_get(&lfp_sk, sk, 0, 0))
		return 0; /* already known (created after attach, or swept before) */
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	__u8 state = sk->__sk_common.skc_state;
	s->cookie = bpf_get_socket_cookie(sk);
	s->cgroup_id = cg;
	s->uid = sk->sk_uid.val;
	s->protocol = proto;
	s->family = family;
	s->local_port = sk->__sk_common.skc_num;
	if (family == AF_INET) {
		s->local_addr_be[0] = sk->__sk_common.skc_rcv_saddr;
	} else {
		BPF_CORE_READ_INTO(&s->local_addr_be, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
	}
	/* the uid is the socket's, but no process-context hook saw the owner: classification
	 * treats uid/gid/executable as FWP_EMPTY for it */
	__u32 flags = LFP_SKF_BOUND | LFP_SKF_ASSIGNED | LFP_SKF_DISCOVERED | LFP_SKF_OWNER_UNKNOWN;
	if (proto == IPPROTO_TCP && state == TCP_LISTEN)
		flags |= LFP_SKF_LISTENER;
	else if (proto != IPPROTO_TCP || state == TCP_ESTABLISHED)
		flags |= LFP_SKF_AUTHORIZED; /* it has (or may have) flows: closure is due */
	lfp_sk_set(s, flags);

	struct lfp_event e;
	lfp_event_init_owner(&e, s->cookie, lfp_layer_for(LFP_LAYER_RESOURCE_ASSIGNMENT_V4, family),
	                     LFP_EV_NOTIFY, s);
	e.family = family;
	lfp_unmap(&e);
	lfp_emit(&e);
	return 0;
}
