/*
 * lfp_abi.h — the one contract between bpf/ (kernel) and Swift (userspace).
 *
 * Rules: fixed-width types only, explicit padding, explicit enum values, sizes checked by
 * _Static_assert here and by a MemoryLayout test in Swift (Tests/PolicyCompilerTests/ABITests).
 * Anything in network byte order says so (`_be`). Swift mirrors: KernelABI is imported directly
 * (the structs below are used as-is from Swift); PolicyCompiler fills lfp_rule, FilterEngine
 * decodes lfp_event.
 */
#ifndef LFP_ABI_H
#define LFP_ABI_H

#ifdef __BPF__
/* vmlinux.h already provides __u8.. __u64 / __s32 */
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t __s32;
#endif

#define LFP_ABI_VERSION 5

/* ---- capacities (Swift reads these; changing one changes the pinned maps' shape) ---- */
#define LFP_MAX_CONDS 16               /* conditions per compiled rule                        */
#define LFP_DEFAULT_MAX_FILTERS 100000 /* filters a policy may hold unless configured higher  */
#define LFP_MAX_GROUPS 32              /* decision diagrams per layer (see "classifier" below) */
#define LFP_MAX_DEPTH 24               /* decisions on one path through a diagram             */
#define LFP_SEARCH_STEPS 24            /* binary-search steps per decision: 2^24 edges a node  */
#define LFP_MAX_WORKLOADS 4096         /* cgroups named in lfp_workloads                      */
#define LFP_MAX_SUBSCRIBERS 16         /* concurrent event tails, each with its own ring      */
#define LFP_RING_BYTES (4u << 20)      /* default ring size per subscriber (4 MiB)            */
#define LFP_WAKEUP_BYTES (64u << 10)   /* batched wake-up: force a wake-up past this much   */

/* ---- WFP layers (runtime ids; FilterModel.Layer maps onto these) ---- */
enum lfp_layer {
	LFP_LAYER_RESOURCE_ASSIGNMENT_V4 = 0,
	LFP_LAYER_RESOURCE_ASSIGNMENT_V6 = 1,
	LFP_LAYER_AUTH_LISTEN_V4 = 2,
	LFP_LAYER_AUTH_LISTEN_V6 = 3,
	LFP_LAYER_AUTH_RECV_ACCEPT_V4 = 4,
	LFP_LAYER_AUTH_RECV_ACCEPT_V6 = 5,
	LFP_LAYER_AUTH_CONNECT_V4 = 6,
	LFP_LAYER_AUTH_CONNECT_V6 = 7,
	LFP_LAYER_FLOW_ESTABLISHED_V4 = 8,
	LFP_LAYER_FLOW_ESTABLISHED_V6 = 9,
	LFP_LAYER_RESOURCE_RELEASE_V4 = 10,
	LFP_LAYER_RESOURCE_RELEASE_V6 = 11,
	LFP_LAYER_ENDPOINT_CLOSURE_V4 = 12,
	LFP_LAYER_ENDPOINT_CLOSURE_V6 = 13,
	LFP_LAYER_COUNT = 14,
};

/* ---- condition fields the kernel can supply (incoming values) ---- */
enum lfp_field {
	LFP_FIELD_IP_LOCAL_ADDRESS = 0, /* 128-bit; v4 in the low 32 bits, host order       */
	LFP_FIELD_IP_REMOTE_ADDRESS = 1,
	LFP_FIELD_IP_LOCAL_PORT = 2,
	LFP_FIELD_IP_REMOTE_PORT = 3,
	LFP_FIELD_IP_PROTOCOL = 4,
	LFP_FIELD_UID = 5,
	LFP_FIELD_GID = 6,
	LFP_FIELD_CGROUP_ID = 7,
	LFP_FIELD_FLAGS = 8,    /* FWP_CONDITION_FLAG_* bits                         */
	LFP_FIELD_WORKLOAD = 9, /* lfp_workload_id(name) of the socket's cgroup        */
	LFP_FIELD_APP_ID = 10,  /* executable identity: (kernel dev_t, inode)          */
	/* NL_ADDRESS_TYPE (enum lfp_addr_type) derived from the local / remote address of the
	 * event, by lfp_addr_type() in bpf/lib/classify.h and FilterModel's AddressType.of: the
	 * event carries no field of its own for them */
	LFP_FIELD_IP_LOCAL_ADDRESS_TYPE = 11,
	LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE = 12, /* of the remote address (AUTH_CONNECT)   */
	LFP_FIELD_IP_LOCAL_INTERFACE = 13,          /* lfp_event.ifindex; 0 is FWP_EMPTY        */
	LFP_FIELD_COUNT = 14,
};

/* NL_ADDRESS_TYPE values. Only the address is looked at (no routing table, no interface
 * configuration): anycast is never produced, and a subnet-directed broadcast is unicast. */
enum lfp_addr_type {
	LFP_ADDR_UNSPECIFIED = 0, /* 0.0.0.0, ::                                               */
	LFP_ADDR_UNICAST = 1,     /* everything else                                           */
	LFP_ADDR_ANYCAST = 2,     /* never derived                                             */
	LFP_ADDR_MULTICAST = 3,   /* 224.0.0.0/4, ff00::/8                                     */
	LFP_ADDR_BROADCAST = 4,   /* 255.255.255.255                                           */
};

/* ---- FWP_CONDITION_FLAG_* bits the kernel sets ---- */
#define LFP_FLAG_IS_LOOPBACK 0x1u
#define LFP_FLAG_IS_REAUTHORIZE 0x4u
#define LFP_FLAG_IS_WILDCARD_BIND 0x8u
#define LFP_FLAG_IS_RAW_ENDPOINT 0x10u
#define LFP_FLAG_IS_IMPLICIT_BIND 0x200u

/* ---- compiled filters (the compiler's intermediate form, never read by the kernel) ---- */

/* One condition: matches iff ((value & mask) in [lo, hi]) XOR NEGATE, on 128-bit unsigned
 * numbers split into (hi, lo) 64-bit halves. Every FWP_MATCH type the kernel supports reduces
 * to this one test (EQUAL: lo=hi=v; RANGE; GREATER: lo=v+1; address/mask: mask=m, lo=hi=a&m;
 * FLAGS_ALL_SET: mask=c, lo=hi=c; FLAGS_NONE_SET: mask=c, lo=hi=0; NOT_EQUAL / FLAGS_ANY_SET:
 * NEGATE). A field the kernel does not know for this operation (FWP_EMPTY) matches only a
 * condition carrying LFP_COND_MATCH_EMPTY. */
#define LFP_COND_NEGATE 0x1u
#define LFP_COND_GROUP_END 0x2u   /* last condition of an OR group; groups are ANDed     */
#define LFP_COND_MATCH_EMPTY 0x4u /* FWP_MATCH_EQUAL against FWP_EMPTY                   */

struct lfp_cond {
	__u8 field; /* enum lfp_field */
	__u8 flags; /* LFP_COND_* */
	__u8 pad[6];
	__u64 mask_hi, mask_lo;
	__u64 lo_hi, lo_lo;
	__u64 hi_hi, hi_lo;
};

#define LFP_RULE_HARD 0x1u /* the decision clears FWPS_RIGHT_ACTION_WRITE (R1.13, R1.14) */

/* One filter, in evaluation order inside its layer's range. */
struct lfp_rule {
	__u64 filter_id; /* FWPM filterId reported on events                              */
	__u16 sublayer;  /* sublayer visiting order, 0 = highest weight                    */
	__u8 action;     /* enum lfp_action                                                */
	__u8 flags;      /* LFP_RULE_*                                                     */
	__u16 ncond;     /* <= LFP_MAX_CONDS                                               */
	__u16 pad;
	__s32 block_errno; /* positive errno a block returns to the application (EPERM)      */
	__u32 pad2;
	struct lfp_cond cond[LFP_MAX_CONDS];
};

/* ---- the classifier: what the kernel reads (PolicyCompiler/Classifier builds it) ----
 *
 * A full commit builds one array of 32-byte cells, a fresh BPF array map published as
 * lfp_policy[0] through the ARRAY_OF_MAPS (so a classification that started on the
 * old policy keeps it until it ends: RCU retires the old map, nothing is rewritten in place).
 *
 *   cell 0                      struct lfp_head: generation of this policy
 *   cell 1 + layer              struct lfp_layer_range: that layer's groups [start, start+count)
 *   groups                      struct lfp_group: one decision diagram each
 *   nodes, edges, leaves        the diagrams
 *
 * A diagram is a multi-terminal interval decision diagram: a node tests one variable (a field
 * ANDed with a mask) by binary search over its sorted edges; an edge covers the values from its
 * `lo` up to the next edge's; FWP_EMPTY takes `empty_ref`. A leaf holds the arbitration the
 * compiler precomputed for every input that reaches it. The kernel's work is bounded by
 * LFP_MAX_GROUPS x LFP_MAX_DEPTH x LFP_SEARCH_STEPS lookups, whatever the filter count.
 *
 * An incremental commit (a few filters added or deleted) leaves the base's cells alone and
 * appends its delta to the same map: a base map LivePolicy commits has LFP_DELTA_CELLS spare
 * cells after its own, and every base map is mmapable, so LivePolicy writes them from
 * userspace (docs/incremental-commits.md).
 * Publishing a map through lfp_policy costs an RCU grace period (the kernel waits for every
 * running program before the update returns: 8-16 ms here), which a one-filter change cannot
 * afford. The spare cells are written append-only instead, so no cell a reader may use is
 * rewritten, and one aligned 4-byte store of the head's `delta` publishes them:
 *   at `delta`           a struct lfp_head: the commit's generation, the base's
 *   delta + 1 + layer    a layer range: start 0 when the base's groups stand; else the layer's
 *                        whole group list (base diagrams and the delta's alike)
 *   after those          the delta's diagrams and group lists
 * A deleted filter's base leaves are marked with the delta that deletes it (lfp_leaf.deleted, one
 * 4-byte store each, before the delta is published): a walk reading that delta or a later one
 * treats such a leaf as no match, and the delta's own diagrams hold what follows it. A full
 * commit publishes a new map, so its deltas and marks start over. */
#define LFP_REF_LEAF 0x80000000u    /* a ref with this bit names a leaf cell, else a node cell */
#define LFP_GROUP_ALONE 0xffffffffu /* lfp_group.sublayer: the group covers whole sublayers */
#define LFP_DELTA_CELLS 131072      /* spare cells of a LivePolicy base map: 4 MiB             */

struct lfp_head {
	__u64 generation; /* the commit that built this map (a delta's: the change's)      */
	__u32 abi_version;
	__u32 ncells;          /* cells of the full build (the spare ones follow)               */
	__u64 base_generation; /* a delta's head: the base generation it applies to            */
	__u32 delta;           /* the base's head: the delta in force (its head cell), 0: none  */
	__u32 pad;
};

/* Groups of one layer: cells [start, start + count). */
struct lfp_layer_range {
	__u32 start;
	__u32 count;
	__u64 pad[3];
};

/* One diagram. Consecutive groups with the same `sublayer` split one sublayer's filters: the
 * sublayer's decision is the matching leaf with the lowest `order` among them (first match,
 * R1.4). A group with LFP_GROUP_ALONE covers whole sublayers and its leaf is their decision. */
struct lfp_group {
	__u32 root;     /* ref */
	__u32 sublayer; /* sublayer visiting order, or LFP_GROUP_ALONE                        */
	__u64 pad[3];
};

struct lfp_node {
	__u8 field; /* enum lfp_field */
	__u8 pad[3];
	__u32 nedges;    /* >= 1; the first edge's lo is 0                                    */
	__u32 edges;     /* cell index of the first edge                                      */
	__u32 empty_ref; /* where FWP_EMPTY goes                                              */
	__u64 mask_hi, mask_lo;
};

struct lfp_edge {
	__u64 lo_hi, lo_lo; /* the first value of this edge's interval                       */
	__u32 ref;
	__u32 pad[3];
};

enum lfp_action {
	LFP_ACTION_NONE = 0,   /* nothing decided (notification layers, layer default)    */
	LFP_ACTION_PERMIT = 1, /* FWP_ACTION_PERMIT */
	LFP_ACTION_BLOCK = 2,  /* FWP_ACTION_BLOCK  */
	/* A registered terminating or unknown callout's filter matched: only userspace (the daemon
	 * hosting the callout) can finish the arbitration. The kernel holds the operation (see
	 * "pended operations" below) and the event that reports it carries this action. A leaf with
	 * it always stops the walk: what follows depends on the callout's answer. */
	LFP_ACTION_CALLOUT = 3,
};

struct lfp_leaf {
	__u64 filter_id;   /* deciding filter, 0 with LFP_ACTION_NONE                          */
	__u32 order;       /* the deciding filter's position in the layer's evaluation order    */
	__s32 block_errno; /* positive errno a block returns                                   */
	__u8 action;       /* enum lfp_action                                                  */
	__u8 stop;         /* a hard decision: the walk ends here (R1.16)                      */
	__u8 pad[2];
	__u32 deleted; /* a base leaf: the delta (head cell) deleting its filter; 0: none   */
	__u8 pad2[8];
};

union lfp_cell {
	struct lfp_head head;
	struct lfp_layer_range layer;
	struct lfp_group group;
	struct lfp_node node;
	struct lfp_edge edge;
	struct lfp_leaf leaf;
};

struct lfp_config {
	__u32 abi_version; /* LFP_ABI_VERSION of the writer                                   */
	__u32 pad;
	__u64 generation; /* the generation of the map in lfp_policy, written after publishing */
};

/* ---- events (ALE notifications), one record per classify or lifetime step ---- */
enum lfp_event_kind {
	LFP_EV_CLASSIFY = 1, /* an authorization/assignment layer was classified            */
	LFP_EV_NOTIFY = 2,   /* a notification layer (flow established, closure, release)  */
};

#define LFP_EVF_LOCAL_ADDR 0x1u /* local address is known (else FWP_EMPTY)             */
#define LFP_EVF_LOCAL_PORT 0x2u
#define LFP_EVF_REMOTE 0x4u /* remote address/port are known                        */
#define LFP_EVF_OWNER 0x8u  /* uid/gid/executable are the owner's (else FWP_EMPTY)  */

struct lfp_event {
	__u64 seq;           /* per-ring sequence number: gaps are drops                       */
	__u64 ts_ns;         /* bpf_ktime_get_ns(), CLOCK_MONOTONIC                           */
	__u64 cookie;        /* endpoint handle (socket cookie)                               */
	__u64 parent_cookie; /* parent endpoint handle (listener), 0 if none                  */
	__u64 filter_id;     /* deciding filter, 0 when no filter decided                     */
	__u64 cgroup_id;     /* cgroup v2 id                                                  */
	__u64 generation;    /* policy generation that decided                                */
	__u32 pid;           /* thread id                                                     */
	__u32 tgid;          /* process id                                                    */
	__u32 uid;
	__u32 gid;
	__u16 layer;            /* enum lfp_layer                                                */
	__u8 action;            /* enum lfp_action                                               */
	__u8 kind;              /* enum lfp_event_kind                                           */
	__u16 family;           /* AF_INET / AF_INET6 of the classified addresses                */
	__u8 protocol;          /* IPPROTO_*                                                     */
	__u8 evflags;           /* LFP_EVF_*                                                     */
	__u16 local_port;       /* host order                                                    */
	__u16 remote_port;      /* host order                                                    */
	__s32 error;            /* errno returned to the application (blocks), else 0            */
	__u32 cond_flags;       /* FWP_CONDITION_FLAG_* bits of the incoming values               */
	__u32 local_addr_be[4]; /* network order; IPv4 in [0]                               */
	__u32 remote_addr_be[4];
	char comm[16];
	__u32 workload_id; /* lfp_workload_id of the cgroup, 0 when not an lfp workload       */
	__u32 exe_dev;     /* the process's executable: kernel dev_t (MAJOR << 20 | MINOR)   */
	__u64 exe_ino;     /* ... and inode number; 0 when unknown (FWP_EMPTY ALE_APP_ID)    */
	__u32 ifindex;     /* IP_LOCAL_INTERFACE: the socket's bound device (SO_BINDTODEVICE) at
	                    * the socket hooks, the arrival device at ingress; 0 = unknown     */
	__u32 pad_end;
};

/* ---- ALE flows (lfp_flows, bpf/lib/maps.h): one per (socket, remote end) ---- */
struct lfp_flow_key {
	__u64 cookie;       /* socket cookie (endpoint handle)                              */
	__u32 remote_be[4]; /* network order; IPv4 (and IPv4-mapped) in [0]                 */
	__u16 remote_port;  /* host order                                                   */
	__u16 family;       /* AF_INET for IPv4 and IPv4-mapped peers                       */
	__u32 pad;
};
struct lfp_flow {
	__u64 filter_id;
	__u32 generation; /* policy generation that decided (low 32 bits) */
	__u8 action;      /* enum lfp_action */
	__u8 block_errno; /* what a blocked peer's later datagrams return */
	__u8 pad[2];
};

/* ---- pended operations (bpf/lib/pend.h; docs/callouts.md) ----
 *
 * An operation whose classification ends in LFP_ACTION_CALLOUT is held, not refused: connect()
 * proceeds, and cgroup_skb/egress drops (and, for TCP, keeps a copy of) every packet of the
 * pended flow until the daemon writes the verdict here. On permit the daemon re-injects the kept
 * SYN, so connect() returns about 0.2 ms later; on block it forges the peer's refusal. Keyed by
 * struct lfp_flow_key (socket cookie + remote end): a TCP or connected UDP socket has one flow,
 * an unconnected UDP socket one per peer. */
#define LFP_PEND_CAPTURE 128 /* bytes kept of a held SYN: IPv6 header 40 + TCP header <= 60 */
#define LFP_MAX_PENDS 65536  /* operations held at once                                    */

enum lfp_pend_state {
	LFP_PEND_WAITING = 0, /* the kernel holds the flow's packets                          */
	LFP_PEND_PERMIT = 1,  /* completed: packets pass                                        */
	LFP_PEND_BLOCK = 2,   /* completed: packets are dropped until the socket is released   */
};

/* The daemon must not re-inject this flow's SYN from its own raw socket, which cannot reproduce the
 * socket's mark, bound device or TCP-MD5/AO signature: a permit lets the kernel's next
 * retransmission through instead, and a block is refused with ICMP (docs/callouts.md). */
#define LFP_PEND_F_KERNEL_RETRY 0x1u

struct lfp_pend {
	__u64 filter_id;  /* the callout filter that asked                                    */
	__u64 generation; /* policy that decided                                             */
	__u64 start_ns;   /* bpf_ktime_get_ns() when the hold began                          */
	__u64 packet_ns;  /* when `packet` was captured, 0 when nothing was captured           */
	__u8 state;       /* enum lfp_pend_state: the kernel writes WAITING, the daemon the rest */
	__u8 protocol;
	__u16 layer;                   /* enum lfp_layer */
	__u16 packet_len;              /* bytes of `packet` in use                                         */
	__u16 flags;                   /* LFP_PEND_F_*                                                      */
	__u8 packet[LFP_PEND_CAPTURE]; /* the latest held SYN, from its IP header              */
};

/* A classification's outcome (bpf/lib/classify.h). */
struct lfp_verdict {
	__u64 filter_id;
	__u64 generation;
	__s32 block_errno;
	__u8 action; /* enum lfp_action */
	__u8 pad[3];
};

/* bpf/tests/lfp_classify_test.bpf.c: one input of the test-runnable classifier and its verdict
 * (lfp_test_io[i]); the differential tests write `layer` and `in`, the program writes `out`. */
#define LFP_TEST_BATCH 4096
struct lfp_test_case {
	__u32 layer; /* enum lfp_layer */
	__u32 pad;
	struct lfp_event in;
	struct lfp_verdict out;
};

/* A workload's id in conditions: FNV-1a (32 bit) of its name, so a policy can name a workload
 * before it is attached; lfp_workloads maps the cgroup id to it at attach time. */
#define LFP_FNV_OFFSET 2166136261u
#define LFP_FNV_PRIME 16777619u

/* ---- statistics: lfp_stats per-CPU array index ---- */
enum lfp_stat {
	LFP_STAT_CLASSIFY = 0, /* classifications run                                        */
	LFP_STAT_PERMIT = 1,
	LFP_STAT_BLOCK = 2,
	LFP_STAT_EVENTS = 3,        /* event records written to some subscriber ring               */
	LFP_STAT_NO_SUBSCRIBER = 4, /* events with no subscriber at all                      */
	LFP_STAT_PEND = 5,          /* operations held for a callout                          */
	LFP_STAT_PEND_FULL = 6,     /* ... refused because LFP_MAX_PENDS were already held    */
	LFP_STAT_COUNT = 8,
};

#define LFP_ABI_CHECK(cond, msg) _Static_assert(cond, msg)
LFP_ABI_CHECK(sizeof(struct lfp_cond) == 56, "lfp_cond layout");
LFP_ABI_CHECK(sizeof(struct lfp_rule) == 24 + 56 * LFP_MAX_CONDS, "lfp_rule layout");
LFP_ABI_CHECK(sizeof(union lfp_cell) == 32, "lfp_cell layout");
LFP_ABI_CHECK(sizeof(struct lfp_head) == 32 && sizeof(struct lfp_layer_range) == 32, "cell layout");
LFP_ABI_CHECK(sizeof(struct lfp_group) == 32 && sizeof(struct lfp_node) == 32, "cell layout");
LFP_ABI_CHECK(sizeof(struct lfp_edge) == 32 && sizeof(struct lfp_leaf) == 32, "cell layout");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_leaf, deleted) == 20,
              "a leaf is marked deleted by a 4-byte store at byte 20");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_head, delta) == 24,
              "the delta is published by a 4-byte store at byte 24");
LFP_ABI_CHECK(sizeof(struct lfp_config) == 16, "lfp_config layout");
LFP_ABI_CHECK(sizeof(struct lfp_event) == 168, "lfp_event layout");
LFP_ABI_CHECK(sizeof(struct lfp_verdict) == 24, "lfp_verdict layout");
LFP_ABI_CHECK(sizeof(struct lfp_pend) == 40 + LFP_PEND_CAPTURE, "lfp_pend layout");
LFP_ABI_CHECK(sizeof(struct lfp_flow_key) == 32 && sizeof(struct lfp_flow) == 16, "lfp_flow layout");
LFP_ABI_CHECK(sizeof(struct lfp_test_case) == 200, "lfp_test_case layout");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_event, layer) == 72, "lfp_event.layer offset");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_event, local_addr_be) == 92, "lfp_event addr offset");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_event, ifindex) == 160, "lfp_event.ifindex offset");

#endif /* LFP_ABI_H */
