/* inbound.h — ALE_AUTH_RECV_ACCEPT at cgroup_skb/ingress: the SYN of an inbound TCP connection
 * (seen on its listener) and the first datagram from each new peer of a UDP socket. A block
 * drops the packet: the connection never completes, the datagram never arrives. cgroup_skb
 * cannot choose an errno (bpf_set_retval is unavailable there). The remote end comes from the
 * packet: __sk_buff's remote fields describe the socket, not the packet. */
#pragma once
#include "pend.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

struct lfp_pkt {
	__u32 src_be[4];
	__u32 dst_be[4];
	__u16 sport, dport; /* host order */
	__u8 proto;
	__u8 tcp_flags;
	__u16 family;
};

/* Parse IP and the TCP/UDP ports; 0 when this is not a packet lfp classifies. IPv6 extension
 * headers are not walked: such packets pass unclassified (documented). */
static __always_inline int lfp_parse(struct __sk_buff *skb, struct lfp_pkt *p)
{
	__u32 l4;
	__builtin_memset(p, 0, sizeof(*p));
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &p->proto, 1) ||
		    bpf_skb_load_bytes(skb, 12, &p->src_be[0], 4) ||
		    bpf_skb_load_bytes(skb, 16, &p->dst_be[0], 4))
			return 0;
		l4 = (vihl & 0xf) * 4;
		p->family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &p->proto, 1) || bpf_skb_load_bytes(skb, 8, p->src_be, 16) ||
		    bpf_skb_load_bytes(skb, 24, p->dst_be, 16))
			return 0;
		l4 = 40;
		p->family = AF_INET6;
	} else {
		return 0;
	}
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return 0;
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	if (p->proto == IPPROTO_TCP && bpf_skb_load_bytes(skb, l4 + 13, &p->tcp_flags, 1))
		return 0;
	return 1;
}

static __always_inline int lfp_on_ingress(struct __sk_buff *skb)
{
	struct lfp_pkt p;
	struct lfp_event e;
	struct lfp_flow_key k;

	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	__u32 proto = sk->protocol;
	if (proto == IPPROTO_TCP && sk->state != TCP_LISTEN)
		return 1; /* only a listener authorizes new connections */
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 1;
	if (!lfp_parse(skb, &p) || p.proto != proto)
		return 1;
	if (proto == IPPROTO_TCP && (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return 1;
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);
	if (s && (s->flags & LFP_SKF_LISTEN_BLOCKED))
		return 0; /* AUTH_LISTEN blocked this listener (reported once, at listen) */
	__u64 cookie = bpf_get_socket_cookie(skb);

	/* Every datagram of a UDP socket comes here: find its flow first, and copy the owner's
	 * fields only for a new peer. */
	__builtin_memset(&e, 0, sizeof(e));
	e.cookie = cookie;
	e.layer = lfp_layer_for(LFP_LAYER_AUTH_RECV_ACCEPT_V4, p.family);
	e.kind = LFP_EV_CLASSIFY;
	e.family = p.family;
	e.protocol = p.proto;
	__builtin_memcpy(e.remote_addr_be, p.src_be, sizeof(e.remote_addr_be));
	__builtin_memcpy(e.local_addr_be, p.dst_be, sizeof(e.local_addr_be));
	e.remote_port = p.sport;
	e.local_port = p.dport;
	e.evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT | LFP_EVF_REMOTE;
	e.ifindex = skb->ifindex; /* IP_LOCAL_INTERFACE: the device the packet arrived on */
	lfp_unmap(&e);
	if (lfp_is_loopback(&e))
		e.cond_flags |= LFP_FLAG_IS_LOOPBACK;
	lfp_flow_key(&k, cookie, &e);
	struct lfp_flow *f = lfp_flow_find(&k, &e);
	if (f) { /* a retransmitted SYN, or a known UDP peer (either direction) */
		if (f->action == LFP_ACTION_CALLOUT)
			return lfp_pend_hold_inbound(skb, &k);
		return f->action == LFP_ACTION_BLOCK ? 0 : 1;
	}
	if (s)
		lfp_event_owner(&e, s);
	struct lfp_verdict v = lfp_classify(e.layer, &e);
	if (v.action == LFP_ACTION_CALLOUT && !lfp_pend_begin(s, &k, &e, &v))
		lfp_pend_refuse(&v);
	lfp_apply(&e, &v);
	lfp_emit(&e);
	lfp_flow_store(&k, &v);
	if (v.action == LFP_ACTION_CALLOUT) /* held: the daemon re-injects the SYN on permit (R6.7) */
		return lfp_pend_hold_inbound(skb, &k);
	if (v.action == LFP_ACTION_BLOCK)
		return 0;
	if (proto != IPPROTO_TCP) {
		if (s)
			lfp_sk_set(s, LFP_SKF_AUTHORIZED);
		if (!(e.cond_flags & LFP_FLAG_IS_REAUTHORIZE)) /* non-TCP: right after the authorization */
			lfp_notify(&e, LFP_LAYER_FLOW_ESTABLISHED_V4);
	}
	return 1;
}
