/* classify.h — WFP arbitration over the compiled policy (rule book §1), for static filters.
 *
 * PolicyCompiler stores each layer's filters in evaluation order, so the kernel only walks:
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
 * Unregistered callout filters arrive here already substituted by the compiler (R5.6).
 */
#pragma once
#include "maps.h"

#define AF_INET 2
#define AF_INET6 10

struct lfp_verdict {
	__u64 filter_id;
	__u64 generation;
	__s32 block_errno;
	__u8 action;
};

struct lfp_walk {
	const struct lfp_event *in;
	__u32 first;         /* index of the layer's first rule in lfp_rules */
	__u32 skip_sublayer; /* sublayer already decided, or ~0 */
	struct lfp_verdict v;
};

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

static __always_inline int lfp_cond_matches(const struct lfp_cond *c, const struct lfp_event *in)
{
	__u64 hi, lo;

	if (!lfp_field_value(in, c->field, &hi, &lo))
		return !!(c->flags & LFP_COND_MATCH_EMPTY);
	if (c->flags & LFP_COND_MATCH_EMPTY)
		return 0;
	hi &= c->mask_hi;
	lo &= c->mask_lo;
	int ge = hi > c->lo_hi || (hi == c->lo_hi && lo >= c->lo_lo);
	int le = hi < c->hi_hi || (hi == c->hi_hi && lo <= c->hi_lo);
	return (ge && le) ^ !!(c->flags & LFP_COND_NEGATE);
}

struct lfp_match {
	const struct lfp_rule *rule;
	const struct lfp_event *in;
	__u32 n;
	int group; /* some condition of the current OR group matched */
	int ok;    /* every group so far matched */
};

/* One condition. A bpf_loop callback, not an unrolled loop: the verifier explores it once,
 * instead of every combination of sixteen conditions, which keeps program load fast. */
static long lfp_cond_step(__u32 i, void *data)
{
	struct lfp_match *m = data;
	if (i >= m->n || i >= LFP_MAX_CONDS)
		return 1;
	const struct lfp_cond *c = &m->rule->cond[i];
	m->group |= lfp_cond_matches(c, m->in);
	if (c->flags & LFP_COND_GROUP_END) {
		if (!m->group) {
			m->ok = 0;
			return 1;
		}
		m->group = 0;
	}
	return 0;
}

static __always_inline int lfp_rule_matches(const struct lfp_rule *r, const struct lfp_event *in)
{
	struct lfp_match m = { .rule = r, .in = in, .n = r->ncond, .ok = 1 };
	bpf_loop(LFP_MAX_CONDS, lfp_cond_step, &m, 0);
	return m.ok;
}

static long lfp_walk_step(__u32 i, void *data)
{
	struct lfp_walk *w = data;
	__u32 idx = w->first + i;
	const struct lfp_rule *r = bpf_map_lookup_elem(&lfp_rules, &idx);

	if (!r)
		return 1;
	if (r->sublayer == w->skip_sublayer)
		return 0; /* rule 3: this sublayer already decided */
	if (!lfp_rule_matches(r, w->in))
		return 0;
	w->v.action = r->action; /* rule 4 */
	w->v.filter_id = r->filter_id;
	w->v.block_errno = r->block_errno;
	w->skip_sublayer = r->sublayer;
	return (r->flags & LFP_RULE_HARD) ? 1 : 0; /* rule 5 */
}

/* The walk, as a global BPF function: the verifier checks it once per program, on its own,
 * instead of once per call site with every caller's state (program load stays fast). __weak:
 * every hook object carries a copy and `bpftool gen object` keeps one. */
__weak __noinline int lfp_classify_walk(__u32 layer, const struct lfp_event *in, struct lfp_verdict *out)
{
	struct lfp_walk w = { .in = in, .skip_sublayer = ~0u };
	__u32 zero = 0;

	if (!in || !out)
		return 0;
	w.v.action = LFP_ACTION_PERMIT;
	const struct lfp_config *cfg = bpf_map_lookup_elem(&lfp_config, &zero);
	if (cfg) {
		/* One 8-byte read gives both the generation and the slot (its parity), so a concurrent
		 * commit can never pair one policy's slot with another's generation; the walk then
		 * stays on that slot. */
		__u64 gen = cfg->generation;
		__u32 slot = gen & 1;
		w.v.generation = gen;
		__u32 li = slot * LFP_LAYER_COUNT + (layer % LFP_LAYER_COUNT);
		const struct lfp_layer_range *range = bpf_map_lookup_elem(&lfp_layers, &li);
		if (range && range->count) {
			w.first = slot * LFP_MAX_RULES + range->start;
			__u32 count = range->count;
			if (count > LFP_MAX_RULES)
				count = LFP_MAX_RULES;
			bpf_loop(count, lfp_walk_step, &w, 0);
		}
	}
	if (w.v.action == LFP_ACTION_BLOCK && w.v.block_errno <= 0)
		w.v.block_errno = 1; /* EPERM */
	out->action = w.v.action;
	out->filter_id = w.v.filter_id;
	out->generation = w.v.generation;
	out->block_errno = w.v.block_errno;
	return 0;
}

/* Classify `in` at `layer`; the default (rule 6) is a permit by no filter. */
static __always_inline struct lfp_verdict lfp_classify(__u32 layer, const struct lfp_event *in)
{
	struct lfp_verdict v = { .action = LFP_ACTION_PERMIT };

	lfp_stat_inc(LFP_STAT_CLASSIFY);
	lfp_classify_walk(layer, in, &v);
	lfp_stat_inc(v.action == LFP_ACTION_BLOCK ? LFP_STAT_BLOCK : LFP_STAT_PERMIT);
	return v;
}
