/* maps.h — every map lfp's programs share. All are pinned by name under <bpffs>/lfp/maps so
 * each workload's program instances (one set per attached cgroup) see the same policy, the
 * same subscribers and the same endpoint state. __weak lets the per-hook objects, linked into
 * one lfp.bpf.o by `bpftool gen object`, share one definition. */
#pragma once
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lfp_abi.h"

#define LFP_MAP SEC(".maps") __weak

/* 0 -> struct lfp_config: the generation in force, written by the commit right after it
 * publishes the policy map (the UDP flow cache compares its entries against it). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lfp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_config LFP_MAP;

/* 0 -> the committed classifier: an array of union lfp_cell (lfp_abi.h), built whole by each
 * full commit as a fresh map and published here with one update; incremental commits append to
 * its spare cells. A classification looks the inner
 * map up once and keeps it to the end; the kernel frees a replaced map after an RCU grace
 * period, so no commit ever waits for or races with a classification. BPF_F_INNER_MAP lets
 * every commit size its map to the policy. */
struct lfp_policy_cells {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE); /* mmapable: deltas are written in place */
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(value_size, sizeof(union lfp_cell)); /* a size, not a type: objects that never use the
	                                             * union carry only its forward declaration */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lfp_policy_cells);
} lfp_policy LFP_MAP;

/* subscriber slot -> that subscriber's ring buffer. Written by each event tail (`lfp events`,
 * tests) when it claims a slot; the kernel copies every event into every present ring, so one
 * tail never steals another's events. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, LFP_MAX_SUBSCRIBERS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(
	    values, struct {
		    __uint(type, BPF_MAP_TYPE_RINGBUF);
		    __uint(max_entries, LFP_RING_BYTES);
	    });
} lfp_subs LFP_MAP;

/* 0 -> bitmask of the subscriber slots that hold a ring. Written by the subscribers (under an
 * flock, see EventSubscription); lets an event with no tail skip the copy loop entirely. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_sub_mask LFP_MAP;

/* subscriber slot -> next sequence number of that ring (submitted = received + dropped). Kernel
 * increments; the subscriber resets it when it claims the slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LFP_MAX_SUBSCRIBERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_sub_seq LFP_MAP;

/* subscriber slot -> per-CPU count of events that did not fit in its ring. Kernel writes;
 * subscriber resets on claim; `lfp status` sums. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LFP_MAX_SUBSCRIBERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_sub_drops LFP_MAP;

/* enum lfp_stat -> per-CPU counter. Kernel writes, `lfp status` reads. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LFP_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_stats LFP_MAP;

/* cgroup id -> workload id (FNV-1a of the name). Written by `lfp attach`/`lfp run`, removed
 * at detach. Lets LFP_CONDITION_WORKLOAD name a workload whatever cgroup it runs in. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LFP_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_workloads LFP_MAP;

/* Per-endpoint state, keyed by the socket itself (the endpoint handle is its cookie). The local
 * tuple is unreadable in sock_create/sock_release, and sockops/skb hooks often run in softirq
 * context where "current" is some other task, so the owner and tuple are remembered here.
 * BPF_F_CLONE: an accepted socket starts with a copy of its listener's entry, which is how the
 * child learns its parent endpoint handle. */
struct lfp_sk {
	__u64 cookie;        /* owner's cookie; differs in a fresh clone (accepted child)        */
	__u64 parent_cookie; /* listener of an accepted connection                            */
	__u64 cgroup_id;
	__u64 ra_filter_id; /* implicit-bind RESOURCE_ASSIGNMENT decision, reported later     */
	__u32 local_addr_be[4];
	__u32 uid;
	__u32 gid;
	__u32 tgid;
	__u16 local_port;
	__u16 family;
	__u8 protocol;
	__u8 ra_action;
	__u16 pad0;
	char comm[16];
	__u64 exe_ino; /* owner's executable (ALE_APP_ID) */
	__u32 exe_dev;
	__u32 flags; /* LFP_SKF_*; changed with atomics: process context and softirq race */
};
#define LFP_SKF_BOUND 0x1           /* local tuple recorded                                  */
#define LFP_SKF_AUTHORIZED 0x2      /* permitted at AUTH_CONNECT/RECV_ACCEPT: closure is due  */
#define LFP_SKF_CLOSED 0x4          /* ENDPOINT_CLOSURE reported                             */
#define LFP_SKF_LISTENER 0x8        /* a TCP listener: one closure per listener              */
#define LFP_SKF_STATECB 0x10        /* sockops STATE_CB will report the TCP close            */
#define LFP_SKF_RELEASED 0x20       /* fd closed; RESOURCE_RELEASE waits for the closure     */
#define LFP_SKF_LISTEN_BLOCKED 0x40 /* AUTH_LISTEN blocked: every SYN is dropped            */
#define LFP_SKF_RA_PENDING 0x80     /* implicit bind classified, event due when the port is known */
#define LFP_SKF_DISCOVERED 0x100    /* found by the attach-time sweep, not created under lfp */
#define LFP_SKF_ASSIGNED 0x200      /* a bind (explicit or implicit) went through RESOURCE_ASSIGNMENT */
#define LFP_SKF_RR_DONE 0x400       /* RESOURCE_RELEASE reported */
#define LFP_SKF_OWNER_UNKNOWN 0x800 /* no process-context hook saw the owner: uid/gid/app are EMPTY */
#define LFP_SKF_PENDED 0x1000       /* a flow of this socket is (or was) held for a callout (pend.h) */

/* socket -> struct lfp_sk. Created at sock_create (or the first hook that sees the socket),
 * written by bind/connect/sockops, read at release. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct lfp_sk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_sk LFP_MAP;

/* ALE flow of a non-connection endpoint, or a pending inbound TCP connection:
 * (socket cookie, remote address, remote port) -> verdict. UDP has one flow per remote peer
 * (R7.7): only the first datagram per peer and direction is classified. LRU bounds it. */
/* struct lfp_flow_key and struct lfp_flow are in lfp_abi.h: the daemon completes held flows. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lfp_flow_key);
	__type(value, struct lfp_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_flows LFP_MAP;

/* 0 -> cgroup id the attach-time sweep (iter/tcp, iter/udp) adopts sockets of. Written by
 * `lfp attach` just before it runs the iterators. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lfp_sweep LFP_MAP;

static __always_inline void lfp_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lfp_stats, &idx);
	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}
