import FilterModel
import Foundation
import KernelABI
import KernelVocabulary
import PolicyCompiler
import Testing

// Golden tests of PolicyCompiler.compile: FWPM filters in, the exact lfp_rule records out.
// Pure: no kernel. A small Swift port of bpf/lib/classify.h (`KernelEval`) checks the meaning of
// the encodings too, and drives a model-vs-image cross-check over generated policies.

// MARK: - Helpers

private let SL_HI = "11111111-1111-4111-8111-111111111111"
private let SL_MID = "22222222-2222-4222-8222-222222222222"
private let SL_LO = "33333333-3333-4333-8333-333333333333"
private let CALLOUT = "55555555-5555-4555-8555-555555555555"
private let CALLOUT_IN = "55555555-5555-4555-8555-5555555555a6"
private let CALLOUT_RA = "55555555-5555-4555-8555-5555555555a1"

private let allOnes = UInt64.max

/// Loads `yaml` into a fresh BFE; returns the engine, the image and the filterIds by name.
private func compileYAML(_ yaml: String) throws -> (image: PolicyImage, bfe: BaseFilteringEngine, ids: [String: UInt64]) {
    let bfe = BaseFilteringEngine()
    _ = try bfe.load(try Policy.parse(yaml, sourceName: "test"))
    let image = try PolicyCompiler.compile(bfe)
    var ids: [String: UInt64] = [:]
    for f in try bfe.filters() { ids[f.name] = f.filterId }
    return (image, bfe, ids)
}

/// A policy with one filter at `layer` carrying `conditions` (YAML flow mappings).
private func oneFilter(
    _ conditions: [String], layer: String = "FWPM_LAYER_ALE_AUTH_CONNECT_V4",
    name: String = "F", action: String = "FWP_ACTION_BLOCK"
) -> String {
    var y = """
        filters:
          - displayData: { name: \(name) }
            layerKey: \(layer)
            weight: { type: FWP_UINT64, uint64: 10 }
            action: { type: \(action) }

        """
    if !conditions.isEmpty {
        y += "    filterCondition:\n"
        for c in conditions { y += "      - \(c)\n" }
    }
    return y
}

private func cond(_ field: String, _ match: String, _ value: String) -> String {
    "{ fieldKey: FWPM_CONDITION_\(field), matchType: FWP_MATCH_\(match), conditionValue: \(value) }"
}
private func u16(_ v: Int) -> String { "{ type: FWP_UINT16, uint16: \(v) }" }
private func u32(_ v: String) -> String { "{ type: FWP_UINT32, uint32: \(v) }" }
private func portRange(_ lo: Int, _ hi: Int) -> String {
    "{ type: FWP_RANGE_TYPE, rangeValue: { valueLow: \(u16(lo)), valueHigh: \(u16(hi)) } }"
}

/// The conditions of a rule (the C fixed array is imported as a tuple).
private func conds(_ r: lfp_rule) -> [lfp_cond] {
    withUnsafeBytes(of: r.cond) { Array($0.bindMemory(to: lfp_cond.self).prefix(Int(r.ncond))) }
}

/// The single rule of a single-filter policy at `layer`.
private func onlyRule(_ image: PolicyImage, _ layer: Layer = .authConnectV4) throws -> lfp_rule {
    let rules = image.rules(at: layer)
    try #require(rules.count == 1, "expected one rule at \(layer.name), got \(rules.count)")
    return rules.first!
}

/// An expected lfp_cond, written out.
private struct C: Equatable, CustomStringConvertible {
    var field: lfp_field
    var flags: UInt32 = 0
    var mask: (UInt64, UInt64) = (allOnes, allOnes)
    var lo: (UInt64, UInt64)
    var hi: (UInt64, UInt64)

    init(_ field: lfp_field, flags: UInt32 = 0, mask: (UInt64, UInt64) = (allOnes, allOnes), lo: (UInt64, UInt64), hi: (UInt64, UInt64)) {
        self.field = field; self.flags = flags; self.mask = mask; self.lo = lo; self.hi = hi
    }
    /// A 64-bit-or-less value test: mask all ones, lo..hi in the low half.
    init(_ field: lfp_field, _ lo: UInt64, _ hi: UInt64, flags: UInt32 = 0) {
        self.init(field, flags: flags, lo: (0, lo), hi: (0, hi))
    }
    init(_ k: lfp_cond) {
        field = lfp_field(UInt32(k.field)); flags = UInt32(k.flags)
        mask = (k.mask_hi, k.mask_lo); lo = (k.lo_hi, k.lo_lo); hi = (k.hi_hi, k.hi_lo)
    }
    static func == (a: C, b: C) -> Bool {
        a.field == b.field && a.flags == b.flags && a.mask == b.mask && a.lo == b.lo && a.hi == b.hi
    }
    var description: String {
        func h(_ p: (UInt64, UInt64)) -> String { "0x\(String(p.0, radix: 16)):\(String(p.1, radix: 16))" }
        return "{field \(field.rawValue) flags \(flags) mask \(h(mask)) lo \(h(lo)) hi \(h(hi))}"
    }
}

private func expectConds(_ r: lfp_rule, _ expected: [C], sourceLocation: SourceLocation = #_sourceLocation) {
    let got = conds(r).map(C.init)
    #expect(got == expected, "conditions of filter \(r.filter_id)", sourceLocation: sourceLocation)
    #expect(Int(r.ncond) == expected.count, sourceLocation: sourceLocation)
}

private let END = LFP_COND_GROUP_END
private let NEG = LFP_COND_NEGATE

/// bpf/lib/classify.h in Swift: one test, one rule, one layer walk over a PolicyImage. A field
/// absent from `values` is FWP_EMPTY (lfp_field_value returning 0).
enum KernelEval {
    typealias Values = [UInt32: (hi: UInt64, lo: UInt64)]

    static func cond(_ c: lfp_cond, _ values: Values) -> Bool {
        guard let v = values[UInt32(c.field)] else { return c.flags & UInt8(LFP_COND_MATCH_EMPTY) != 0 }
        if c.flags & UInt8(LFP_COND_MATCH_EMPTY) != 0 { return false }
        let hi = v.hi & c.mask_hi, lo = v.lo & c.mask_lo
        let ge = hi > c.lo_hi || (hi == c.lo_hi && lo >= c.lo_lo)
        let le = hi < c.hi_hi || (hi == c.hi_hi && lo <= c.hi_lo)
        return (ge && le) != (c.flags & UInt8(LFP_COND_NEGATE) != 0)
    }

    static func rule(_ r: lfp_rule, _ values: Values) -> Bool {
        var group = false
        for c in conds(r) {
            group = group || cond(c, values)
            if c.flags & UInt8(LFP_COND_GROUP_END) != 0 {
                if !group { return false }
                group = false
            }
        }
        return true
    }

    /// lfp_addr_type (NL_ADDRESS_TYPE from the address alone), for an IPv4 address in host order
    /// or an IPv6 one as (hi, lo).
    static func addrType(v4 a: UInt32) -> UInt64 {
        a == 0 ? 0 : a == 0xFFFF_FFFF ? 4 : a >> 28 == 0xE ? 3 : 1
    }
    static func addrType(v6 hi: UInt64, _ lo: UInt64) -> UInt64 {
        hi == 0 && lo == 0 ? 0 : hi >> 56 == 0xFF ? 3 : 1
    }

    /// (action, filterId) as lfp_classify returns them.
    static func classify(_ image: PolicyImage, _ layer: Layer, _ values: Values) -> (action: UInt8, filterId: UInt64) {
        var action = UInt8(LFP_ACTION_PERMIT.rawValue), filterId: UInt64 = 0
        var skip = UInt32.max
        for r in image.rules(at: layer) {
            if UInt32(r.sublayer) == skip { continue }
            if !rule(r, values) { continue }
            action = r.action; filterId = r.filter_id; skip = UInt32(r.sublayer)
            if r.flags & UInt8(LFP_RULE_HARD) != 0 { break }
        }
        return (action, filterId)
    }
}

private func port(_ p: UInt64) -> KernelEval.Values { [LFP_FIELD_IP_REMOTE_PORT.rawValue: (0, p)] }

// MARK: - Tests

@Suite("PolicyCompiler golden")
struct CompilerTests {
    // MARK: layers and order

    @Test("each layer gets its own contiguous range, in kernel layer id order")
    func layerRanges() throws {
        let (image, _, ids) = try compileYAML(
            """
            filters:
              - { displayData: { name: c1 }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 2 }, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: ra }, layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: c2 }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 1 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: l6 }, layerKey: FWPM_LAYER_ALE_AUTH_LISTEN_V6, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: ra6 }, layerKey: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6, action: { type: FWP_ACTION_BLOCK } }
            """)
        #expect(image.rules.count == 5)
        #expect(image.ranges.count == Int(LFP_LAYER_COUNT.rawValue))
        // rules are laid out layer by layer in kernel id order; empty layers are empty ranges
        // at the current position
        let expected: [(Layer, UInt32, UInt32)] = [
            (.resourceAssignmentV4, 0, 1), (.resourceAssignmentV6, 1, 0), (.authListenV4, 1, 0),
            (.authListenV6, 1, 1), (.authRecvAcceptV4, 2, 0), (.authRecvAcceptV6, 2, 1),
            (.authConnectV4, 3, 2), (.authConnectV6, 5, 0), (.flowEstablishedV4, 5, 0),
            (.flowEstablishedV6, 5, 0), (.resourceReleaseV4, 5, 0), (.resourceReleaseV6, 5, 0),
            (.endpointClosureV4, 5, 0), (.endpointClosureV6, 5, 0),
        ]
        for (layer, start, count) in expected {
            let r = image.ranges[Int(layer.kernelID)]
            #expect(r.start == start && r.count == count, "\(layer.name): start \(r.start) count \(r.count)")
        }
        #expect(image.rules(at: .resourceAssignmentV4).map(\.filter_id) == [ids["ra"]!])
        #expect(image.rules(at: .authListenV6).map(\.filter_id) == [ids["l6"]!])
        #expect(image.rules(at: .authRecvAcceptV6).map(\.filter_id) == [ids["ra6"]!])
        #expect(image.rules(at: .authConnectV4).map(\.filter_id) == [ids["c1"]!, ids["c2"]!])
        #expect(image.rules(at: .authConnectV6).isEmpty)
        #expect(image.notes.isEmpty)
    }

    @Test("evaluation order: sublayers by weight (index = visiting order), filters by effective weight")
    func evaluationOrder() throws {
        let (image, bfe, ids) = try compileYAML(
            """
            sublayers:
              - { subLayerKey: \(SL_LO), displayData: { name: lo }, weight: 0x1000 }
              - { subLayerKey: \(SL_HI), displayData: { name: hi }, weight: 0xF000 }
              - { subLayerKey: \(SL_MID), displayData: { name: ra-only }, weight: 0xFFFF }
            filters:
              - { displayData: { name: lo-a }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_LO), weight: { type: FWP_UINT64, uint64: 5 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: lo-b }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_LO), weight: { type: FWP_UINT64, uint64: 900 }, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: hi-empty }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_HI), action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: hi-u8 }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_HI), weight: { type: FWP_UINT8, uint8: 5 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: hi-u64 }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_HI), weight: { type: FWP_UINT64, uint64: 0x4000000000000000 }, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: hi-tie }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, subLayerKey: \(SL_HI), weight: { type: FWP_UINT64, uint64: 0x4000000000000000 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: universal }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 1 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: ra }, layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4, subLayerKey: \(SL_MID), action: { type: FWP_ACTION_PERMIT } }
            """)
        let rules = Array(image.rules(at: .authConnectV4))
        // hi (0xF000) -> universal (0x8000) -> lo (0x1000); ra-only has no filter here and
        // takes no index. Inside hi: UINT8 5 (5<<60) > UINT64 2^62 (tie: lower filterId) > EMPTY.
        let names = ["hi-u8", "hi-u64", "hi-tie", "hi-empty", "universal", "lo-b", "lo-a"]
        #expect(rules.map(\.filter_id) == names.map { ids[$0]! }, "\(rules.map(\.filter_id)) vs \(ids)")
        #expect(rules.map(\.sublayer) == [0, 0, 0, 0, 1, 2, 2])
        // the same order as the model's arbitration order
        let modelOrder = bfe.arbitrationOrder(layer: .authConnectV4).flatMap { $0.filters.map(\.filterId) }
        #expect(rules.map(\.filter_id) == modelOrder)
        // at another layer the visiting order restarts at 0
        #expect(image.rules(at: .resourceAssignmentV4).map(\.sublayer) == [0])
        // the effective weights the order came from
        let w = Dictionary(uniqueKeysWithValues: try bfe.filters().map { ($0.name, $0.effectiveWeight) })
        #expect(w["hi-u8"]! >> 60 == 5 && w["hi-u64"]! == 1 << 62 && w["hi-empty"]! < 1 << 60)
    }

    // MARK: actions

    @Test("actions: static block/permit, CLEAR_ACTION_RIGHT, unregistered callouts, inspection skipped")
    func actions() throws {
        let (image, _, ids) = try compileYAML(
            """
            callouts:
              - { calloutKey: \(CALLOUT), displayData: { name: CT }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }
            filters:
              - { displayData: { name: block }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 90 }, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: permit }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 80 }, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: permit-clear }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 70 }, flags: [FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT], action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: term }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 60 }, action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(CALLOUT) } }
              - { displayData: { name: term-permit }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 50 }, flags: [FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED], action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(CALLOUT) } }
              - { displayData: { name: unknown-permit-clear }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 40 }, flags: [FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED, FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT], action: { type: FWP_ACTION_CALLOUT_UNKNOWN, calloutKey: \(CALLOUT) } }
              - { displayData: { name: unknown }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 30 }, action: { type: FWP_ACTION_CALLOUT_UNKNOWN, calloutKey: \(CALLOUT) } }
              - { displayData: { name: inspect }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 20 }, action: { type: FWP_ACTION_CALLOUT_INSPECTION, calloutKey: \(CALLOUT) } }
            """)
        let P = UInt8(LFP_ACTION_PERMIT.rawValue), B = UInt8(LFP_ACTION_BLOCK.rawValue), H = UInt8(LFP_RULE_HARD)
        let expected: [(String, UInt8, UInt8)] = [
            ("block", B, H), ("permit", P, 0), ("permit-clear", P, H), ("term", B, H), ("term-permit", P, 0),
            ("unknown-permit-clear", P, H), ("unknown", B, H),
        ]
        let rules = Array(image.rules(at: .authConnectV4))
        try #require(rules.count == expected.count, "the inspection callout must not become a rule")
        for (r, (name, action, flags)) in zip(rules, expected) {
            #expect(r.filter_id == ids[name]!, "\(name)")
            #expect(r.action == action && r.flags == flags, "\(name): action \(r.action) flags \(r.flags)")
            #expect(r.block_errno == 1, "\(name): EPERM")
            #expect(r.sublayer == 0 && r.ncond == 0 && r.pad == 0 && r.pad2 == 0)
        }
        try #require(image.notes.count == 1)
        #expect(image.notes[0].filterId == ids["inspect"]! && image.notes[0].filterName == "inspect")
        #expect(image.notes[0].reason.contains("inspection callout"))
    }

    @Test("a registered callout's terminating and unknown filters become held leaves where the kernel can hold, and stay substituted elsewhere")
    func registeredCallouts() throws {
        let bfe = BaseFilteringEngine()
        _ = try bfe.load(
            try Policy.parse(
                """
                callouts:
                  - { calloutKey: \(CALLOUT), displayData: { name: C4 }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }
                  - { calloutKey: \(CALLOUT_IN), displayData: { name: C6 }, applicableLayer: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6 }
                  - { calloutKey: \(CALLOUT_RA), displayData: { name: CRA }, applicableLayer: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4 }
                filters:
                  - { displayData: { name: term }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 60 }, action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(CALLOUT) } }
                  - { displayData: { name: unknown }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, weight: { type: FWP_UINT64, uint64: 50 }, flags: [FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED], action: { type: FWP_ACTION_CALLOUT_UNKNOWN, calloutKey: \(CALLOUT) } }
                  - { displayData: { name: inbound }, layerKey: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6, action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(CALLOUT_IN) } }
                  - { displayData: { name: bind }, layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4, action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(CALLOUT_RA) } }
                """, sourceName: "test"))
        let unregistered = try PolicyCompiler.compile(bfe)
        #expect(!unregistered.rules.contains { $0.action == UInt8(LFP_ACTION_CALLOUT.rawValue) }, "nothing is held for an unregistered callout")
        for k in [CALLOUT, CALLOUT_IN, CALLOUT_RA] { try bfe.registerCallout(ScriptedCallout(calloutKey: UUID(uuidString: k)!, returns: .permit)) }
        let image = try PolicyCompiler.compile(bfe)
        let C = UInt8(LFP_ACTION_CALLOUT.rawValue), B = UInt8(LFP_ACTION_BLOCK.rawValue), H = UInt8(LFP_RULE_HARD)
        #expect(image.rules(at: .authConnectV4).map { [$0.action, $0.flags] } == [[C, H], [C, H]])
        #expect(image.rules(at: .authRecvAcceptV6).map { [$0.action, $0.flags] } == [[C, H]])
        #expect(image.rules(at: .resourceAssignmentV4).map { [$0.action, $0.flags] } == [[B, H]], "bind() cannot be held")
        #expect(image.notes.contains { $0.filterName == "bind" && $0.reason.contains("cannot hold") })
    }

    @Test("filters at notification layers decide nothing: skipped with a note")
    func notificationLayersSkipped() throws {
        let (image, _, ids) = try compileYAML(
            """
            filters:
              - { displayData: { name: flow }, layerKey: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: rel }, layerKey: FWPM_LAYER_ALE_RESOURCE_RELEASE_V6, action: { type: FWP_ACTION_PERMIT } }
              - { displayData: { name: conn }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK } }
            """)
        #expect(image.rules.map(\.filter_id) == [ids["conn"]!])
        #expect(image.rules(at: .flowEstablishedV4).isEmpty && image.rules(at: .resourceReleaseV6).isEmpty)
        #expect(Set(image.notes.map(\.filterId)) == [ids["flow"]!, ids["rel"]!])
        for n in image.notes { #expect(n.reason.contains("notification layer"), "\(n)") }
        #expect(image.notes.contains { $0.filterName == "flow" && $0.reason.contains("FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4") })
    }

    // MARK: match types

    @Test("ports: EQUAL, NOT_EQUAL, RANGE, GREATER, GREATER_OR_EQUAL, LESS, LESS_OR_EQUAL")
    func portEncodings() throws {
        let F = LFP_FIELD_IP_REMOTE_PORT
        let max = UInt64.max
        let cases: [(String, String, [C])] = [
            ("EQUAL", u16(22), [C(F, 22, 22, flags: END)]),
            ("NOT_EQUAL", u16(22), [C(F, 22, 22, flags: NEG | END)]),
            ("RANGE", portRange(1000, 2000), [C(F, 1000, 2000, flags: END)]),
            ("GREATER", u16(1000), [C(F, flags: END, lo: (0, 1001), hi: (max, max))]),
            ("GREATER_OR_EQUAL", u16(1000), [C(F, flags: END, lo: (0, 1000), hi: (max, max))]),
            ("LESS", u16(1000), [C(F, 0, 999, flags: END)]),
            ("LESS_OR_EQUAL", u16(1000), [C(F, 0, 1000, flags: END)]),
            // nothing is below 0: a test no value passes (lo > hi, mask 0)
            ("LESS", u16(0), [C(F, flags: END, mask: (0, 0), lo: (0, 1), hi: (0, 0))]),
        ]
        for (match, value, expected) in cases {
            let (image, _, _) = try compileYAML(oneFilter([cond("IP_REMOTE_PORT", match, value)]))
            expectConds(try onlyRule(image), expected)
        }
        // GREATER than the largest port: no port passes
        let (image, _, _) = try compileYAML(oneFilter([cond("IP_REMOTE_PORT", "GREATER", u16(65535))]))
        let r = try onlyRule(image)
        for p: UInt64 in [0, 1, 65534, 65535] { #expect(!KernelEval.rule(r, port(p)), "port \(p)") }
        // and the meaning of each encoding at its edges
        func passes(_ match: String, _ value: String, _ p: UInt64) throws -> Bool {
            KernelEval.rule(try onlyRule(try compileYAML(oneFilter([cond("IP_REMOTE_PORT", match, value)])).image), port(p))
        }
        #expect(try passes("GREATER", u16(1000), 1001) && !passes("GREATER", u16(1000), 1000))
        #expect(try passes("LESS", u16(1000), 999) && !passes("LESS", u16(1000), 1000))
        #expect(try passes("RANGE", portRange(1000, 2000), 1000) && passes("RANGE", portRange(1000, 2000), 2000))
        #expect(try !passes("RANGE", portRange(1000, 2000), 999) && !passes("RANGE", portRange(1000, 2000), 2001))
        #expect(try passes("NOT_EQUAL", u16(22), 23) && !passes("NOT_EQUAL", u16(22), 22))
        #expect(try !passes("LESS", u16(0), 0))
    }

    @Test("IPv4 addresses: address/mask, exact FWP_UINT32, NOT_EQUAL mask")
    func v4Addresses() throws {
        let F = LFP_FIELD_IP_REMOTE_ADDRESS
        let mask8 = "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 10.1.2.3, mask: 255.0.0.0 } }"
        let cases: [(String, String, [C])] = [
            // the address is stored masked (10.1.2.3/8 -> 10.0.0.0); a v4 mask has an empty high half
            ("EQUAL", mask8, [C(F, flags: END, mask: (0, 0xFF00_0000), lo: (0, 0x0A00_0000), hi: (0, 0x0A00_0000))]),
            ("NOT_EQUAL", mask8, [C(F, flags: NEG | END, mask: (0, 0xFF00_0000), lo: (0, 0x0A00_0000), hi: (0, 0x0A00_0000))]),
            ("EQUAL", u32("127.0.0.1"), [C(F, 0x7F00_0001, 0x7F00_0001, flags: END)]),
            (
                "EQUAL", "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 192.168.1.0, mask: 255.255.255.0 } }",
                [C(F, flags: END, mask: (0, 0xFFFF_FF00), lo: (0, 0xC0A8_0100), hi: (0, 0xC0A8_0100))]
            ),
            (
                "RANGE", "{ type: FWP_RANGE_TYPE, rangeValue: { valueLow: \(u32("127.0.0.10")), valueHigh: \(u32("127.0.0.20")) } }",
                [C(F, 0x7F00_000A, 0x7F00_0014, flags: END)]
            ),
        ]
        for (match, value, expected) in cases {
            let (image, _, _) = try compileYAML(oneFilter([cond("IP_REMOTE_ADDRESS", match, value)]))
            expectConds(try onlyRule(image), expected)
        }
        let r = try onlyRule(try compileYAML(oneFilter([cond("IP_REMOTE_ADDRESS", "EQUAL", mask8)])).image)
        #expect(KernelEval.rule(r, [F.rawValue: (0, 0x0AFF_FFFF)]) && !KernelEval.rule(r, [F.rawValue: (0, 0x0B00_0000)]))
    }

    @Test("IPv6 prefixes: /8, /64, /72, /128, /0")
    func v6Prefixes() throws {
        let F = LFP_FIELD_IP_REMOTE_ADDRESS
        func v6(_ a: String, _ p: Int) -> String { "{ type: FWP_V6_ADDR_MASK, v6AddrMask: { addr: '\(a)', prefixLength: \(p) } }" }
        let addr = "fd12:3456:789a:bcde:f012:3456:789a:bcde"
        let (ah, al): (UInt64, UInt64) = (0xfd12_3456_789a_bcde, 0xf012_3456_789a_bcde)
        let cases: [(Int, (UInt64, UInt64))] = [
            (8, (0xFF00_0000_0000_0000, 0)), (64, (allOnes, 0)), (72, (allOnes, 0xFF00_0000_0000_0000)),
            (128, (allOnes, allOnes)), (0, (0, 0)),
        ]
        for (p, m) in cases {
            let (image, _, _) = try compileYAML(
                oneFilter(
                    [cond("IP_REMOTE_ADDRESS", "EQUAL", v6(addr, p))],
                    layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V6"))
            let v = (ah & m.0, al & m.1)
            expectConds(try onlyRule(image, .authConnectV6), [C(F, flags: END, mask: m, lo: v, hi: v)])
        }
        let (image, _, _) = try compileYAML(
            oneFilter(
                [cond("IP_REMOTE_ADDRESS", "NOT_EQUAL", v6("::1", 128))],
                layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V6"))
        expectConds(try onlyRule(image, .authConnectV6), [C(F, flags: NEG | END, lo: (0, 1), hi: (0, 1))])
    }

    @Test("GREATER than the 128-bit maximum compiles to a test nothing passes")
    func greaterAtMax() throws {
        let maxV6 = "{ type: FWP_BYTE_ARRAY16_TYPE, byteArray16: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' }"
        let (image, _, _) = try compileYAML(
            oneFilter(
                [cond("IP_REMOTE_ADDRESS", "GREATER", maxV6)],
                layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V6"))
        let r = try onlyRule(image, .authConnectV6)
        expectConds(r, [C(LFP_FIELD_IP_REMOTE_ADDRESS, flags: END, mask: (0, 0), lo: (0, 1), hi: (0, 0))])
        for v: (UInt64, UInt64) in [(0, 0), (allOnes, allOnes), (1, 2)] {
            #expect(!KernelEval.rule(r, [LFP_FIELD_IP_REMOTE_ADDRESS.rawValue: v]))
        }
        // GREATER_OR_EQUAL the maximum is an exact test of it
        let (ge, _, _) = try compileYAML(
            oneFilter(
                [cond("IP_REMOTE_ADDRESS", "GREATER_OR_EQUAL", maxV6)],
                layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V6"))
        expectConds(
            try onlyRule(ge, .authConnectV6),
            [C(LFP_FIELD_IP_REMOTE_ADDRESS, flags: END, lo: (allOnes, allOnes), hi: (allOnes, allOnes))])
    }

    @Test("FLAGS_ALL_SET, FLAGS_ANY_SET, FLAGS_NONE_SET")
    func flagMatches() throws {
        let F = LFP_FIELD_FLAGS
        let v = u32("FWP_CONDITION_FLAG_IS_LOOPBACK|FWP_CONDITION_FLAG_IS_REAUTHORIZE")  // 0x5
        let cases: [(String, [C])] = [
            ("FLAGS_ALL_SET", [C(F, flags: END, mask: (0, 5), lo: (0, 5), hi: (0, 5))]),
            ("FLAGS_ANY_SET", [C(F, flags: NEG | END, mask: (0, 5), lo: (0, 0), hi: (0, 0))]),
            ("FLAGS_NONE_SET", [C(F, flags: END, mask: (0, 5), lo: (0, 0), hi: (0, 0))]),
        ]
        var rules: [String: lfp_rule] = [:]
        for (match, expected) in cases {
            let r = try onlyRule(try compileYAML(oneFilter([cond("FLAGS", match, v)])).image)
            expectConds(r, expected)
            rules[match] = r
        }
        let truth: [(UInt64, [String: Bool])] = [
            (0x0, ["FLAGS_ALL_SET": false, "FLAGS_ANY_SET": false, "FLAGS_NONE_SET": true]),
            (0x1, ["FLAGS_ALL_SET": false, "FLAGS_ANY_SET": true, "FLAGS_NONE_SET": false]),
            (0x5, ["FLAGS_ALL_SET": true, "FLAGS_ANY_SET": true, "FLAGS_NONE_SET": false]),
            (0x1D, ["FLAGS_ALL_SET": true, "FLAGS_ANY_SET": true, "FLAGS_NONE_SET": false]),
            (0x18, ["FLAGS_ALL_SET": false, "FLAGS_ANY_SET": false, "FLAGS_NONE_SET": true]),
        ]
        for (flags, want) in truth {
            for (m, w) in want { #expect(KernelEval.rule(rules[m]!, [F.rawValue: (0, flags)]) == w, "\(m) on 0x\(String(flags, radix: 16))") }
        }
    }

    @Test("EQUAL FWP_EMPTY -> LFP_COND_MATCH_EMPTY; NOT_EQUAL FWP_EMPTY is refused")
    func emptyValues() throws {
        let r = try onlyRule(try compileYAML(oneFilter([cond("IP_LOCAL_ADDRESS", "EQUAL", "{ type: FWP_EMPTY }")])).image)
        expectConds(r, [C(LFP_FIELD_IP_LOCAL_ADDRESS, flags: LFP_COND_MATCH_EMPTY | END, mask: (0, 0), lo: (0, 0), hi: (0, 0))])
        #expect(KernelEval.rule(r, [:]))
        #expect(!KernelEval.rule(r, [LFP_FIELD_IP_LOCAL_ADDRESS.rawValue: (0, 0)]))
        #expect {
            try compileYAML(oneFilter([cond("IP_LOCAL_ADDRESS", "NOT_EQUAL", "{ type: FWP_EMPTY }")], name: "ne-empty"))
        } throws: { e in
            guard let e = e as? CompileError else { return false }
            return e.message.contains("ne-empty") && e.message.contains("FWPM_CONDITION_IP_LOCAL_ADDRESS")
        }
    }

    @Test("conditions on one field form one OR group, even when not adjacent; groups AND")
    func grouping() throws {
        let r = try onlyRule(
            try compileYAML(
                oneFilter([
                    cond("IP_REMOTE_PORT", "EQUAL", u16(22)),
                    cond("IP_REMOTE_ADDRESS", "EQUAL", u32("127.0.0.1")),
                    cond("IP_REMOTE_PORT", "EQUAL", u16(80)),
                    cond("IP_PROTOCOL", "EQUAL", "{ type: FWP_UINT8, uint8: 6 }"),
                    cond("IP_REMOTE_PORT", "RANGE", portRange(8000, 8080)),
                    cond("IP_REMOTE_ADDRESS", "EQUAL", u32("127.0.0.2")),
                ])
            ).image)
        let P = LFP_FIELD_IP_REMOTE_PORT, A = LFP_FIELD_IP_REMOTE_ADDRESS
        expectConds(
            r,
            [
                C(P, 22, 22), C(P, 80, 80), C(P, 8000, 8080, flags: END),
                C(A, 0x7F00_0001, 0x7F00_0001), C(A, 0x7F00_0002, 0x7F00_0002, flags: END),
                C(LFP_FIELD_IP_PROTOCOL, 6, 6, flags: END),
            ])
        func v(_ p: UInt64, _ a: UInt64, _ proto: UInt64) -> KernelEval.Values {
            [P.rawValue: (0, p), A.rawValue: (0, a), LFP_FIELD_IP_PROTOCOL.rawValue: (0, proto)]
        }
        #expect(KernelEval.rule(r, v(80, 0x7F00_0002, 6)))
        #expect(KernelEval.rule(r, v(8050, 0x7F00_0001, 6)))
        #expect(!KernelEval.rule(r, v(81, 0x7F00_0001, 6)))
        #expect(!KernelEval.rule(r, v(22, 0x7F00_0003, 6)))
        #expect(!KernelEval.rule(r, v(22, 0x7F00_0001, 17)))
    }

    // MARK: ALE_USER_ID, workloads

    @Test("ALE_USER_ID security descriptor -> uid/gid tests (allow, deny, everyone)")
    func userIdDescriptors() throws {
        func rule(_ sddl: String) throws -> lfp_rule {
            try onlyRule(
                try compileYAML(
                    oneFilter([
                        cond(
                            "ALE_USER_ID", "EQUAL",
                            "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: '\(sddl)' }")
                    ])
                ).image)
        }
        let U = LFP_FIELD_UID, G = LFP_FIELD_GID
        let never = C(U, flags: END, mask: (0, 0), lo: (0, 1), hi: (0, 0))
        // deny ACEs: one NOT-EQUAL group each (sorted), then one OR group of the allows (uids, then gids)
        let full = try rule("D:(A;;CC;;;S-1-22-2-100)(D;;CC;;;S-1-22-1-5)(A;;CC;;;S-1-22-1-1000)(A;;CC;;;S-1-22-1-7)(D;;CC;;;S-1-22-2-9)")
        expectConds(
            full,
            [
                C(U, 5, 5, flags: NEG | END), C(G, 9, 9, flags: NEG | END),
                C(U, 7, 7), C(U, 1000, 1000), C(G, 100, 100, flags: END),
            ])
        func ug(_ u: UInt64, _ g: UInt64) -> KernelEval.Values { [U.rawValue: (0, u), G.rawValue: (0, g)] }
        #expect(KernelEval.rule(full, ug(1000, 0)) && KernelEval.rule(full, ug(4242, 100)))
        #expect(!KernelEval.rule(full, ug(5, 100)) && !KernelEval.rule(full, ug(1000, 9)) && !KernelEval.rule(full, ug(4242, 0)))
        // allow everyone: no test at all
        #expect(try rule("D:(A;;CC;;;WD)").ncond == 0)
        #expect(try rule("O:SYG:SY").ncond == 0, "a NULL DACL grants everyone")
        // everyone but some: only the deny groups
        expectConds(
            try rule("D:(D;;CC;;;S-1-22-1-5)(A;;CC;;;WD)(D;;CC;;;S-1-22-2-9)"),
            [C(U, 5, 5, flags: NEG | END), C(G, 9, 9, flags: NEG | END)])
        // nobody: a test nothing passes
        expectConds(try rule("D:(D;;CC;;;WD)(A;;CC;;;S-1-22-1-0)"), [never])
        expectConds(try rule("D:"), [never])
        // SY is uid 0
        expectConds(try rule("D:(A;;CC;;;SY)"), [C(U, 0, 0, flags: END)])
        // with another field: the descriptor's groups are ANDed with it
        let both = try onlyRule(
            try compileYAML(
                oneFilter([
                    cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: 'D:(A;;CC;;;WD)' }"),
                    cond("IP_REMOTE_PORT", "EQUAL", u16(53)),
                ])
            ).image)
        expectConds(both, [C(LFP_FIELD_IP_REMOTE_PORT, 53, 53, flags: END)])
    }

    @Test("LFP_CONDITION_WORKLOAD -> FNV-1a id of the name")
    func workloads() throws {
        #expect(workloadID("") == 2_166_136_261)
        #expect(workloadID("a") == 0xE40C_292C)
        #expect(workloadID("foobar") == 0xBF9C_F968)
        let r = try onlyRule(
            try compileYAML(
                oneFilter([
                    "{ fieldKey: LFP_CONDITION_WORKLOAD, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: web-frontend } }"
                ])
            ).image)
        let id = UInt64(workloadID("web-frontend"))
        expectConds(r, [C(LFP_FIELD_WORKLOAD, id, id, flags: END)])
        let ne = try onlyRule(
            try compileYAML(
                oneFilter([
                    "{ fieldKey: LFP_CONDITION_WORKLOAD, matchType: FWP_MATCH_NOT_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: db } }"
                ])
            ).image)
        let db = UInt64(workloadID("db"))
        expectConds(ne, [C(LFP_FIELD_WORKLOAD, db, db, flags: NEG | END)])
    }

    @Test("LFP_CONDITION_UID / GID / CGROUP_ID and IP_LOCAL_PORT at RESOURCE_ASSIGNMENT")
    func linuxFields() throws {
        let r = try onlyRule(
            try compileYAML(
                oneFilter(
                    [
                        "{ fieldKey: LFP_CONDITION_UID, matchType: FWP_MATCH_EQUAL, conditionValue: \(u32("1000")) }",
                        "{ fieldKey: LFP_CONDITION_GID, matchType: FWP_MATCH_GREATER_OR_EQUAL, conditionValue: \(u32("100")) }",
                        "{ fieldKey: LFP_CONDITION_CGROUP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT64, uint64: 0xFFFFFFFFFFFFFFFF } }",
                        cond("IP_LOCAL_PORT", "LESS_OR_EQUAL", u16(1023)),
                    ], layer: "FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4")
            ).image, .resourceAssignmentV4)
        expectConds(
            r,
            [
                C(LFP_FIELD_UID, 1000, 1000, flags: END),
                C(LFP_FIELD_GID, flags: END, lo: (0, 100), hi: (allOnes, allOnes)),
                C(LFP_FIELD_CGROUP_ID, allOnes, allOnes, flags: END),
                C(LFP_FIELD_IP_LOCAL_PORT, 0, 1023, flags: END),
            ])
    }

    @Test("IP_LOCAL_ADDRESS_TYPE, IP_DESTINATION_ADDRESS_TYPE, IP_LOCAL_INTERFACE -> kernel fields 11, 12, 13")
    func addressTypesAndInterface() throws {
        let u8 = { (v: Int) in "{ type: FWP_UINT8, uint8: \(v) }" }
        let u64 = { (v: Int) in "{ type: FWP_UINT64, uint64: \(v) }" }
        let r = try onlyRule(
            try compileYAML(
                oneFilter([
                    cond("IP_DESTINATION_ADDRESS_TYPE", "EQUAL", u8(3)),
                    cond("IP_DESTINATION_ADDRESS_TYPE", "EQUAL", u8(4)),
                    cond("IP_LOCAL_ADDRESS_TYPE", "NOT_EQUAL", u8(0)),
                    cond("IP_LOCAL_INTERFACE", "EQUAL", u64(1)),
                ])
            ).image)
        expectConds(
            r,
            [
                C(LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE, 3, 3),
                C(LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE, 4, 4, flags: END),
                C(LFP_FIELD_IP_LOCAL_ADDRESS_TYPE, 0, 0, flags: NEG | END),
                C(LFP_FIELD_IP_LOCAL_INTERFACE, 1, 1, flags: END),
            ])
        #expect(LFP_FIELD_IP_LOCAL_ADDRESS_TYPE.rawValue == 11 && LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue == 12)
        #expect(LFP_FIELD_IP_LOCAL_INTERFACE.rawValue == 13)
        // FWP_EMPTY (no bound device) is matched by EQUAL FWP_EMPTY, at RESOURCE_ASSIGNMENT and RECV_ACCEPT too
        for layer in ["FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V6", "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4"] {
            let image = try compileYAML(
                oneFilter(
                    [cond("IP_LOCAL_INTERFACE", "EQUAL", "{ type: FWP_EMPTY }"), cond("IP_LOCAL_ADDRESS_TYPE", "EQUAL", u8(3))],
                    layer: layer)
            ).image
            let rule = try onlyRule(image, Layer(name: layer)!)
            expectConds(
                rule,
                [
                    C(LFP_FIELD_IP_LOCAL_INTERFACE, flags: LFP_COND_MATCH_EMPTY | END, mask: (0, 0), lo: (0, 0), hi: (0, 0)),
                    C(LFP_FIELD_IP_LOCAL_ADDRESS_TYPE, 3, 3, flags: END),
                ])
        }
        // the destination's type exists where WFP defines it (AUTH_CONNECT, FLOW_ESTABLISHED) only
        #expect(throws: FWPError.self) {
            try compileYAML(oneFilter([cond("IP_DESTINATION_ADDRESS_TYPE", "EQUAL", u8(3))], layer: "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4"))
        }
    }

    @Test("address types: the model derives them from the addresses as the kernel does")
    func addressTypesModelAgrees() throws {
        let yaml = """
            filters:
              - displayData: { name: to-multicast }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: { type: FWP_UINT64, uint64: 30 }
                filterCondition:
                  - \(cond("IP_DESTINATION_ADDRESS_TYPE", "EQUAL", "{ type: FWP_UINT8, uint8: 3 }"))
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: to-broadcast }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: { type: FWP_UINT64, uint64: 20 }
                filterCondition:
                  - \(cond("IP_DESTINATION_ADDRESS_TYPE", "EQUAL", "{ type: FWP_UINT8, uint8: 4 }"))
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: from-unspecified }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: { type: FWP_UINT64, uint64: 10 }
                filterCondition:
                  - \(cond("IP_LOCAL_ADDRESS_TYPE", "EQUAL", "{ type: FWP_UINT8, uint8: 0 }"))
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: v6-multicast }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V6
                filterCondition:
                  - \(cond("IP_DESTINATION_ADDRESS_TYPE", "GREATER_OR_EQUAL", "{ type: FWP_UINT8, uint8: 3 }"))
                  - \(cond("IP_LOCAL_ADDRESS_TYPE", "EQUAL", "{ type: FWP_EMPTY }"))
                action: { type: FWP_ACTION_BLOCK }
            """
        let (image, bfe, ids) = try compileYAML(yaml)
        // (remote, local or nil, expected deciding filter)
        let v4: [(String, String?, String?)] = [
            ("239.1.2.3", nil, "to-multicast"), ("224.0.0.1", "10.0.0.1", "to-multicast"),
            ("240.0.0.1", nil, nil), ("223.255.255.255", nil, nil),
            ("255.255.255.255", nil, "to-broadcast"), ("10.1.255.255", nil, nil),  // subnet-directed: unicast
            ("127.0.0.1", "0.0.0.0", "from-unspecified"), ("127.0.0.1", "127.0.0.1", nil), ("0.0.0.0", nil, nil),
        ]
        for (remote, local, want) in v4 {
            var a = ["FWPM_CONDITION_IP_REMOTE_ADDRESS=\(remote)"]
            var values: KernelEval.Values = [:]
            let r = try #require(IPText.parseV4(remote))
            values[LFP_FIELD_IP_REMOTE_ADDRESS.rawValue] = (0, UInt64(r))
            values[LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue] = (0, KernelEval.addrType(v4: r))
            if let local {
                a.append("FWPM_CONDITION_IP_LOCAL_ADDRESS=\(local)")
                let l = try #require(IPText.parseV4(local))
                values[LFP_FIELD_IP_LOCAL_ADDRESS.rawValue] = (0, UInt64(l))
                values[LFP_FIELD_IP_LOCAL_ADDRESS_TYPE.rawValue] = (0, KernelEval.addrType(v4: l))
            }
            let model = bfe.classify(layer: .authConnectV4, values: try IncomingValues.parse(layer: .authConnectV4, assignments: a))
            let kernel = KernelEval.classify(image, .authConnectV4, values)
            let id = want.flatMap { ids[$0] } ?? 0
            #expect(model.filterId == id && kernel.filterId == id, "\(remote) from \(local ?? "-"): model \(model.filterId), image \(kernel.filterId)")
        }
        let v6: [(String, String?)] = [
            ("ff02::1", "v6-multicast"), ("ff00::", "v6-multicast"), ("fe80::1", nil), ("::1", nil), ("::", nil), ("::ffff:224.0.0.1", nil),
        ]
        for (remote, want) in v6 {
            let b = try #require(IPText.parseV6(remote))
            let hi = b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }, lo = b[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let values: KernelEval.Values = [
                LFP_FIELD_IP_REMOTE_ADDRESS.rawValue: (hi, lo), LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue: (0, KernelEval.addrType(v6: hi, lo)),
            ]
            let model = bfe.classify(
                layer: .authConnectV6,
                values: try IncomingValues.parse(layer: .authConnectV6, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=\(remote)"]))
            let kernel = KernelEval.classify(image, .authConnectV6, values)
            let id = want.flatMap { ids[$0] } ?? 0
            #expect(model.filterId == id && kernel.filterId == id, "\(remote): model \(model.filterId), image \(kernel.filterId)")
        }
        // a type given explicitly is used as given (`lfp classify --field`)
        let explicit = bfe.classify(
            layer: .authConnectV4,
            values: try IncomingValues.parse(
                layer: .authConnectV4,
                assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=10.0.0.1", "FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE=NlatBroadcast"]))
        #expect(explicit.filterId == ids["to-broadcast"])
    }

    // MARK: limits and refusals

    @Test("too many conditions in one filter -> FWP_E_OUT_OF_BOUNDS naming the filter")
    func tooManyConditions() throws {
        let n = Int(LFP_MAX_CONDS)
        let ok = try onlyRule(try compileYAML(oneFilter((0..<n).map { cond("IP_REMOTE_PORT", "EQUAL", u16(1000 + $0)) })).image)
        #expect(Int(ok.ncond) == n)
        #expect(conds(ok).enumerated().allSatisfy { i, c in (c.flags & UInt8(END) != 0) == (i == n - 1) })
        #expect {
            try compileYAML(oneFilter((0...n).map { cond("IP_REMOTE_PORT", "EQUAL", u16(1000 + $0)) }, name: "wide"))
        } throws: { e in
            guard let e = e as? CompileError else { return false }
            return e.code == .outOfBounds && e.message.contains("'wide'") && e.message.contains("\(n + 1)")
        }
        // a descriptor's deny groups count too
        let aces = (0..<n).map { "(D;;CC;;;S-1-22-1-\($0 + 1))" }.joined() + "(A;;CC;;;WD)"
        #expect {
            try compileYAML(
                oneFilter(
                    [
                        cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: 'D:\(aces)' }"),
                        cond("IP_REMOTE_PORT", "EQUAL", u16(1)),
                    ], name: "acl"))
        } throws: { e in (e as? CompileError)?.code == .outOfBounds }
    }

    @Test("the rule count has no kernel limit of its own: 5,000 filters over two layers compile and classify")
    func manyRules() throws {
        let bfe = BaseFilteringEngine()
        for i in 0..<5000 {
            let layer: Layer = i < 2500 ? .authConnectV4 : .resourceAssignmentV4
            _ = try bfe.addFilter(
                Filter(
                    displayData: DisplayData(name: "f\(i)"), layerKey: layer,
                    weight: .uint64(UInt64(i)), action: FilterAction(type: .permit)))
        }
        let image = try PolicyCompiler.compile(bfe)
        #expect(image.rules(at: .authConnectV4).count == 2500 && image.rules(at: .resourceAssignmentV4).count == 2500)
        let classifier = try PolicyCompiler.buildClassifier(image)
        // Unconditional permits: the first one decides; the diagram is one leaf per layer.
        #expect(classifier.groupsPerLayer[Int(Layer.authConnectV4.kernelID)] >= 1)
        #expect(classifier.leaves <= 4)
    }

    @Test("a field the kernel cannot supply is refused, naming the filter and the field")
    func unsupportedField() throws {
        let yaml = """
            filters:
              - displayData: { name: curl only }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 443 } }
                  - { fieldKey: FWPM_CONDITION_INTERFACE_INDEX, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT32, uint32: 1 } }
                action: { type: FWP_ACTION_BLOCK }
            """
        let bfe = BaseFilteringEngine()
        _ = try bfe.load(try Policy.parse(yaml, sourceName: "t"))  // valid for the model
        #expect {
            try PolicyCompiler.compile(bfe)
        } throws: { e in
            guard let e = e as? CompileError else { return false }
            return e.message.contains("'curl only'") && e.message.contains("FWPM_CONDITION_INTERFACE_INDEX")
                && e.message.contains("not supported by the kernel fast path") && e.code == .invalidParameter
        }
        // ALE_APP_ID is matched by file identity: an executable that does not exist is refused
        #expect {
            try compileYAML(
                oneFilter(
                    [
                        "{ fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: /nonexistent/app } }"
                    ], name: "ghost"))
        } throws: { e in
            guard let e = e as? CompileError else { return false }
            return e.message.contains("'ghost'") && e.message.contains("does not exist")
        }
        // a match type the kernel cannot do on a field it can supply is refused the same way
        #expect {
            try compileYAML(
                oneFilter(
                    [
                        "{ fieldKey: LFP_CONDITION_WORKLOAD, matchType: FWP_MATCH_PREFIX, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: web } }"
                    ], name: "suffix"))
        } throws: { e in
            guard let e = e as? CompileError else { return false }
            return e.message.contains("'suffix'") && e.message.contains("LFP_CONDITION_WORKLOAD")
        }
    }

    // MARK: determinism

    @Test("compiling twice, or the same policy in two engines, gives byte-identical rules")
    func determinism() throws {
        let yaml = """
            sublayers:
              - { subLayerKey: \(SL_LO), displayData: { name: lo }, weight: 0x1000 }
              - { subLayerKey: \(SL_HI), displayData: { name: hi }, weight: 0x9000 }
            filters:
              - displayData: { name: a }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                subLayerKey: \(SL_LO)
                filterCondition:
                  - \(cond("IP_REMOTE_PORT", "RANGE", portRange(1, 1024)))
                  - \(cond("IP_REMOTE_ADDRESS", "EQUAL", "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 127.0.0.0, mask: 255.0.0.0 } }"))
                  - \(cond("IP_REMOTE_PORT", "EQUAL", u16(8080)))
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: b }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                subLayerKey: \(SL_HI)
                flags: [FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT]
                filterCondition:
                  - \(cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: 'D:(A;;CC;;;S-1-22-1-3)(A;;CC;;;S-1-22-1-1)(D;;CC;;;S-1-22-2-4)(D;;CC;;;S-1-22-2-2)' }"))
                action: { type: FWP_ACTION_PERMIT }
              - displayData: { name: c }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V6
                filterCondition:
                  - \(cond("IP_REMOTE_ADDRESS", "EQUAL", "{ type: FWP_V6_ADDR_MASK, v6AddrMask: { addr: 'fd00::1', prefixLength: 8 } }"))
                action: { type: FWP_ACTION_PERMIT }
              - { displayData: { name: d }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_PERMIT } }
            """
        func bytes(_ i: PolicyImage) -> [UInt8] {
            i.rules.withUnsafeBytes { Array($0) } + i.ranges.withUnsafeBytes { Array($0) }
        }
        let (first, bfe, _) = try compileYAML(yaml)
        let again = try PolicyCompiler.compile(bfe)
        let other = try compileYAML(yaml).image
        #expect(!first.rules.isEmpty)
        #expect(bytes(first) == bytes(again))
        #expect(bytes(first) == bytes(other))
        #expect(first.notes == again.notes)
        // every unused condition slot and padding byte is zero
        for r in first.rules {
            withUnsafeBytes(of: r.cond) { raw in
                let used = Int(r.ncond) * MemoryLayout<lfp_cond>.stride
                #expect(raw[used...].allSatisfy { $0 == 0 }, "filter \(r.filter_id): unused condition bytes")
            }
            for c in conds(r) { #expect(withUnsafeBytes(of: c.pad) { $0.allSatisfy { $0 == 0 } }) }
        }
    }

    // MARK: model vs compiled image

    /// Generated policies over the kernel fields, classified by the model and by the compiled
    /// image (KernelEval = classify.h): same action and deciding filter for every probe.
    @Test("generated policies: the compiled image decides like the model")
    func imageAgreesWithModel() throws {
        var rng = SplitMix(seed: 0x1F9A_2024)
        var disagreements: [String] = []
        for round in 0..<40 {
            let yaml = GeneratedPolicy.yaml(&rng, filters: 8)
            let bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.parse(yaml, sourceName: "gen\(round)"))
            let image: PolicyImage
            do {
                image = try PolicyCompiler.compile(bfe)
            } catch let e as CompileError where e.message.contains("FWPM_CONDITION_ALE_USER_ID") {
                continue  // a documented refusal (several descriptors ORed), checked in twoDescriptorsOr
            }
            for _ in 0..<60 {
                let p = GeneratedPolicy.probe(&rng)
                let model = bfe.classify(layer: .authConnectV4, values: try IncomingValues.parse(layer: .authConnectV4, assignments: p.assignments))
                let kernel = KernelEval.classify(image, .authConnectV4, p.values)
                let modelAction = UInt8(model.actionType == .block ? LFP_ACTION_BLOCK.rawValue : LFP_ACTION_PERMIT.rawValue)
                if modelAction != kernel.action || model.filterId != kernel.filterId {
                    disagreements.append(
                        "round \(round) probe \(p.assignments): model \(model.actionType.name) filter \(model.filterId), image action \(kernel.action) filter \(kernel.filterId)\n\(yaml)\n\(model.render())"
                    )
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements; first:\n\(disagreements.first ?? "")")
    }

    /// Two ALE_USER_ID descriptors in one filter OR together (R3.4), like any same-field
    /// conditions. An OR of descriptors with deny ACEs is an OR of conjunctions: the compiler may
    /// expand it (several rules with the filter's id) or refuse it naming the filter and field;
    /// what it must not do is compile it to tests that decide differently from the model.
    @Test("two ALE_USER_ID descriptors in one filter OR together (or are refused)")
    func twoDescriptorsOr() throws {
        let cases: [(String, String)] = [
            ("D:(A;;CC;;;WD)", "D:(A;;CC;;;S-1-22-1-5)"),  // everyone OR uid 5
            ("D:(A;;CC;;;S-1-22-1-7)", "D:(A;;CC;;;S-1-22-2-5)"),  // uid 7 OR gid 5
            ("D:(D;;CC;;;WD)", "D:(A;;CC;;;S-1-22-1-5)"),  // nobody OR uid 5
            ("D:(D;;CC;;;S-1-22-1-5)(A;;CC;;;S-1-22-1-1000)", "D:(A;;CC;;;S-1-22-1-5)"),  // (1000, not 5) OR 5
            ("D:(D;;CC;;;S-1-22-1-5)(D;;CC;;;S-1-22-1-6)(A;;CC;;;WD)", "D:(A;;CC;;;S-1-22-1-5)"),  // (not 5, not 6) OR 5
        ]
        for (a, b) in cases {
            let yaml = oneFilter(
                [
                    cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: '\(a)' }"),
                    cond("IP_REMOTE_PORT", "EQUAL", u16(53)),
                    cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: '\(b)' }"),
                ], name: "two-sd")
            let bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.parse(yaml, sourceName: "t"))
            let image: PolicyImage
            do {
                image = try PolicyCompiler.compile(bfe)
            } catch let e as CompileError {
                #expect(e.message.contains("'two-sd'") && e.message.contains("FWPM_CONDITION_ALE_USER_ID"), "\(e)")
                continue
            }
            let rules = image.rules(at: .authConnectV4)
            let id = try #require(try bfe.filters().first?.filterId)
            #expect(!rules.isEmpty && rules.allSatisfy { $0.filter_id == id })
            for uid: UInt32 in [0, 5, 6, 7, 1000] {
                for gid: UInt32 in [0, 5] {
                    for port: UInt16 in [53, 54] {
                        let model = bfe.classify(
                            layer: .authConnectV4,
                            values: IncomingValues([
                                .aleUserId: .token(UserToken(uid: uid, gids: [gid])), .lfpUid: .uint32(uid), .lfpGid: .uint32(gid),
                                .ipRemotePort: .uint16(port),
                            ]))
                        let kernel = KernelEval.classify(
                            image, .authConnectV4,
                            [
                                LFP_FIELD_UID.rawValue: (0, UInt64(uid)), LFP_FIELD_GID.rawValue: (0, UInt64(gid)),
                                LFP_FIELD_IP_REMOTE_PORT.rawValue: (0, UInt64(port)),
                            ])
                        let modelBlocks = model.actionType == .block
                        #expect(
                            modelBlocks == (kernel.action == UInt8(LFP_ACTION_BLOCK.rawValue)) && model.filterId == kernel.filterId,
                            "\(a) OR \(b), uid \(uid) gid \(gid) port \(port): model \(model.actionType.name) filter \(model.filterId), compiled action \(kernel.action) filter \(kernel.filterId); rules \(rules.map { conds($0).map(C.init) })"
                        )
                    }
                }
            }
        }
    }
}

// MARK: - Generated policies (shared shape with the kernel differential test, but pure)

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bool() -> Bool { next() & 1 == 0 }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
}

enum GeneratedPolicy {
    static let ports: [UInt16] = [0, 1, 22, 23, 79, 80, 81, 443, 1023, 1024, 8080, 65534, 65535]
    static let uids: [UInt32] = [0, 5, 1000]
    static let addrs: [UInt32] = [0x7F00_0001, 0x7F00_0002, 0x7F01_0001, 0x0A00_0001, 0xC0A8_0101, 0xEF01_0203, 0xFFFF_FFFF]
    static let interfaces: [UInt64] = [1, 2, 7]

    static func ip(_ a: UInt32) -> String { "\(a >> 24).\((a >> 16) & 255).\((a >> 8) & 255).\(a & 255)" }

    static func condition(_ rng: inout SplitMix) -> String {
        switch rng.int(9) {
        case 7:
            return cond(
                "IP_DESTINATION_ADDRESS_TYPE", rng.pick(["EQUAL", "NOT_EQUAL", "GREATER_OR_EQUAL"]), "{ type: FWP_UINT8, uint8: \(rng.pick([1, 3, 4])) }")
        case 8:
            if rng.int(4) == 0 { return cond("IP_LOCAL_INTERFACE", "EQUAL", "{ type: FWP_EMPTY }") }
            return cond("IP_LOCAL_INTERFACE", rng.pick(["EQUAL", "NOT_EQUAL"]), "{ type: FWP_UINT64, uint64: \(rng.pick(interfaces)) }")
        case 0:
            let m = rng.pick(["EQUAL", "NOT_EQUAL", "GREATER", "LESS", "GREATER_OR_EQUAL", "LESS_OR_EQUAL"])
            return cond("IP_REMOTE_PORT", m, u16(Int(rng.pick(ports))))
        case 1:
            let a = rng.pick(ports), b = rng.pick(ports)
            return cond("IP_REMOTE_PORT", "RANGE", portRange(Int(min(a, b)), Int(max(a, b))))
        case 2:
            let mask = rng.pick(["255.0.0.0", "255.255.0.0", "255.255.255.255", "0.0.0.0"])
            return cond(
                "IP_REMOTE_ADDRESS", rng.bool() ? "EQUAL" : "NOT_EQUAL",
                "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: \(ip(rng.pick(addrs))), mask: \(mask) } }")
        case 3:
            return cond("IP_PROTOCOL", "EQUAL", "{ type: FWP_UINT8, uint8: \(rng.pick([6, 17])) }")
        case 4:
            return cond(
                "FLAGS", rng.pick(["FLAGS_ALL_SET", "FLAGS_ANY_SET", "FLAGS_NONE_SET"]),
                u32(rng.pick(["1", "5", "0x18"])))
        case 5:
            let u = rng.pick(uids), g = rng.pick(uids)
            let sddl = rng.pick([
                "D:(A;;CC;;;S-1-22-1-\(u))", "D:(D;;CC;;;S-1-22-1-\(u))(A;;CC;;;WD)",
                "D:(A;;CC;;;S-1-22-2-\(g))(D;;CC;;;S-1-22-1-\(u))", "D:(A;;CC;;;WD)",
            ])
            return cond("ALE_USER_ID", "EQUAL", "{ type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: '\(sddl)' }")
        default:
            return cond("IP_LOCAL_PORT", "EQUAL", rng.bool() ? "{ type: FWP_EMPTY }" : u16(Int(rng.pick(ports))))
        }
    }

    static func yaml(_ rng: inout SplitMix, filters: Int) -> String {
        var y = """
            sublayers:
              - { subLayerKey: \(SL_HI), displayData: { name: hi }, weight: 0xC000 }
              - { subLayerKey: \(SL_LO), displayData: { name: lo }, weight: 0x2000 }
            filters:

            """
        for i in 0..<filters {
            let sub = rng.pick([SL_HI, SL_LO, "00000000-0000-0000-0000-000000000000"])
            let weight = rng.pick([
                "{ type: FWP_UINT64, uint64: \(rng.int(4)) }", "{ type: FWP_EMPTY }",
                "{ type: FWP_UINT8, uint8: \(rng.int(16)) }",
            ])
            var flags: [String] = []
            if rng.int(3) == 0 { flags.append("FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT") }
            y += "  - displayData: { name: f\(i) }\n"
            y += "    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4\n"
            y += "    subLayerKey: \(sub)\n"
            y += "    weight: \(weight)\n"
            if !flags.isEmpty { y += "    flags: [\(flags.joined(separator: ", "))]\n" }
            y += "    action: { type: \(rng.bool() ? "FWP_ACTION_PERMIT" : "FWP_ACTION_BLOCK") }\n"
            let cs = (0..<rng.int(4)).map { _ in condition(&rng) }
            if !cs.isEmpty {
                y += "    filterCondition:\n"
                for c in cs { y += "      - \(c)\n" }
            }
        }
        return y
    }

    struct Probe { var assignments: [String]; var values: KernelEval.Values }

    static func probe(_ rng: inout SplitMix) -> Probe {
        let port = rng.bool() ? rng.pick(ports) : UInt16(rng.int(65536))
        let addr = rng.pick(addrs)
        let proto: UInt8 = rng.pick([6, 17])
        let flags: UInt32 = rng.pick([0, 1, 4, 5, 0x10, 0x19])
        let uid = rng.pick(uids), gid = rng.pick(uids)
        let local: UInt16? = rng.bool() ? nil : rng.pick(ports)
        var a = [
            "FWPM_CONDITION_IP_REMOTE_PORT=\(port)", "FWPM_CONDITION_IP_REMOTE_ADDRESS=\(ip(addr))",
            "FWPM_CONDITION_IP_PROTOCOL=\(proto)", "FWPM_CONDITION_FLAGS=\(flags)",
            "FWPM_CONDITION_ALE_USER_ID=\(uid):\(gid)", "LFP_CONDITION_UID=\(uid)", "LFP_CONDITION_GID=\(gid)",
        ]
        var v: KernelEval.Values = [
            LFP_FIELD_IP_REMOTE_PORT.rawValue: (0, UInt64(port)), LFP_FIELD_IP_REMOTE_ADDRESS.rawValue: (0, UInt64(addr)),
            LFP_FIELD_IP_PROTOCOL.rawValue: (0, UInt64(proto)), LFP_FIELD_FLAGS.rawValue: (0, UInt64(flags)),
            LFP_FIELD_UID.rawValue: (0, UInt64(uid)), LFP_FIELD_GID.rawValue: (0, UInt64(gid)),
        ]
        if let local {
            a.append("FWPM_CONDITION_IP_LOCAL_PORT=\(local)")
            v[LFP_FIELD_IP_LOCAL_PORT.rawValue] = (0, UInt64(local))
        }
        // the destination's type is not given: the model derives it from the address
        v[LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue] = (0, KernelEval.addrType(v4: addr))
        if rng.bool() {
            let ifindex = rng.pick(interfaces + [3])
            a.append("FWPM_CONDITION_IP_LOCAL_INTERFACE=\(ifindex)")
            v[LFP_FIELD_IP_LOCAL_INTERFACE.rawValue] = (0, ifindex)
        }
        return Probe(assignments: a, values: v)
    }
}
