/* pend.h — holding an operation while a userspace callout decides (FwpsPendOperation0, rule
 * book §6; docs/callouts.md; the mechanism is docs/kernel-mechanisms.md §1-2, variant F).
 *
 * A BPF program cannot wait, so the operation is held where the kernel already waits:
 *
 *   1. connect()/sendmsg() classify to LFP_ACTION_CALLOUT: the hook records the flow in
 *      lfp_pends (WAITING), marks the socket LFP_SKF_PENDED and lets the call go on. For TCP it
 *      raises TCP_SYNCNT so that the held SYN is retried for hours, not 135 s.
 *   2. cgroup_skb/egress drops every packet of a WAITING flow; a TCP SYN is copied into the entry
 *      first. sockops sets a 1-jiffy initial SYN RTO on a pended socket, so at least one SYN is
 *      retransmitted before the verdict (Karn's rule then keeps the pend out of the RTT).
 *   3. The daemon runs the callouts, writes PERMIT or BLOCK into the entry and then, for TCP,
 *      re-injects the kept SYN (permit: connect() returns ~0.2 ms later) or forges the peer's
 *      refusal (block: RST or ICMP, the errno the filter chose). Datagrams dropped while waiting
 *      are lost, as in WFP (R6.5): the application retransmits.
 *   4. ACTIVE_ESTABLISHED restores the initial window the retransmissions shrank, and ends the
 *      socket's pended state; sock_release forgets a connected socket's entry.
 *
 * A flow that cannot be held (no lfp_sk, LFP_MAX_PENDS already held) is refused with ENOBUFS:
 * the callout never saw it, so it must not pass.
 */
#pragma once
#include "sk.h"

#define SOL_TCP 6
#define TCP_SYNCNT 7
#define TCP_BPF_IW 1001
#define ENOBUFS 105
#define LFP_PEND_SYNCNT 127    /* SYN retries of a held connect: ~3.8 h with a 1-jiffy RTO      */
#define LFP_PEND_RTO_JIFFIES 1 /* BPF_SOCK_OPS_TIMEOUT_INIT reply for a pended socket          */
#define LFP_PEND_IW 10         /* TCP_BPF_IW once established (RFC 6928's initial window)      */

/* struct lfp_flow_key -> struct lfp_pend (lfp_abi.h). The connect/sendmsg hooks create WAITING
 * entries; egress copies the held SYN into them; the daemon writes the verdict and deletes the
 * entries it is done with; sock_release deletes a connected socket's entry. Not LRU: evicting a
 * WAITING entry would let its flow through unasked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LFP_MAX_PENDS);
	__type(key, struct lfp_flow_key);
	__type(value, struct lfp_pend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_pends LFP_MAP;

/* socket cookie -> 1: held connections the daemon ends at the next reauthorization pass
 * (lib/reauth.h), because no forged packet can reach them (a socket bound to a device does not
 * take an ICMP error arriving on lo). Written by the daemon, deleted by the iterator. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LFP_MAX_PENDS);
	__type(key, __u64);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_destroy LFP_MAP;

/* What a new entry starts from: a map update needs a whole value, and one on the stack would
 * not fit next to the connect hook's event. Never written. */
static const struct lfp_pend lfp_pend_zero;

/* Whether the daemon's raw socket can stand in for this socket when it re-injects the held SYN:
 * not with a mark (policy routing), a bound device, or a TCP-MD5/TCP-AO key (the SYN is signed).
 * BTF reads of the socket, like lfp_bound_dev in endpoint.h. */
/* tcp_sock.ao_info exists only in kernels built with CONFIG_TCP_AO: a CO-RE flavour, checked at
 * load time. */
struct tcp_sock___ao {
	void *ao_info;
} __attribute__((preserve_access_index));

static __always_inline int lfp_pend_needs_kernel_retry(struct bpf_sock *ctx_sk)
{
	if (!ctx_sk || ctx_sk->protocol != IPPROTO_TCP)
		return 0;
	if (ctx_sk->mark || ctx_sk->bound_dev_if)
		return 1;
	const struct tcp_sock *tp = bpf_rdonly_cast(ctx_sk, bpf_core_type_id_kernel(struct tcp_sock));
	if (bpf_core_field_exists(tp->md5sig_info) && tp->md5sig_info)
		return 1;
	const struct tcp_sock___ao *ao = (const void *)tp;
	if (bpf_core_field_exists(ao->ao_info) && ao->ao_info)
		return 1;
	return 0;
}

/* Begin holding flow `k` for the callout filter of `v`; 0 when it cannot be held. `sk`: the
 * socket whose SYN may be re-injected (connect), or NULL. */
static __always_inline int lfp_pend_begin_sk(struct lfp_sk *s, const struct lfp_flow_key *k,
                                             const struct lfp_event *e, const struct lfp_verdict *v,
                                             struct bpf_sock *sk)
{
	if (!s || bpf_map_update_elem(&lfp_pends, k, &lfp_pend_zero, BPF_ANY)) {
		lfp_stat_inc(LFP_STAT_PEND_FULL);
		return 0;
	}
	struct lfp_pend *p = bpf_map_lookup_elem(&lfp_pends, k);
	if (!p)
		return 0;
	p->filter_id = v->filter_id;
	p->generation = v->generation;
	p->start_ns = bpf_ktime_get_ns();
	p->protocol = e->protocol;
	p->layer = e->layer;
	p->flags = lfp_pend_needs_kernel_retry(sk) ? LFP_PEND_F_KERNEL_RETRY : 0;
	lfp_sk_set(s, LFP_SKF_PENDED);
	lfp_stat_inc(LFP_STAT_PEND);
	return 1;
}

static __always_inline int lfp_pend_begin(struct lfp_sk *s, const struct lfp_flow_key *k,
                                          const struct lfp_event *e, const struct lfp_verdict *v)
{
	return lfp_pend_begin_sk(s, k, e, v, 0);
}

/* A verdict that could not be held becomes a block with ENOBUFS. */
static __always_inline void lfp_pend_refuse(struct lfp_verdict *v)
{
	v->action = LFP_ACTION_BLOCK;
	v->block_errno = ENOBUFS;
}

/* For TCP: keep retrying the held SYN (the socket is in process context here). */
static __always_inline void lfp_pend_tcp(struct bpf_sock_addr *ctx)
{
	int n = LFP_PEND_SYNCNT;
	bpf_setsockopt(ctx, SOL_TCP, TCP_SYNCNT, &n, sizeof(n));
}

/* The flow key of a connected socket's packets: its own remote end (before any NAT, as the
 * connect hook saw it), IPv4-mapped addresses as IPv4 (lfp_unmap). */
static __always_inline void lfp_pend_key_connected(struct lfp_flow_key *k, __u64 cookie, struct bpf_sock *sk)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->cookie = cookie;
	k->family = sk->family;
	k->remote_port = bpf_ntohs((__u16)sk->dst_port);
	if (k->family == AF_INET) {
		k->remote_be[0] = sk->dst_ip4;
		return;
	}
	k->remote_be[0] = sk->dst_ip6[0];
	LFP_BARRIER();
	k->remote_be[1] = sk->dst_ip6[1];
	LFP_BARRIER();
	k->remote_be[2] = sk->dst_ip6[2];
	LFP_BARRIER();
	k->remote_be[3] = sk->dst_ip6[3];
	LFP_BARRIER();
	if (lfp_is_v4mapped(k->remote_be)) {
		k->family = AF_INET;
		k->remote_be[0] = k->remote_be[3];
		k->remote_be[1] = k->remote_be[2] = k->remote_be[3] = 0;
	}
}

/* The flow key of an unconnected socket's datagram: its destination, read from the packet. */
static __always_inline int lfp_pend_key_packet(struct lfp_flow_key *k, __u64 cookie, struct __sk_buff *skb)
{
	__u16 dport;
	__builtin_memset(k, 0, sizeof(*k));
	k->cookie = cookie;
	if (skb->protocol == bpf_htons(0x0800)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) ||
		    bpf_skb_load_bytes(skb, 16, &k->remote_be[0], 4) ||
		    bpf_skb_load_bytes(skb, (vihl & 0xf) * 4 + 2, &dport, 2))
			return 0;
		k->family = AF_INET;
	} else {
		if (bpf_skb_load_bytes(skb, 24, k->remote_be, 16) ||
		    bpf_skb_load_bytes(skb, 40 + 2, &dport, 2))
			return 0;
		k->family = AF_INET6;
		if (lfp_is_v4mapped(k->remote_be)) {
			k->family = AF_INET;
			k->remote_be[0] = k->remote_be[3];
			k->remote_be[1] = k->remote_be[2] = k->remote_be[3] = 0;
		}
	}
	k->remote_port = bpf_ntohs(dport);
	return 1;
}

/* Keep the latest held SYN for re-injection: from the IP header, at most LFP_PEND_CAPTURE. */
static __always_inline void lfp_pend_capture(struct __sk_buff *skb, struct lfp_pend *p)
{
	__u32 len = skb->len;
	if (len > LFP_PEND_CAPTURE)
		return; /* a SYN with data (TCP Fast Open) cannot be re-injected whole: let it retry */
	if (len < 20)
		return;
	if (bpf_skb_load_bytes(skb, 0, p->packet, len))
		return;
	p->packet_len = len;
	p->packet_ns = bpf_ktime_get_ns();
}

/* cgroup_skb/ingress of a held inbound flow (ALE_AUTH_RECV_ACCEPT): keep the latest SYN for the
 * daemon to re-inject on permit (R6.7), drop it (the peer retransmits meanwhile). A datagram is
 * dropped, as at egress. The hold ends when the daemon writes the flow's verdict to lfp_flows. */
static __always_inline int lfp_pend_hold_inbound(struct __sk_buff *skb, const struct lfp_flow_key *k)
{
	struct lfp_pend *p = bpf_map_lookup_elem(&lfp_pends, k);
	if (p && p->protocol == IPPROTO_TCP)
		lfp_pend_capture(skb, p);
	return 0;
}

/* cgroup_skb/egress: 1 passes the packet, 0 drops it. */
static __always_inline int lfp_on_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, 0);
	if (!s || !(s->flags & LFP_SKF_PENDED))
		return 1; /* the fast path: nothing of this socket is held */
	struct lfp_flow_key k;
	__u64 cookie = bpf_get_socket_cookie(skb);
	int connected = sk->dst_port != 0;
	if (connected)
		lfp_pend_key_connected(&k, cookie, sk);
	else if (!lfp_pend_key_packet(&k, cookie, skb))
		return 1;
	struct lfp_pend *p = bpf_map_lookup_elem(&lfp_pends, &k);
	if (!p || p->state == LFP_PEND_PERMIT) {
		if (connected) /* its one flow is decided: skip the lookup from now on */
			lfp_sk_clear(s, LFP_SKF_PENDED);
		return 1;
	}
	if (p->protocol == IPPROTO_TCP) { /* blocked too: the refusal is forged from the SYN */
		lfp_pend_capture(skb, p);
		return 0; /* the SYN stays queued and is retransmitted */
	}
	/* A held datagram is dropped with "congestion" (2): send() succeeds and the data is lost,
	 * as in WFP (R6.5). A blocked flow's datagram is refused: send() fails with EPERM. */
	return p->state == LFP_PEND_WAITING ? 2 : 0;
}

/* sockops for a pended socket: returns 1 when `op` was one of ours. */
static __always_inline int lfp_pend_sockops(struct bpf_sock_ops *skops, __u32 op)
{
	if (op != BPF_SOCK_OPS_TIMEOUT_INIT)
		return 0;
	struct bpf_sock *sk = skops->sk;
	struct lfp_sk *s = sk ? bpf_sk_storage_get(&lfp_sk, sk, 0, 0) : 0;
	if (s && (s->flags & LFP_SKF_PENDED))
		skops->reply = LFP_PEND_RTO_JIFFIES;
	return 1;
}

/* ACTIVE_ESTABLISHED of a socket that was held: the retransmitted SYNs set cwnd to 1
 * (tcp_init_transfer); put the initial window back while no data has been sent. */
static __always_inline void lfp_pend_established(struct bpf_sock_ops *skops, struct lfp_sk *s)
{
	if (!(lfp_sk_clear(s, LFP_SKF_PENDED) & LFP_SKF_PENDED))
		return;
	int iw = LFP_PEND_IW;
	bpf_setsockopt(skops, SOL_TCP, TCP_BPF_IW, &iw, sizeof(iw));
}

/* sock_release of a pended connected socket: its entry goes with it. */
static __always_inline void lfp_pend_release(struct bpf_sock *sk, const struct lfp_sk *s, __u64 cookie)
{
	if (!s || !(s->flags & LFP_SKF_PENDED) || !sk->dst_port)
		return;
	struct lfp_flow_key k;
	lfp_pend_key_connected(&k, cookie, sk);
	bpf_map_delete_elem(&lfp_pends, &k);
}
