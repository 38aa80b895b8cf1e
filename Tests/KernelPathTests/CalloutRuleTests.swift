import FilterEngine
import FilterModel
import Foundation
import Testing

/// Filters that name a callout no one registered follow WFP's rules in the kernel, at full
/// speed (R5.6, R1.15; reference cases C21, C22a/b): a terminating or unknown callout blocks,
/// unless FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED makes it a soft permit that a lower
/// sublayer may still override; an inspection callout is ignored. Real sockets; the model's
/// arbitration agrees on every probe.
@Suite("Unregistered callouts in the kernel", .serialized)
struct CalloutRuleTests {
    static let policy = """
        providers:
          - { providerKey: eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee, displayData: { name: P } }
        sublayers:
          - { subLayerKey: 11111111-1111-4111-8111-111111111111, displayData: { name: HI }, providerKey: eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee, weight: 0x8000 }
          - { subLayerKey: 33333333-3333-4333-8333-333333333333, displayData: { name: LO }, providerKey: eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee, weight: 0x1000 }
        callouts:
          - { calloutKey: 55555555-5555-4555-8555-555555555555, displayData: { name: CT }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }
          - { calloutKey: 44444444-4444-4444-8444-444444444444, displayData: { name: CI }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }
          - { calloutKey: 66666666-6666-4666-8666-666666666666, displayData: { name: CU }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }
        filters:
        %@
        """

    static func filter(_ name: String, port: UInt16, sublayer: String, weight: Int, action: String, callout: String? = nil, flags: [String] = [])
        -> String
    {
        """
          - displayData: { name: \(name) }
            flags: [\(flags.joined(separator: ", "))]
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            subLayerKey: \(sublayer)
            weight: { type: FWP_UINT64, uint64: \(weight) }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
            action: { type: \(action)\(callout.map { ", calloutKey: \($0)" } ?? "") }
        """
    }

    @Test("terminating and unknown block, PERMIT_IF_CALLOUT_UNREGISTERED is a soft permit, inspection is ignored")
    func unregisteredCallouts() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("w")
        let l = try (0..<6).map { _ in try Listener() }
        let hi = "11111111-1111-4111-8111-111111111111", lo = "33333333-3333-4333-8333-333333333333"
        let ct = "55555555-5555-4555-8555-555555555555", ci = "44444444-4444-4444-8444-444444444444"
        let cu = "66666666-6666-4666-8666-666666666666"
        let permitIf = ["FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED"]
        let filters = [
            // 0: a terminating callout alone: blocks.
            Self.filter("terminating", port: l[0].port, sublayer: hi, weight: 10, action: "FWP_ACTION_CALLOUT_TERMINATING", callout: ct),
            // 1: an unknown callout alone: blocks.
            Self.filter("unknown", port: l[1].port, sublayer: hi, weight: 10, action: "FWP_ACTION_CALLOUT_UNKNOWN", callout: cu),
            // 2: PERMIT_IF_CALLOUT_UNREGISTERED alone: permits.
            Self.filter("fail-open", port: l[2].port, sublayer: hi, weight: 10, action: "FWP_ACTION_CALLOUT_TERMINATING", callout: ct, flags: permitIf),
            // 3: ... a soft permit: a lower sublayer's block still wins (C22a).
            Self.filter("fail-open-soft", port: l[3].port, sublayer: hi, weight: 10, action: "FWP_ACTION_CALLOUT_TERMINATING", callout: ct, flags: permitIf),
            Self.filter("lower-block", port: l[3].port, sublayer: lo, weight: 10, action: "FWP_ACTION_BLOCK"),
            // 4: an inspection callout is ignored: the next filter decides (permit here).
            Self.filter("inspect", port: l[4].port, sublayer: hi, weight: 100, action: "FWP_ACTION_CALLOUT_INSPECTION", callout: ci),
            Self.filter("after-inspect", port: l[4].port, sublayer: hi, weight: 10, action: "FWP_ACTION_PERMIT"),
            // 5: ... and block when the next filter blocks.
            Self.filter("inspect-2", port: l[5].port, sublayer: hi, weight: 100, action: "FWP_ACTION_CALLOUT_INSPECTION", callout: ci),
            Self.filter("after-inspect-2", port: l[5].port, sublayer: hi, weight: 10, action: "FWP_ACTION_BLOCK"),
        ]
        let ids = try fx.commit(String(format: Self.policy, filters.joined(separator: "\n")))
        let expected: [(blocked: Bool, by: String)] = [
            (true, "terminating"), (true, "unknown"), (false, "fail-open"), (true, "lower-block"), (false, "after-inspect"),
            (true, "after-inspect-2"),
        ]
        let model = try fx.engine.committedEngine()
        let sub = try fx.engine.subscribe()
        defer { sub.cancel() }
        for (i, e) in expected.enumerated() {
            let r = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l[i].port)]])
            #expect((r[0].errno == EPERM) == e.blocked, "probe \(i): kernel \(r[0])")
            let values = try IncomingValues.parse(
                layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=\(l[i].port)", "FWPM_CONDITION_IP_PROTOCOL=6"])
            let verdict = model.classify(layer: .authConnectV4, values: values)
            #expect((verdict.actionType == .block) == e.blocked, "probe \(i): model \(verdict.actionType)")
            #expect(verdict.filterId == ids[e.by], "probe \(i): decided by \(verdict.filterId), expected \(e.by)")
        }
        // The kernel's events name the same deciding filters.
        let ports = Set(l.map(\.port))
        let events = await fx.collect(sub) { evs in
            Set(evs.filter { $0.layer == .authConnectV4 }.compactMap(\.remotePort)).isSuperset(of: ports)
        }
        for (i, e) in expected.enumerated() {
            let ev = events.first { $0.layer == .authConnectV4 && $0.remotePort == l[i].port }
            #expect(ev?.filterId == ids[e.by], "probe \(i): the kernel's event names filter \(ev?.filterId ?? 0)")
        }
    }
}
