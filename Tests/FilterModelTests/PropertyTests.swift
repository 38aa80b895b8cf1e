// Property-based tests of the arbitration invariants and of policy round-trips.

import Foundation
import PropertyBased
import Testing

@testable import FilterModel

/// Builds a random policy from a list of numbers: up to 3 sublayers, filters with static or
/// callout actions, optional port conditions, explicit or automatic weights; plus scripted
/// callouts (one per behaviour).
struct RandomPolicy {
    static let sublayerKeys = (0..<3).map { UUID(uuidString: "00000000-0000-4000-8000-00000000010\($0)")! }
    static let calloutKeys = (0..<6).map { UUID(uuidString: "00000000-0000-4000-8000-00000000020\($0)")! }

    let policy: Policy
    let callouts: [ScriptedCallout]

    init(_ seeds: [UInt64]) {
        var p = Policy()
        for (i, k) in Self.sublayerKeys.enumerated() {
            p.sublayers.append(Sublayer(subLayerKey: k, displayData: DisplayData(name: "SL\(i)"), weight: UInt16([0x8000, 0x4000, 0x4000][i])))
        }
        // Callout behaviours: returns x clearsRight x withoutRight.
        let behaviours: [(ActionType, Bool, ScriptedCallout.WithoutRight)] = [
            (.permit, false, .write), (.block, true, .write), (.block, false, .skip),
            (.continue, false, .write), (.permit, true, .write), (.block, false, .write),
        ]
        var cs: [ScriptedCallout] = []
        for (i, b) in behaviours.enumerated() {
            p.callouts.append(CalloutObject(calloutKey: Self.calloutKeys[i], displayData: DisplayData(name: "C\(i)"), applicableLayer: .authConnectV4))
            // Callout 5 stays unregistered.
            if i != 5 { cs.append(ScriptedCallout(calloutKey: Self.calloutKeys[i], returns: b.0, clearsRight: b.1, withoutRight: b.2)) }
        }
        for (i, s) in seeds.enumerated() {
            let sl = Self.sublayerKeys[Int(s % 3)]
            let kind = Int((s >> 2) % 9)
            var flags: FilterFlags = []
            let action: FilterAction
            switch kind {
            case 0: action = .permit
            case 1: action = .permit; flags.insert(.clearActionRight)
            case 2: action = .block
            case 3: action = FilterAction(type: .calloutTerminating, calloutKey: Self.calloutKeys[Int((s >> 6) % 6)])
            case 4: action = FilterAction(type: .calloutInspection, calloutKey: Self.calloutKeys[Int((s >> 6) % 6)])
            case 5: action = FilterAction(type: .calloutUnknown, calloutKey: Self.calloutKeys[Int((s >> 6) % 6)])
            case 6: action = FilterAction(type: .calloutUnknown, calloutKey: Self.calloutKeys[5]); flags.insert(.permitIfCalloutUnregistered)
            case 7: action = .block
            default: action = FilterAction(type: .calloutTerminating, calloutKey: Self.calloutKeys[Int((s >> 6) % 6)]); flags.insert(.clearActionRight)
            }
            var conds: [FilterCondition] = []
            if (s >> 9) % 2 == 1 { conds.append(FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(UInt16((s >> 10) % 4)))) }
            if (s >> 12) % 4 == 1 { conds.append(FilterCondition(fieldKey: .ipProtocol, conditionValue: .uint8((s >> 14) % 2 == 0 ? 6 : 17))) }
            let weight: ConditionValue = (s >> 15) % 3 == 0 ? .empty : ((s >> 15) % 3 == 1 ? .uint64((s >> 17) % 8) : .uint8(UInt8((s >> 17) % 3)))
            p.filters.append(
                Filter(
                    filterKey: UUID(uuidString: String(format: "00000000-0000-4000-8000-%012x", 0x300 + i))!,
                    displayData: DisplayData(name: "F\(i)"), flags: flags, layerKey: .authConnectV4,
                    subLayerKey: sl, weight: weight, filterCondition: conds, action: action))
        }
        policy = p
        callouts = cs
    }

    func engine() throws -> BaseFilteringEngine {
        let bfe = BaseFilteringEngine()
        try bfe.load(policy)
        for c in callouts { try bfe.registerCallout(c) }
        return bfe
    }

    static func values(_ port: Int, _ proto: Int) -> IncomingValues {
        IncomingValues([.ipRemotePort: .uint16(UInt16(port)), .ipProtocol: .uint8(proto == 0 ? 6 : 17)])
    }
}

let seedsGen = Gen.uint64(in: 0...UInt64.max).array(of: 0...10)

@Suite("Arbitration invariants (property-based)")
struct PropertyTests {
    @Test("Classify is deterministic and independent of the engine instance")
    func deterministic() async {
        await propertyCheck(input: seedsGen, Gen.int(in: 0...3), Gen.int(in: 0...1)) { seeds, port, proto in
            let rp = RandomPolicy(seeds)
            let a = try rp.engine(), b = try rp.engine()
            let v = RandomPolicy.values(port, proto)
            let r1 = a.classify(layer: .authConnectV4, values: v)
            let r2 = a.classify(layer: .authConnectV4, values: v)
            let r3 = b.classify(layer: .authConnectV4, values: v)
            #expect(r1.actionType == r2.actionType && r1.filterId == r2.filterId && r1.hard == r2.hard)
            #expect(r1.actionType == r3.actionType && r1.filterKey == r3.filterKey && r1.veto == r3.veto)
            #expect(r1.actionType == .permit || r1.actionType == .block)
        }
    }

    @Test("A filter below a matching static filter of the same sublayer never changes the verdict (R1.4)")
    func hiddenBelowTerminating() async {
        await propertyCheck(input: seedsGen, Gen.int(in: 0...3), Gen.int(in: 0...8)) { seeds, port, kind in
            let rp = RandomPolicy(seeds)
            let bfe = try rp.engine()
            let v = RandomPolicy.values(port, 0)
            let before = bfe.classify(layer: .authConnectV4, values: v)
            // Find a sublayer in which a static filter matches.
            let order = bfe.arbitrationOrder(layer: .authConnectV4)
            guard
                let sl = order.first(where: { o in
                    o.filters.contains { ($0.action.type == .permit || $0.action.type == .block) && ConditionMatcher.filterMatches($0.filterCondition, v) }
                })
            else { return }
            var x = RandomPolicy([UInt64(kind) << 2]).policy.filters[0]
            x.subLayerKey = sl.sublayer.subLayerKey
            x.filterKey = UUID()
            x.weight = .uint64(0)  // lowest weight; ties go to the older filterId
            x.filterCondition = []
            if order.flatMap(\.filters).contains(where: {
                $0.effectiveWeight == 0 && $0.subLayerKey == sl.sublayer.subLayerKey && ConditionMatcher.filterMatches($0.filterCondition, v)
                    && !($0.action.type == .permit || $0.action.type == .block)
            }) {
                return  // a callout filter at weight 0 could be the one continuing; keep the property crisp
            }
            try bfe.addFilter(x)
            let after = bfe.classify(layer: .authConnectV4, values: v)
            #expect(after.actionType == before.actionType)
            #expect(after.filterId == before.filterId)
            #expect(after.hard == before.hard)
            #expect(after.veto == before.veto)
        }
    }

    @Test("A hard block never becomes a permit; a hard permit becomes a block only by a veto (R1.12, R1.16)")
    func rights() async {
        await propertyCheck(input: seedsGen, Gen.int(in: 0...3), Gen.int(in: 0...1)) { seeds, port, proto in
            let bfe = try RandomPolicy(seeds).engine()
            let r = bfe.classify(layer: .authConnectV4, values: RandomPolicy.values(port, proto))
            var hardAction: ActionType? = nil
            var right = true
            for e in r.trace.flatMap(\.entries) {
                #expect(e.rightBefore == right, "the trace carries the right from filter to filter")
                if right && !e.rightAfter, e.outcome == .decided { hardAction = e.effectiveAction }
                #expect(!(!e.rightBefore && e.rightAfter), "a cleared right never comes back")
                right = e.rightAfter
            }
            if hardAction == .block { #expect(r.actionType == .block) }
            if hardAction == .permit && r.actionType == .block { #expect(r.veto) }
            if r.veto { #expect(r.actionType == .block && r.hard) }
            #expect(r.hard == !right)
            // The deciding filter is in the trace as decided or veto; filterId 0 means nothing decided.
            if r.filterId != 0 {
                let e = r.trace.flatMap(\.entries).last { $0.filterId == r.filterId }
                #expect(e?.outcome == .decided || e?.outcome == .veto)
            } else {
                #expect(r.actionType == .permit)
                #expect(!r.trace.flatMap(\.entries).contains { $0.outcome == .decided || $0.outcome == .veto })
            }
        }
    }

    @Test("Sublayer results: at most one terminating filter per sublayer, everything after it skipped (R1.4, R1.5)")
    func oneTerminatorPerSublayer() async {
        await propertyCheck(input: seedsGen, Gen.int(in: 0...3)) { seeds, port in
            let bfe = try RandomPolicy(seeds).engine()
            let r = bfe.classify(layer: .authConnectV4, values: RandomPolicy.values(port, 0))
            let order = bfe.arbitrationOrder(layer: .authConnectV4)
            #expect(r.trace.count == order.count, "every sublayer is arbitrated")
            for s in r.trace {
                let term = s.entries.firstIndex { [.decided, .ignored, .veto].contains($0.outcome) }
                if let t = term {
                    #expect(s.entries[(t + 1)...].allSatisfy { $0.outcome == .skipped })
                    #expect(s.result == s.entries[t].effectiveAction)
                } else {
                    #expect(s.result == nil)
                    #expect(!s.entries.contains { $0.outcome == .skipped })
                }
            }
        }
    }

    @Test("Policy export round-trips (YAML and JSON), also through a snapshot")
    func roundTrip() async {
        await propertyCheck(input: seedsGen) { seeds in
            let rp = RandomPolicy(seeds)
            #expect(try Policy.parse(rp.policy.exportYAML()) == rp.policy)
            #expect(try Policy.parse(rp.policy.exportJSON()) == rp.policy)
            let bfe = try rp.engine()
            let snap = bfe.snapshot()
            let back = try Policy.parse(snap.exportJSON())
            #expect(back == snap)
            let again = BaseFilteringEngine()
            try again.load(back)
            for c in rp.callouts { try again.registerCallout(c) }
            for port in 0...3 {
                let v = RandomPolicy.values(port, 0)
                let a = bfe.classify(layer: .authConnectV4, values: v), b = again.classify(layer: .authConnectV4, values: v)
                #expect(a.actionType == b.actionType && a.filterKey == b.filterKey)
            }
        }
    }

    @Test("Superset of equality conditions gets a higher auto-weight (R2.4)")
    func autoWeightSuperset() async {
        let fields: [ConditionField] = [.ipRemotePort, .ipLocalPort, .ipProtocol, .ipRemoteAddress, .lfpUid, .lfpCgroupId]
        await propertyCheck(input: Gen.int(in: 0...63), Gen.int(in: 0...5)) { mask, extra in
            func cond(_ f: ConditionField) -> FilterCondition {
                switch f.dataType(at: .authConnectV4) {
                case .uint8: return FilterCondition(fieldKey: f, conditionValue: .uint8(6))
                case .uint16: return FilterCondition(fieldKey: f, conditionValue: .uint16(1))
                case .uint64: return FilterCondition(fieldKey: f, conditionValue: .uint64(1))
                default: return FilterCondition(fieldKey: f, conditionValue: .uint32(1))
                }
            }
            let subset = fields.enumerated().filter { mask & (1 << $0.offset) != 0 }.map { cond($0.element) }
            guard mask & (1 << extra) == 0 else { return }
            let superset = subset + [cond(fields[extra])]
            #expect(FilterWeight.autoWeight(superset, layer: .authConnectV4) > FilterWeight.autoWeight(subset, layer: .authConnectV4))
        }
    }
}
