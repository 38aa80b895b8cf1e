import KernelABI

/// What one node of a diagram tests: a field's value ANDed with a mask. Conditions whose mask is
/// a prefix of the field's width (exact values, ranges, subnets) all become intervals of the
/// field itself (mask = all ones), so a blocklist of subnets of every length is one variable.
/// Any other mask (FWP_MATCH_FLAGS_*, a non-contiguous address mask) is its own variable.
struct Variable: Hashable {
    var field: UInt8
    var mask: U128

    static let full = U128.max
}

/// A compiled filter as the diagram builder sees it: per variable, the values it accepts (an AND
/// of every condition on that variable). `order` is its place in the layer's evaluation order.
struct ClassifierRule {
    var order: UInt32
    var filterId: UInt64
    var sublayer: UInt16
    var action: UInt8
    var hard: Bool
    var blockErrno: Int32
    var constraints: [(variable: Variable, set: IntervalSet)]
}

/// The largest value a field takes at a layer; the kernel's 128-bit values of narrower fields
/// are zero above it (lfp_field_value in bpf/lib/classify.h).
func domainMax(field: UInt8, v6: Bool) -> U128 {
    switch UInt32(field) {
    case LFP_FIELD_IP_LOCAL_ADDRESS.rawValue, LFP_FIELD_IP_REMOTE_ADDRESS.rawValue: return v6 ? .max : .ones(32)
    case LFP_FIELD_IP_LOCAL_PORT.rawValue, LFP_FIELD_IP_REMOTE_PORT.rawValue: return .ones(16)
    case LFP_FIELD_IP_PROTOCOL.rawValue, LFP_FIELD_IP_LOCAL_ADDRESS_TYPE.rawValue, LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue:
        return .ones(8)
    case LFP_FIELD_CGROUP_ID.rawValue: return .ones(64)
    case LFP_FIELD_APP_ID.rawValue: return .max
    default: return .ones(32)  // uid, gid, flags, workload, local interface (lfp_event.ifindex is 32 bits)
    }
}

extension PolicyCompiler {
    /// The most rules one kernel rule may split into when an OR group spans variables (a user
    /// descriptor that allows uids and gids).
    static let maxSplitsPerRule = 64

    /// A field's non-prefix masks with at most this many bits in all (FLAGS tests, odd address
    /// masks) share one variable: the field ANDed with their union, whose few values are listed.
    static let maxMergedMaskBits = 12

    /// Per field, the union of the non-prefix masks its tests use at one layer, when small
    /// enough to share one variable (see maxMergedMaskBits).
    static func mergedMasks(_ rules: ArraySlice<lfp_rule>, v6: Bool) -> [UInt8: U128] {
        var union: [UInt8: U128] = [:]
        for r in rules {
            withUnsafeBytes(of: r.cond) { raw in
                let conds = raw.bindMemory(to: lfp_cond.self)
                for i in 0..<Int(min(r.ncond, UInt16(LFP_MAX_CONDS))) where conds[i].flags & UInt8(LFP_COND_MATCH_EMPTY) == 0 {
                    let d = domainMax(field: conds[i].field, v6: v6)
                    let mask = U128(hi: conds[i].mask_hi, lo: conds[i].mask_lo) & d
                    let low = ~(mask | ~d)
                    if low & low.plusOne != .zero { union[conds[i].field] = (union[conds[i].field] ?? .zero) | mask }
                }
            }
        }
        return union.filter { $0.value.hi.nonzeroBitCount + $0.value.lo.nonzeroBitCount <= maxMergedMaskBits }
    }

    /// The values w of (v & merged) with (w & mask) in [lo, hi], as points.
    static func listed(merged: U128, mask: U128, lo: U128, hi: U128) -> IntervalSet {
        var bits: [U128] = []
        for i in 0..<64 where merged.lo >> UInt64(i) & 1 == 1 { bits.append(U128(hi: 0, lo: 1 << UInt64(i))) }
        for i in 0..<64 where merged.hi >> UInt64(i) & 1 == 1 { bits.append(U128(hi: 1 << UInt64(i), lo: 0)) }
        var points: [IntervalSet.Interval] = []
        for combo in 0..<(1 << bits.count) {
            var w = U128.zero
            for (b, bit) in bits.enumerated() where combo >> b & 1 == 1 { w = w | bit }
            let x = w & mask
            if lo <= x && x <= hi { points.append(.init(lo: w, hi: w)) }
        }
        return IntervalSet(ranges: [], empty: false).union(IntervalSet(ranges: points, empty: false))
    }

    /// One kernel test as (variable, accepted values).
    static func constraint(_ c: lfp_cond, v6: Bool, merged: [UInt8: U128] = [:]) -> (Variable, IntervalSet) {
        let d = domainMax(field: c.field, v6: v6)
        if c.flags & UInt8(LFP_COND_MATCH_EMPTY) != 0 {
            return (Variable(field: c.field, mask: Variable.full), IntervalSet(ranges: [], empty: true))
        }
        let mask = U128(hi: c.mask_hi, lo: c.mask_lo) & d
        let lo = U128(hi: c.lo_hi, lo: c.lo_lo)
        let hi = U128(hi: c.hi_hi, lo: c.hi_lo)
        var variable = Variable(field: c.field, mask: Variable.full)
        var set: IntervalSet
        let low = ~(mask | ~d)  // the bits the mask clears inside the field's width
        if low & low.plusOne == .zero {
            // A prefix mask: (v & mask) in [lo, hi]  <=>  v in [lo rounded up, hi rounded down + low].
            let start: U128? = lo & low == .zero ? lo : (lo | low).successor
            let end = (hi & ~low) | low
            if let start, start <= end, start <= d { set = .span(start, Swift.min(end, d)) } else { set = .none }
        } else if let m = merged[c.field] {
            variable.mask = m
            set = listed(merged: m, mask: mask, lo: lo, hi: hi)
        } else {
            variable.mask = mask
            set = lo <= hi && lo <= d ? .span(lo, Swift.min(hi, d)) : .none
        }
        if c.flags & UInt8(LFP_COND_NEGATE) != 0 { set = set.complement(max: d) }
        return (variable, set)
    }

    /// A kernel rule (CNF of tests) as classifier rules: usually one; several adjacent ones with
    /// the same filter and order when an OR group spans variables (the first that matches
    /// decides, with the same outcome). None when it can never match.
    static func classifierRules(_ r: lfp_rule, order: UInt32, v6: Bool, merged: [UInt8: U128] = [:]) throws -> [ClassifierRule] {
        if let one = singleRule(r, order: order, v6: v6, merged: merged) { return one }
        return try generalRules(r, order: order, v6: v6, merged: merged)
    }

    /// Any rule: the cross product of its OR groups' alternatives.
    static func generalRules(_ r: lfp_rule, order: UInt32, v6: Bool, merged: [UInt8: U128]) throws -> [ClassifierRule] {
        var groups: [[(Variable, IntervalSet)]] = []
        var current: [Variable: IntervalSet] = [:]
        var currentOrder: [Variable] = []
        withUnsafeBytes(of: r.cond) { raw in
            let conds = raw.bindMemory(to: lfp_cond.self)
            for i in 0..<Int(min(r.ncond, UInt16(LFP_MAX_CONDS))) {
                let (v, s) = constraint(conds[i], v6: v6, merged: merged)
                if let old = current[v] { current[v] = old.union(s) } else { current[v] = s; currentOrder.append(v) }
                if conds[i].flags & UInt8(LFP_COND_GROUP_END) != 0 {
                    groups.append(currentOrder.map { ($0, current[$0]!) })
                    current = [:]
                    currentOrder = []
                }
            }
        }
        var combos: [[Variable: IntervalSet]] = [[:]]
        for alternatives in groups {
            var next: [[Variable: IntervalSet]] = []
            for prefix in combos {
                for (v, s) in alternatives {
                    var c = prefix
                    c[v] = c[v].map { $0.intersection(s) } ?? s
                    if !c[v]!.isUnsatisfiable { next.append(c) }
                }
            }
            combos = next
            guard combos.count <= maxSplitsPerRule else {
                throw CompileError(
                    code: .outOfBounds,
                    message: "filter \(r.filter_id) splits into more than \(maxSplitsPerRule) classifier rules")
            }
        }
        return combos.map { c in
            classifierRule(r, order: order, constraints: c.map { ($0.key, $0.value) })
        }
    }

    /// The usual rule, whose every OR group tests one variable: one classifier rule (or none,
    /// when two groups on a variable leave it no value), the same as the general path gives,
    /// without its dictionaries (a fifth of the classifier phase at 100,000 filters). Nil when
    /// a group spans variables.
    static func singleRule(_ r: lfp_rule, order: UInt32, v6: Bool, merged: [UInt8: U128]) -> [ClassifierRule]? {
        var constraints: [(variable: Variable, set: IntervalSet)] = []
        var group: [(variable: Variable, set: IntervalSet)] = []
        var spans = false, never = false
        withUnsafeBytes(of: r.cond) { raw in
            let conds = raw.bindMemory(to: lfp_cond.self)
            for i in 0..<Int(min(r.ncond, UInt16(LFP_MAX_CONDS))) {
                let (v, s) = constraint(conds[i], v6: v6, merged: merged)
                if let k = group.firstIndex(where: { $0.variable == v }) { group[k].set = group[k].set.union(s) } else { group.append((v, s)) }
                guard conds[i].flags & UInt8(LFP_COND_GROUP_END) != 0 else { continue }
                guard group.count == 1 else {
                    spans = true
                    return
                }
                if let k = constraints.firstIndex(where: { $0.variable == v }) {
                    constraints[k].set = constraints[k].set.intersection(group[0].set)
                    if constraints[k].set.isUnsatisfiable { never = true }
                } else {
                    constraints.append(group[0])
                    if group[0].set.isUnsatisfiable { never = true }
                }
                group = []
            }
        }
        if spans { return nil }
        return never ? [] : [classifierRule(r, order: order, constraints: constraints)]
    }

    static func classifierRule(_ r: lfp_rule, order: UInt32, constraints: [(variable: Variable, set: IntervalSet)]) -> ClassifierRule {
        ClassifierRule(
            order: order, filterId: r.filter_id, sublayer: r.sublayer, action: r.action,
            hard: r.flags & UInt8(LFP_RULE_HARD) != 0, blockErrno: r.block_errno,
            constraints: constraints.sorted { ($0.0.field, $0.0.mask) < ($1.0.field, $1.0.mask) })
    }
}
