/* classify.h — WFP arbitration over the compiled policy (rule book §1), for static filters.
 *
 * The arbitration is WFP's, decided by the compiler ahead of time (PolicyCompiler/Classifier):
 *
 *   1. Sublayers are visited by weight, highest first; inside one, filters by effective weight,
 *      highest first; ties by filterId ascending (R1.2, R1.3, R1.7 policy).
 *   2. A filter matches when every condition group matches: conditions on one field form a
 *      group and OR together, groups AND (R3.3, R3.4). A field with no value (FWP_EMPTY)
 *      matches only an EQUAL-EMPTY condition (R3.12).
 *   3. The first matching filter of a sublayer decides for that sublayer; its other filters are
 *      skipped (R1.4).
 *   4. While the write right is held, a sublayer's decision replaces the current one (R1.15).
 *   5. A hard decision — static block, or permit with CLEAR_ACTION_RIGHT — clears the right and
 *      ends the walk: only a callout could veto it (R1.16), and callouts are not in the kernel.
 *   6. If nothing decided, the layer permits with filterId 0 (R1.19).
 *
 * What the kernel does (no per-filter loop): each layer has at most LFP_MAX_GROUPS decision
 * diagrams (lfp_abi.h, "the classifier"). Walking one is at most LFP_MAX_DEPTH binary searches
 * of at most LFP_SEARCH_STEPS probes, and ends on a leaf that already holds rules 1-5 for its
 * filters. Groups of one sublayer give that sublayer's first match (lowest order, rule 3);
 * the groups' decisions then combine by rules 4-5 in sublayer order.
 *
 * Unregistered callout filters arrive here already substituted by the compiler (R5.6). A
 * registered terminating or unknown callout's filter is a leaf with LFP_ACTION_CALLOUT that stops
 * the walk: the hook then holds the operation for the daemon (pend.h).
 */
#pragma once
#include "maps.h"
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

static __always_inline void lfp_addr128(__u16 family, const __u32 *a, __u64 *hi, __u64 *lo)
{
	if (family == AF_INET) {
		*hi = 0;
		*lo = bpf_ntohl(a[0]);
	} else {
		*hi = ((__u64)bpf_ntohl(a[0]) << 32) | bpf_ntohl(a[1]);
		*lo = ((__u64)bpf_ntohl(a[2]) << 32) | bpf_ntohl(a[3]);
	}
}

/* NL_ADDRESS_TYPE of an address from the address alone (enum lfp_addr_type): the kernel has no
 * cheap view of the routing table or of interface subnets here, so anycast is never derived and
 * a subnet-directed broadcast (10.1.255.255) is unicast. FilterModel's AddressType.of is the same
 * rule, so `lfp classify` and the kernel agree. */
static __always_inline __u64 lfp_addr_type(__u16 family, const __u32 *a)
{
	if (family == AF_INET) {
		__u32 v = bpf_ntohl(a[0]);
		if (v == 0)
			return LFP_ADDR_UNSPECIFIED;
		if (v == 0xffffffffu)
			return LFP_ADDR_BROADCAST;
		return (v >> 28) == 0xe ? LFP_ADDR_MULTICAST : LFP_ADDR_UNICAST; /* 224.0.0.0/4 */
	}
	if (!(a[0] | a[1] | a[2] | a[3]))
		return LFP_ADDR_UNSPECIFIED;
	return (bpf_ntohl(a[0]) >> 24) == 0xff ? LFP_ADDR_MULTICAST : LFP_ADDR_UNICAST; /* ff00::/8 */
}

/* The incoming value of one field as a 128-bit number; 0 when the field is FWP_EMPTY. */
static __always_inline int lfp_field_value(const struct lfp_event *in, __u32 field, __u64 *hi, __u64 *lo)
{
	*hi = 0;
	*lo = 0;
	switch (field) {
	case LFP_FIELD_IP_LOCAL_ADDRESS:
		if (!(in->evflags & LFP_EVF_LOCAL_ADDR))
			return 0;
		lfp_addr128(in->family, in->local_addr_be, hi, lo);
		return 1;
	case LFP_FIELD_IP_REMOTE_ADDRESS:
		if (!(in->evflags & LFP_EVF_REMOTE))
			return 0;
		lfp_addr128(in->family, in->remote_addr_be, hi, lo);
		return 1;
	case LFP_FIELD_IP_LOCAL_PORT:
		if (!(in->evflags & LFP_EVF_LOCAL_PORT))
			return 0;
		*lo = in->local_port;
		return 1;
	case LFP_FIELD_IP_REMOTE_PORT:
		if (!(in->evflags & LFP_EVF_REMOTE))
			return 0;
		*lo = in->remote_port;
		return 1;
	case LFP_FIELD_IP_PROTOCOL:
		*lo = in->protocol;
		return 1;
	case LFP_FIELD_UID:
		if (!(in->evflags & LFP_EVF_OWNER))
			return 0;
		*lo = in->uid;
		return 1;
	case LFP_FIELD_GID:
		if (!(in->evflags & LFP_EVF_OWNER))
			return 0;
		*lo = in->gid;
		return 1;
	case LFP_FIELD_CGROUP_ID:
		*lo = in->cgroup_id;
		return 1;
	case LFP_FIELD_FLAGS:
		*lo = in->cond_flags;
		return 1;
	case LFP_FIELD_APP_ID:
		if (!(in->evflags & LFP_EVF_OWNER) || !in->exe_ino)
			return 0;
		*hi = in->exe_dev;
		*lo = in->exe_ino;
		return 1;
	case LFP_FIELD_IP_LOCAL_ADDRESS_TYPE:
		if (!(in->evflags & LFP_EVF_LOCAL_ADDR))
			return 0;
		*lo = lfp_addr_type(in->family, in->local_addr_be);
		return 1;
	case LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE:
		if (!(in->evflags & LFP_EVF_REMOTE))
			return 0;
		*lo = lfp_addr_type(in->family, in->remote_addr_be);
		return 1;
	case LFP_FIELD_IP_LOCAL_INTERFACE:
		if (!in->ifindex)
			return 0; /* no bound device: the route is not chosen yet */
		*lo = in->ifindex;
		return 1;
	case LFP_FIELD_WORKLOAD: {
		__u64 cg = in->cgroup_id;
		__u32 *id = bpf_map_lookup_elem(&lfp_workloads, &cg);
		if (!id)
			return 0; /* not a workload lfp knows: FWP_EMPTY */
		*lo = *id;
		return 1;
	}
	}
	return 0;
}

/* Open-coded iterators (bpf_iter_num, kernel >= 6.4): the verifier checks a loop body a few
 * times instead of once per iteration, which keeps the nested bounded loops below cheap to load. */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

#define LFP_REF_NONE 0xffffffffu /* a walk that found no leaf (a damaged map): no decision */

static __always_inline const union lfp_cell *lfp_cell(void *cells, __u32 index)
{
	return bpf_map_lookup_elem(cells, &index);
}

/* Follow one diagram from `ref` to its leaf: per node, the variable's value (field & mask) picks
 * the last edge whose lo is <= value, by binary search. */
static __always_inline __u32 lfp_diagram_leaf(void *cells, __u32 ref, const struct lfp_event *in)
{
	struct bpf_iter_num depth;

	bpf_iter_num_new(&depth, 0, LFP_MAX_DEPTH);
	while (bpf_iter_num_next(&depth)) {
		if (ref & LFP_REF_LEAF)
			break;
		const union lfp_cell *c = lfp_cell(cells, ref);
		if (!c) {
			ref = LFP_REF_NONE;
			break;
		}
		__u64 hi, lo;
		__u32 base = c->node.edges, count = c->node.nedges;
		if (!lfp_field_value(in, c->node.field, &hi, &lo)) {
			ref = c->node.empty_ref;
			continue;
		}
		hi &= c->node.mask_hi;
		lo &= c->node.mask_lo;
		struct bpf_iter_num step;
		bpf_iter_num_new(&step, 0, LFP_SEARCH_STEPS);
		while (bpf_iter_num_next(&step)) {
			if (count <= 1)
				break;
			__u32 half = count / 2;
			const union lfp_cell *e = lfp_cell(cells, base + half);
			if (!e) {
				count = 0;
				break;
			}
			if (e->edge.lo_hi < hi || (e->edge.lo_hi == hi && e->edge.lo_lo <= lo)) {
				base += half;
				count -= half;
			} else {
				count = half;
			}
		}
		bpf_iter_num_destroy(&step);
		const union lfp_cell *e = lfp_cell(cells, base);
		if (!e || count != 1) {
			ref = LFP_REF_NONE;
			break;
		}
		ref = e->edge.ref;
	}
	bpf_iter_num_destroy(&depth);
	return (ref & LFP_REF_LEAF) && ref != LFP_REF_NONE ? ref & ~LFP_REF_LEAF : LFP_REF_NONE;
}

/* The policy in force: the base map (NULL before the first commit) and the delta its head
 * names (lfp_abi.h, "the classifier"), in the same map: one map pointer for every lookup keeps
 * the verifier's states mergeable (with a second map for the delta, the walk took a million
 * instructions to verify). A deleted filter's leaves carry the delta that deleted them. */
struct lfp_policy_view {
	void *base;
	__u64 generation; /* of the policy in force: the delta's, else the base's            */
	__u32 delta;      /* the delta's head cell; 0: none                                  */
};

static __always_inline int lfp_policy_view(struct lfp_policy_view *v)
{
	__u32 zero = 0;
	v->base = bpf_map_lookup_elem(&lfp_policy, &zero);
	v->generation = 0;
	v->delta = 0;
	if (!v->base)
		return 0;
	const union lfp_cell *h = lfp_cell(v->base, 0);
	if (!h)
		return 0;
	v->generation = h->head.generation;
	__u32 delta = *(volatile const __u32 *)&h->head.delta; /* one load: the writer's one store */
	if (delta) {
		const union lfp_cell *d = lfp_cell(v->base, delta);
		if (d && d->head.base_generation == h->head.generation) {
			v->generation = d->head.generation;
			v->delta = delta;
		}
	}
	return 1;
}

/* The generation of the policy in force (0 before the first commit). */
static __always_inline __u64 lfp_policy_generation(void)
{
	struct lfp_policy_view v;
	if (!lfp_policy_view(&v))
		return 0;
	return v.generation;
}

/* Rules 4 and 5 for one sublayer's (or one ALONE group's) decision, its best leaf `best`
 * (`order` ~0: none); 1 when it ends the walk. */
static __always_inline int lfp_apply_best(struct lfp_verdict *out, void *cells, __u32 best, __u32 order)
{
	if (order == ~0u)
		return 0;
	const union lfp_cell *c = lfp_cell(cells, best);
	if (!c || c->leaf.action == LFP_ACTION_NONE)
		return 0;
	out->action = c->leaf.action;
	out->filter_id = c->leaf.filter_id;
	out->block_errno = c->leaf.block_errno;
	return c->leaf.stop;
}

/* The classification, as a global BPF function: the verifier checks it once per program, on its
 * own, instead of once per call site with every caller's state (program load stays fast).
 * __weak: every hook object carries a copy and `bpftool gen object` keeps one. */
__weak __noinline int lfp_classify_walk(__u32 layer, const struct lfp_event *in, struct lfp_verdict *out)
{
	if (!in || !out)
		return 0;
	out->action = LFP_ACTION_PERMIT; /* rule 6 */
	out->filter_id = 0;
	out->block_errno = 0;
	out->generation = 0;
	/* One map lookup pins the whole policy: its generation, its groups and its diagrams. */
	struct lfp_policy_view v;
	if (!lfp_policy_view(&v))
		return 0;
	out->generation = v.generation;
	void *cells = v.base;
	/* The layer's group list: the delta's when it replaces the base's. */
	const union lfp_cell *l = v.delta ? lfp_cell(cells, v.delta + 1 + (layer % LFP_LAYER_COUNT)) : 0;
	if (!l || !l->layer.start)
		l = lfp_cell(cells, 1 + (layer % LFP_LAYER_COUNT));
	if (!l)
		return 0;
	__u32 start = l->layer.start, count = l->layer.count;
	__u32 tag = LFP_GROUP_ALONE;
	/* The sublayer's best leaf so far: its cell and its order (~0: none). */
	__u32 best = 0, best_order = ~0u;
	int stopped = 0;
	struct bpf_iter_num g;

	bpf_iter_num_new(&g, 0, LFP_MAX_GROUPS);
	while (bpf_iter_num_next(&g)) {
		if (count == 0)
			break;
		count--;
		const union lfp_cell *gc = lfp_cell(cells, start++);
		if (!gc)
			break;
		__u32 sub = gc->group.sublayer;
		if (sub != tag || sub == LFP_GROUP_ALONE) {
			if (lfp_apply_best(out, cells, best, best_order)) {
				stopped = 1;
				break;
			}
			tag = sub;
			best_order = ~0u;
		}
		__u32 leaf = lfp_diagram_leaf(cells, gc->group.root, in);
		if (leaf == LFP_REF_NONE)
			continue;
		const union lfp_cell *lc = lfp_cell(cells, leaf);
		if (!lc || lc->leaf.action == LFP_ACTION_NONE)
			continue;
		/* A deleted filter's leaf (0 < deleted <= delta) counts as no match: its order becomes
		 * ~0 by arithmetic, not by a branch, which would double the verifier's states. The
		 * delta's own diagrams give what follows it. */
		__u64 marked = (__u32)(*(volatile const __u32 *)&lc->leaf.deleted - 1); /* one load */
		__u32 gone = -(__u32)((marked - (__u64)v.delta) >> 63);
		__u32 order = lc->leaf.order | gone;
		if (order >= best_order)
			continue;
		best = leaf; /* rule 3: the first match of the sublayer */
		best_order = order;
	}
	bpf_iter_num_destroy(&g);
	if (!stopped)
		lfp_apply_best(out, cells, best, best_order);
	if (out->action == LFP_ACTION_BLOCK && out->block_errno <= 0)
		out->block_errno = 1; /* EPERM */
	return 0;
}

/* Classify `in` at `layer`; the default (rule 6) is a permit by no filter. */
static __always_inline struct lfp_verdict lfp_classify(__u32 layer, const struct lfp_event *in)
{
	struct lfp_verdict v = { .action = LFP_ACTION_PERMIT };

	lfp_stat_inc(LFP_STAT_CLASSIFY);
	lfp_classify_walk(layer, in, &v);
	if (v.action != LFP_ACTION_CALLOUT) /* a held operation is counted when it is held */
		lfp_stat_inc(v.action == LFP_ACTION_BLOCK ? LFP_STAT_BLOCK : LFP_STAT_PERMIT);
	return v;
}
