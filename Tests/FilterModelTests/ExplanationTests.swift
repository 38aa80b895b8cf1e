import Foundation
import Testing

@testable import FilterModel

/// `lfp classify` explains itself in WFP's terms: weights in hex (FWP_UINT8 weights with their
/// range), the `right W->-` notation explained under the trace, and for every filter that did
/// not match, the condition that failed and the incoming value it met.
@Suite("Classify explanations")
struct ExplanationTests {
    static let policy = """
        filters:
          - displayData: { name: ssh }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            weight: { type: FWP_UINT64, uint64: 100 }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 22 } }
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 2222 } }
            action: { type: FWP_ACTION_BLOCK }
          - displayData: { name: lan }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            weight: { type: FWP_UINT8, uint8: 3 }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 80 } }
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 10.0.0.0, mask: 255.0.0.0 } } }
            action: { type: FWP_ACTION_BLOCK }
          - displayData: { name: web }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            weight: { type: FWP_UINT64, uint64: 7 }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 80 } }
            action: { type: FWP_ACTION_PERMIT }
        """

    func classify() throws -> ClassifyResult {
        let bfe = BaseFilteringEngine()
        try bfe.load(try Policy.parse(Self.policy))
        return bfe.classify(
            layer: .authConnectV4,
            values: try IncomingValues.parse(
                layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=80", "FWPM_CONDITION_IP_REMOTE_ADDRESS=192.168.1.5"]))
    }

    @Test("weights in hex; an FWP_UINT8 weight shows its range and index")
    func weights() throws {
        let text = try classify().render()
        #expect(text.contains("'ssh' w=0x0000000000000064 "), "\(text)")
        #expect(text.contains("'web' w=0x0000000000000007 "), "\(text)")
        #expect(
            text.contains("FWP_UINT8 weight 3: range 3 of 0-15, 0x3000000000000000-0x3fffffffffffffff, auto-weight 0x"), "\(text)")
    }

    @Test("every filter that did not match names the failing field, its condition and the incoming value")
    func failures() throws {
        let r = try classify()
        #expect(r.actionType == .permit && r.filterName == "web")
        let missed = r.trace.flatMap(\.entries).filter { $0.outcome == .notMatched }
        #expect(missed.map(\.filterName).sorted() == ["lan", "ssh"])
        for e in missed { #expect(e.failedCondition != nil, "\(e.filterName)") }
        let text = r.render()
        #expect(
            text.contains("FWPM_CONDITION_IP_REMOTE_PORT FWP_MATCH_EQUAL 22 (and 1 more on that field, ORed) failed: incoming 80"), "\(text)")
        // The port matched; the address is what ruled 'lan' out.
        #expect(text.contains("FWPM_CONDITION_IP_REMOTE_ADDRESS FWP_MATCH_EQUAL 10.0.0.0/255.0.0.0 failed: incoming 192.168.1.5"), "\(text)")
        let obj = try JSONSerialization.jsonObject(with: Data(r.jsonString().utf8)) as! [String: Any]
        let entries = (obj["trace"] as! [[String: Any]]).flatMap { $0["entries"] as! [[String: Any]] }
        let ssh = try #require(entries.first { $0["filterName"] as? String == "ssh" })
        let failed = try #require(ssh["failedCondition"] as? [String: Any])
        #expect(failed["incomingValue"] as? String == "80" && failed["fieldKey"] as? String == "FWPM_CONDITION_IP_REMOTE_PORT")
        #expect(ssh["effectiveWeightHex"] as? String == "0x0000000000000064")
        #expect(entries.first { $0["filterName"] as? String == "lan" }?["weightRange"] as? Int == 3)
    }

    @Test("the output explains the right W->- notation")
    func legend() throws {
        let text = try classify().render()
        #expect(text.contains("right W->-  FWPS_RIGHT_ACTION_WRITE before -> after this filter"), "\(text)")
    }
}
