import FilterModel
import KernelABI
import KernelVocabulary

/// FWPM filters -> kernel rules. The arbitration itself stays FilterModel's: the compiler walks
/// `BaseFilteringEngine.arbitrationOrders()` (sublayers by weight, filters in evaluation
/// order) and only translates each filter into the kernel's one generic test per condition
/// (lfp_abi.h, struct lfp_cond).
public enum PolicyCompiler {
    /// Layers the kernel classifies today; filters at the other (notification) layers are kept
    /// in the model but have nothing to decide in the kernel (R1.22).
    public static let enforcingKinds: Set<Layer.Kind> = [.resourceAssignment, .authConnect, .authListen, .authRecvAccept]

    public static func compile(_ engine: BaseFilteringEngine) throws -> PolicyImage {
        var image = PolicyImage()
        let orders = engine.arbitrationOrders()
        // One rule per filter, usually: reserved once (growing an array of 100,000 rules of
        // half a kilobyte each by doubling moved it a dozen times).
        image.ruleWeights.reserveCapacity(orders.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.filters.count } })
        image.rules.reserveCapacity(orders.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.filters.count } })
        for layer in Layer.allCases.sorted(by: { $0.kernelID < $1.kernelID }) {
            let start = UInt32(image.rules.count)
            let order = orders[layer] ?? []
            for (index, entry) in order.enumerated() {
                image.sublayerIndex[Int(layer.kernelID)][entry.sublayer.subLayerKey] = UInt16(index)
                for filter in entry.filters {
                    image.filterKeys[filter.filterId] = filter.filterKey
                    let rules = try kernelRules(filter, sublayer: UInt16(index), engine: engine, notes: &image.notes)
                    image.rules += rules
                    for _ in rules { image.ruleWeights.append(filter.effectiveWeight) }
                }
            }
            image.ranges[Int(layer.kernelID)].start = start
            image.ranges[Int(layer.kernelID)].count = UInt32(image.rules.count) - start
        }
        return image
    }

    /// One filter's kernel rules, `sublayer` being its sublayer's visiting index at its layer:
    /// none at a notification layer (noted), else `compile` with its callout's registration in
    /// `engine`. The full compile and an incremental one (ClassifierBase.add) both go through it.
    static func kernelRules(
        _ filter: Filter, sublayer: UInt16, engine: BaseFilteringEngine, notes: inout [PolicyImage.Note]
    ) throws -> [lfp_rule] {
        guard enforcingKinds.contains(filter.layerKey.kind) else {
            notes.append(
                .init(
                    filterId: filter.filterId, filterName: filter.displayData.name ?? "",
                    reason: "\(filter.layerKey.name) is a notification layer; the filter is kept but decides nothing in the kernel"))
            return []
        }
        let held = filter.action.calloutKey.map(engine.isRegistered) ?? false
        return try compile(filter, sublayer: sublayer, calloutRegistered: held, notes: &notes)
    }

    /// The most kernel rules one filter may expand to (see `alternatives`).
    static let maxRulesPerFilter = 64

    /// One filter as kernel rules: usually one; none when it has no kernel effect (recorded in
    /// `notes`); several adjacent rules with the same filterId when a condition group is an OR
    /// of alternatives that are themselves conjunctions (two ALE_USER_ID descriptors): the
    /// filter matches when any of them does, and rules of one sublayer stop at the first match.
    /// Layers where the kernel can hold an operation while a registered callout decides
    /// (bpf/lib/pend.h): connect() and the first datagram to a peer; an inbound SYN and the
    /// first datagram from a peer.
    public static let pendingKinds: Set<Layer.Kind> = [.authConnect, .authRecvAccept]

    static func compile(
        _ filter: Filter, sublayer: UInt16, calloutRegistered: Bool = false, notes: inout [PolicyImage.Note]
    ) throws -> [lfp_rule] {
        let name = filter.displayData.name ?? ""
        var rule = lfp_rule()
        rule.filter_id = filter.filterId
        rule.sublayer = sublayer
        rule.block_errno = filter.action.blockErrno ?? KernelVocabulary.defaultBlockErrno
        switch filter.action.type {
        case .block:
            rule.action = UInt8(LFP_ACTION_BLOCK.rawValue)
            rule.flags = UInt8(LFP_RULE_HARD)  // a static block clears the write right (R1.13)
        case .permit:
            rule.action = UInt8(LFP_ACTION_PERMIT.rawValue)
            if filter.flags.contains(.clearActionRight) { rule.flags = UInt8(LFP_RULE_HARD) }  // R1.14
        case .calloutTerminating where calloutRegistered && pendingKinds.contains(filter.layerKey.kind),
            .calloutUnknown where calloutRegistered && pendingKinds.contains(filter.layerKey.kind):
            // The callout is registered (in the daemon that hosts it): the kernel holds the
            // operation and the daemon finishes the arbitration with the callout's answer. The
            // walk stops here: whatever follows depends on that answer.
            rule.action = UInt8(LFP_ACTION_CALLOUT.rawValue)
            rule.flags = UInt8(LFP_RULE_HARD)
        case .calloutTerminating, .calloutUnknown:
            if calloutRegistered {
                notes.append(
                    .init(
                        filterId: filter.filterId, filterName: name,
                        reason:
                            "\(filter.layerKey.name): the kernel cannot hold this operation for a callout; the filter acts as if its callout were unregistered")
                )
            }
            // No callout is registered in the kernel: WFP substitutes a block, or a permit with
            // PERMIT_IF_CALLOUT_UNREGISTERED (R5.6). Hardness as in FilterModel (Q7): the block is
            // hard like a static block; the permit soft unless CLEAR_ACTION_RIGHT.
            if filter.flags.contains(.permitIfCalloutUnregistered) {
                rule.action = UInt8(LFP_ACTION_PERMIT.rawValue)
                if filter.flags.contains(.clearActionRight) { rule.flags = UInt8(LFP_RULE_HARD) }
            } else {
                rule.action = UInt8(LFP_ACTION_BLOCK.rawValue)
                rule.flags = UInt8(LFP_RULE_HARD)
            }
        case .calloutInspection:
            notes.append(
                .init(
                    filterId: filter.filterId, filterName: name,
                    reason: "inspection callout: never decides, and no callout is registered in the kernel"))
            return []
        default:
            throw CompileError(
                code: .invalidActionType,
                message: "filter '\(name)': action \(filter.action.type.name) cannot be enforced in the kernel")
        }
        // Each field group is an OR of alternatives; each alternative a CNF (AND of OR-groups).
        var perGroup: [[CNF]] = []
        for group in groups(filter.filterCondition) {
            let cnfs = try group.map { try compile($0, layer: filter.layerKey, filter: name) }
            if cnfs.contains(where: { $0.isEmpty }) { continue }  // an always-true alternative
            if cnfs.allSatisfy({ $0.count == 1 }) {
                perGroup.append([[cnfs.flatMap { $0[0] }]])  // one OR-group: the usual case
            } else {
                perGroup.append(cnfs)
            }
        }
        var combos: [CNF] = [[]]
        for alternatives in perGroup {
            combos = combos.flatMap { prefix in alternatives.map { prefix + $0 } }
            guard combos.count <= maxRulesPerFilter else {
                throw CompileError(
                    code: .outOfBounds,
                    message: "filter '\(name)' expands to more than \(maxRulesPerFilter) kernel rules")
            }
        }
        return try combos.map { cnf in
            var conds: [lfp_cond] = []
            for orGroup in cnf {
                var g = orGroup
                g[g.count - 1].flags |= UInt8(LFP_COND_GROUP_END)
                conds += g
            }
            guard conds.count <= Int(LFP_MAX_CONDS) else {
                throw CompileError(
                    code: .outOfBounds,
                    message: "filter '\(name)' needs \(conds.count) kernel conditions; a kernel rule holds at most \(LFP_MAX_CONDS)")
            }
            var r = rule
            r.ncond = UInt16(conds.count)
            withUnsafeMutableBytes(of: &r.cond) { raw in
                let dst = raw.bindMemory(to: lfp_cond.self)
                for (i, c) in conds.enumerated() { dst[i] = c }
            }
            return r
        }
    }

    /// Conditions on one field OR together and form a group; groups AND (R3.3, R3.4). As in
    /// FilterModel (Q8), same-field conditions OR even when not adjacent: groups are formed by
    /// field, in order of first appearance.
    static func groups(_ conditions: [FilterCondition]) -> [[FilterCondition]] {
        var out: [[FilterCondition]] = []
        for c in conditions {
            if let i = out.firstIndex(where: { $0.first?.fieldKey == c.fieldKey }) {
                out[i].append(c)
            } else {
                out.append([c])
            }
        }
        return out
    }
}

/// AND of OR-groups of kernel tests; [] is always true.
typealias CNF = [[lfp_cond]]
