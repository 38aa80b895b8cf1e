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

#define LFP_ABI_VERSION 1

/* ---- capacities (Swift reads these; changing one changes the pinned maps' shape) ---- */
#define LFP_MAX_CONDS 16             /* conditions per compiled rule                        */
#define LFP_MAX_RULES 1024           /* rules per policy slot (all layers together)         */
#define LFP_SLOTS 2                  /* double buffer: the kernel reads the active slot     */
#define LFP_MAX_WORKLOADS 4096       /* cgroups named in lfp_workloads                      */
#define LFP_MAX_SUBSCRIBERS 16       /* concurrent event tails, each with its own ring      */
#define LFP_RING_BYTES (4u << 20)    /* default ring size per subscriber (4 MiB)            */
#define LFP_WAKEUP_BYTES (64u << 10) /* batched wake-up: force a wake-up past this much   */

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
	LFP_FIELD_COUNT = 11,
};

/* ---- FWP_CONDITION_FLAG_* bits the kernel sets ---- */
#define LFP_FLAG_IS_LOOPBACK 0x1u
#define LFP_FLAG_IS_REAUTHORIZE 0x4u
#define LFP_FLAG_IS_WILDCARD_BIND 0x8u
#define LFP_FLAG_IS_RAW_ENDPOINT 0x10u
#define LFP_FLAG_IS_IMPLICIT_BIND 0x200u

/* ---- compiled policy ---- */

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

enum lfp_action {
	LFP_ACTION_NONE = 0,   /* nothing decided (notification layers, layer default)    */
	LFP_ACTION_PERMIT = 1, /* FWP_ACTION_PERMIT */
	LFP_ACTION_BLOCK = 2,  /* FWP_ACTION_BLOCK  */
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

/* Rules of one layer in one slot: lfp_rules[slot * LFP_MAX_RULES + start ...+count). */
struct lfp_layer_range {
	__u32 start;
	__u32 count;
};

struct lfp_config {
	__u32 abi_version; /* LFP_ABI_VERSION of the writer                                   */
	__u32 active_slot; /* generation & 1, for readers: the kernel derives the slot from generation */
	__u64 generation;  /* bumped on every commit; its parity is the active slot of lfp_rules/lfp_layers */
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
	LFP_STAT_COUNT = 8,
};

#define LFP_ABI_CHECK(cond, msg) _Static_assert(cond, msg)
LFP_ABI_CHECK(sizeof(struct lfp_cond) == 56, "lfp_cond layout");
LFP_ABI_CHECK(sizeof(struct lfp_rule) == 24 + 56 * LFP_MAX_CONDS, "lfp_rule layout");
LFP_ABI_CHECK(sizeof(struct lfp_layer_range) == 8, "lfp_layer_range layout");
LFP_ABI_CHECK(sizeof(struct lfp_config) == 16, "lfp_config layout");
LFP_ABI_CHECK(sizeof(struct lfp_event) == 160, "lfp_event layout");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_event, layer) == 72, "lfp_event.layer offset");
LFP_ABI_CHECK(__builtin_offsetof(struct lfp_event, local_addr_be) == 92, "lfp_event addr offset");

#endif /* LFP_ABI_H */
