/* sk.h — per-endpoint memory (lfp_sk) and event headers filled from it or from the current task. */
#pragma once
#include <bpf/bpf_endian.h>
#include "classify.h"
#include "events.h"

/* A read-only BTF cast of a kernel object (plain, fault-guarded loads; no helper call). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define SOCK_RAW 3
#define TCP_ESTABLISHED 1
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* keep clang from merging v4/v6 context loads into one load with a computed offset, which
 * the verifier rejects ("dereference of modified ctx ptr") */
#define LFP_BARRIER() asm volatile("" ::: "memory")

/* lfp_sk.flags is changed from process context and from softirq (sockops, ingress) on other
 * CPUs: every change is an atomic fetch-or/and, and hand-overs (fd closed vs. connection
 * closed) decide on the value the atomic returned. */
static __always_inline __u32 lfp_sk_set(struct lfp_sk *s, __u32 bits)
{
	return __sync_fetch_and_or(&s->flags, bits);
}

static __always_inline __u32 lfp_sk_clear(struct lfp_sk *s, __u32 bits)
{
	return __sync_fetch_and_and(&s->flags, ~bits);
}

static __always_inline __u16 lfp_layer_for(__u16 v4_layer, __u16 family)
{
	return family == AF_INET6 ? v4_layer + 1 : v4_layer;
}

/* Remember the owner of a socket the first time a process-context hook sees it (or again in a
 * fresh clone, whose entry still describes the listener). */
static __always_inline struct lfp_sk *lfp_sk_own(void *sk, __u64 cookie, const struct lfp_event *e)
{
	struct lfp_sk *s = bpf_sk_storage_get(&lfp_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (s && s->cookie != cookie) {
		s->cookie = cookie;
		s->cgroup_id = e->cgroup_id;
		s->uid = e->uid;
		s->gid = e->gid;
		s->tgid = e->tgid;
		s->protocol = e->protocol;
		s->family = e->family;
		__builtin_memcpy(s->comm, e->comm, sizeof(s->comm));
		s->exe_ino = e->exe_ino;
		s->exe_dev = e->exe_dev;
		lfp_sk_clear(s, LFP_SKF_OWNER_UNKNOWN);
	}
	return s;
}

/* The owner's fields of an event (who, which cgroup, which executable), from lfp_sk. */
static __always_inline void lfp_event_owner(struct lfp_event *e, const struct lfp_sk *s)
{
	e->tgid = s->tgid;
	e->uid = s->uid;
	e->gid = s->gid;
	e->cgroup_id = s->cgroup_id;
	e->parent_cookie = s->parent_cookie;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	e->exe_ino = s->exe_ino;
	e->exe_dev = s->exe_dev;
	if (!(s->flags & LFP_SKF_OWNER_UNKNOWN))
		e->evflags |= LFP_EVF_OWNER;
}

/* An event about a socket from a context where "current" is not its owner (softirq sockops,
 * packets, iterators): the owner comes from lfp_sk. */
static __always_inline void lfp_event_init_owner(struct lfp_event *e, __u64 cookie, __u16 layer, __u8 kind,
                                                 const struct lfp_sk *s)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->cookie = cookie;
	e->layer = layer;
	e->kind = kind;
	if (s) {
		lfp_event_owner(e, s);
		e->protocol = s->protocol;
		if (s->flags & LFP_SKF_BOUND) {
			__builtin_memcpy(e->local_addr_be, s->local_addr_be, sizeof(e->local_addr_be));
			e->local_port = s->local_port;
			e->evflags |= LFP_EVF_LOCAL_ADDR | LFP_EVF_LOCAL_PORT;
		}
	}
}

static __always_inline void lfp_remember_local(struct lfp_sk *s, const struct lfp_event *e)
{
	if (!s || !(e->evflags & LFP_EVF_LOCAL_PORT))
		return;
	__builtin_memcpy(s->local_addr_be, e->local_addr_be, sizeof(s->local_addr_be));
	s->local_port = e->local_port;
	lfp_sk_set(s, LFP_SKF_BOUND);
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4 traffic of a dual-stack socket:
 * classify it at the V4 layer with the IPv4 address. */
static __always_inline int lfp_is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int lfp_is_unspecified(const __u32 *a)
{
	return !(a[0] | a[1] | a[2] | a[3]);
}

static __always_inline void lfp_unmap(struct lfp_event *e)
{
	if (e->family != AF_INET6)
		return;
	int r = (e->evflags & LFP_EVF_REMOTE) && lfp_is_v4mapped(e->remote_addr_be);
	int l = (e->evflags & LFP_EVF_LOCAL_ADDR) && lfp_is_v4mapped(e->local_addr_be);
	if (!r && !l)
		return;
	/* only when every known address is IPv4 (or the unspecified local address) */
	if ((e->evflags & LFP_EVF_REMOTE) && !r)
		return;
	if ((e->evflags & LFP_EVF_LOCAL_ADDR) && !l && !lfp_is_unspecified(e->local_addr_be))
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

/* Classify `e` at its layer, record the verdict in it and emit it. */
static __always_inline struct lfp_verdict lfp_decide(struct lfp_event *e)
{
	struct lfp_verdict v = lfp_classify(e->layer, e);
	lfp_apply(e, &v);
	lfp_emit(e);
	return v;
}

/* Emit a notification (FLOW_ESTABLISHED, ENDPOINT_CLOSURE, RESOURCE_RELEASE) derived from `e`. */
static __always_inline void lfp_notify(struct lfp_event *e, __u16 v4_layer)
{
	e->layer = lfp_layer_for(v4_layer, e->family);
	e->kind = LFP_EV_NOTIFY;
	e->action = LFP_ACTION_NONE;
	e->filter_id = 0;
	e->error = 0;
	lfp_emit(e);
}

/* ALE flows (lfp_flows): the verdict of the first packet of a (socket, peer) pair. */
static __always_inline void lfp_flow_key(struct lfp_flow_key *k, __u64 cookie, const struct lfp_event *e)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->cookie = cookie;
	k->family = e->family;
	k->remote_port = e->remote_port;
	__builtin_memcpy(k->remote_be, e->remote_addr_be, sizeof(k->remote_be));
}

/* The cached verdict of a flow, or NULL when it must be classified (none yet, or the policy
 * changed since: a policy change reauthorizes, R7.8). */
static __always_inline struct lfp_flow *lfp_flow_find(const struct lfp_flow_key *k, struct lfp_event *e)
{
	struct lfp_flow *f = bpf_map_lookup_elem(&lfp_flows, k);
	if (f && f->generation == (__u32)lfp_policy_generation())
		return f;
	if (f) /* an existing flow met a new policy: this classification is its reauthorization */
		e->cond_flags |= LFP_FLAG_IS_REAUTHORIZE;
	return 0;
}

static __always_inline void lfp_flow_store(const struct lfp_flow_key *k, const struct lfp_verdict *v)
{
	struct lfp_flow f = { .filter_id = v->filter_id,
		              .generation = (__u32)v->generation,
		              .action = v->action,
		              .block_errno = v->action == LFP_ACTION_BLOCK ? (__u8)v->block_errno : 0 };
	bpf_map_update_elem(&lfp_flows, k, &f, BPF_ANY);
}
