// Vocabulary, values, policy files, incoming values, weights, arbitration details, output.

import Foundation
import Testing
import Yams

@testable import FilterModel

@Suite("Vocabulary")
struct VocabularyTests {
    @Test func layers() {
        #expect(Layer.allCases.count == 14)
        for l in Layer.allCases {
            #expect(Layer(name: l.name) == l)
            #expect(Layer(name: l.guid.uuidString) == l)
            #expect(Layer(name: l.guid.uuidString.lowercased()) == l)
            #expect(Layer(name: l.name.lowercased()) == l)
            #expect(l.isV6 == l.name.hasSuffix("_V6"))
        }
        #expect(Layer.authConnectV4.guid.uuidString.lowercased() == "c38d57d1-05a7-4c33-904f-7fbceee60e82")
        #expect(Layer(name: "FWPM_LAYER_OUTBOUND_TRANSPORT_V4") == nil)
        #expect(Set(Layer.allCases.map(\.guid)).count == 14)
    }

    @Test func fields() {
        #expect(ConditionField(name: "FWPM_CONDITION_ICMP_TYPE") == .ipLocalPort)
        #expect(ConditionField(name: "FWPM_CONDITION_ICMP_CODE") == .ipRemotePort)
        #expect(ConditionField(name: "ip_remote_port") == .ipRemotePort)
        #expect(ConditionField(name: "b235ae9a-1d64-49b8-a44c-5ff3d9095045") == .ipRemoteAddress)
        #expect(Set(ConditionField.allCases.map(\.guid)).count == ConditionField.allCases.count)
        #expect(!ConditionField.ipProtocol.isAvailable(at: .authListenV4))
        #expect(!ConditionField.ipRemoteAddress.isAvailable(at: .resourceAssignmentV6))
        #expect(ConditionField.ipRemoteAddress.isAvailable(at: .endpointClosureV4))
        #expect(ConditionField.peerName.isAvailable(at: .authConnectV6))
        #expect(!ConditionField.peerName.isAvailable(at: .authRecvAcceptV4))
        for l in Layer.allCases {
            for f in [ConditionField.lfpUid, .lfpGid, .lfpCgroupId, .lfpWorkload, .aleAppId, .aleUserId, .flags] {
                #expect(f.isAvailable(at: l))
            }
        }
        #expect(ConditionField.ipRemoteAddress.dataType(at: .authConnectV6) == .byteArray16)
        #expect(!ConditionField.compartmentId.linuxSource.isSupported)
        #expect(MatchType(name: "FWP_MATCH_EQUALS") == nil)
        #expect(MatchType.notPrefix.rawValue == 12)
        #expect(ActionType.calloutTerminating.rawValue == 0x5003)
        #expect(ActionType(name: "FWP_ACTION_PERMIT") == .permit)
    }

    @Test("Text values: IPv4/IPv6, numbers, flag names")
    func textValues() {
        #expect(IPText.parseV4("10.1.2.3") == 0x0A01_0203)
        #expect(IPText.parseV4("10.1.2") == nil)
        #expect(IPText.parseV6("2001:db8::1")! == [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1])
        #expect(IPText.parseV6("::ffff:10.1.2.3")! == IPText.v4Mapped(0x0A01_0203))
        #expect(IPText.formatV6(IPText.parseV6("fd00:0:0:0:0:0:0:1")!) == "fd00::1")
        #expect(IPText.parseV6("1::2::3") == nil)
        #expect(NumberText.parse("0x8000") == 0x8000)
        #expect(NumberText.parse("32768") == 32768)
        #expect(ConditionFlagNames.parseBits("FWP_CONDITION_FLAG_IS_LOOPBACK|FWP_CONDITION_FLAG_IS_REAUTHORIZE", table: ConditionFlagNames.flags) == 5)
        #expect(ConditionFlagNames.parseBits("IS_LOOPBACK|0x20", table: ConditionFlagNames.flags) == 0x21)
        #expect(AppId.canonical("/usr//bin/./../bin/curl") == "/usr/bin/curl")
    }

    @Test("ALE_USER_ID security descriptors map to uid/gid sets (R3.16)")
    func userACL() throws {
        let acl = try UserACL.parse(sddl: "D:(A;;CC;;;S-1-22-1-1000)(D;;CC;;;S-1-22-2-5)")
        #expect(acl.allowedUIDs == [1000])
        #expect(acl.deniedGIDs == [5])
        #expect(acl.grants(uid: 1000, gids: [100]))
        #expect(!acl.grants(uid: 1000, gids: [5]), "explicit deny is evaluated first (canonical order)")
        #expect(!acl.grants(uid: 1001, gids: []))
        let everyone = try UserACL.parse(sddl: "D:(D;;CC;;;S-1-22-1-0)(A;;CC;;;WD)")
        #expect(everyone.allowsEveryone && !everyone.grants(uid: 0, gids: []) && everyone.grants(uid: 7, gids: []))
        #expect(try UserACL.parse(sddl: "O:SYG:SY").nullDACL)
        #expect(try !UserACL.parse(sddl: "D:").grants(uid: 0, gids: []))
        #expect(try UserACL.parse(sddl: "D:(A;;0x1;;;SY)").allowedUIDs == [0])
        #expect(try UserACL.parse(sddl: "D:(A;;GR;;;WD)").aces.isEmpty, "ACEs without FWP_ACTRL_MATCH_FILTER do not count")
        #expect(UserACL.make(allowUIDs: [1], denyGIDs: [2]).grants(uid: 1, gids: [3]))
    }
}

@Suite("Policy files")
struct PolicyFileTests {
    static let example = """
        sublayers:
          - subLayerKey: 6f1c2b1e-8d0a-4e57-9d1c-2f8b7d3a0001
            displayData: { name: egress-guard }
            weight: 0x8000
        filters:
          - displayData: { name: block ssh out }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            subLayerKey: 6f1c2b1e-8d0a-4e57-9d1c-2f8b7d3a0001
            weight: { type: FWP_UINT64, uint64: 100 }
            filterCondition:
              - fieldKey: FWPM_CONDITION_IP_REMOTE_PORT
                matchType: FWP_MATCH_EQUAL
                conditionValue: { type: FWP_UINT16, uint16: 22 }
              - fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS
                matchType: FWP_MATCH_EQUAL
                conditionValue: { type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 10.0.0.0, mask: 255.0.0.0 } }
            action: { type: FWP_ACTION_BLOCK }
        """

    @Test("The issue's example parses, loads and classifies")
    func example() throws {
        let p = try Policy.parse(Self.example)
        #expect(p.sublayers[0].weight == 0x8000)
        #expect(p.filters[0].filterCondition[1].conditionValue == .v4AddrMask(addr: 0x0A00_0000, mask: 0xFF00_0000))
        let bfe = BaseFilteringEngine()
        try bfe.load(p)
        let v = try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=22", "FWPM_CONDITION_IP_REMOTE_ADDRESS=10.1.2.3"])
        let r = bfe.classify(layer: .authConnectV4, values: v)
        #expect(r.actionType == .block && r.filterName == "block ssh out" && r.hard)
    }

    @Test("Parse errors name the document path; semantic ones carry WFP's code")
    func errors() {
        func msg(_ text: String) -> String {
            do { _ = try Policy.parse(text); return "" } catch { return "\(error)" }
        }
        let bad = """
            filters:
              - { displayData: { name: a }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK } }
              - { displayData: { name: b }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK } }
              - displayData: { name: c }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                action: { type: FWP_ACTION_BLOCK }
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUALS, conditionValue: { type: FWP_UINT16, uint16: 22 } }
            """
        #expect(msg(bad) == "filters[2].filterCondition[0].matchType: unknown match type 'FWP_MATCH_EQUALS'")
        #expect(msg("filters: [ { displayData: { name: a }, layerKey: X, action: { type: FWP_ACTION_BLOCK } } ]") == "filters[0].layerKey: unknown layer 'X'")
        #expect(
            msg("filters: [ { displayData: { name: a }, layerKey: 47474747-0000-4000-8000-000000000001, action: FWP_ACTION_BLOCK } ]").hasPrefix(
                "FWP_E_LAYER_NOT_FOUND: filters[0].layerKey"))
        #expect(msg("filterz: []").hasPrefix("filterz: unknown key 'filterz'"))
        #expect(
            msg("sublayers: [ { displayData: { name: s }, weight: 70000 } ]")
                == "sublayers[0].weight: 70000 is out of range for the UINT16 sublayer weight (at most 65535)")
        // Too large for any integer is out of range too, not "not a number"; letters are not a number.
        #expect(
            msg("sublayers: [ { displayData: { name: s }, weight: 18446744073709551616 } ]")
                == "sublayers[0].weight: 18446744073709551616 is out of range for the UINT16 sublayer weight (at most 65535)")
        #expect(msg("sublayers: [ { displayData: { name: s }, weight: 0x1g } ]") == "sublayers[0].weight: '0x1g' is not a number (decimal or 0x hex)")
        let port = #expect(throws: FWPError.self) {
            try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=70000"])
        }
        #expect(port?.message.contains("70000 is out of range for FWP_UINT16 (at most 65535)") == true, "\(String(describing: port))")
        #expect(
            msg(
                "filters: [ { displayData: { name: a }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK }, filterCondition: [ { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, conditionValue: { type: FWP_UINT16, uint32: 1 } } ] } ]"
            )
            .hasPrefix("filters[0].filterCondition[0].conditionValue.uint32: member 'uint32' does not belong to type FWP_UINT16"))
        #expect(
            msg(
                "filters: [ { displayData: { name: a }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK }, filterCondition: [ { fieldKey: FWPM_CONDITION_NOPE, conditionValue: 1 } ] } ]"
            )
            .hasPrefix("FWP_E_CONDITION_NOT_FOUND: filters[0].filterCondition[0].fieldKey"))
        // JSON gets JSONPath-style paths and JSON syntax errors.
        #expect(
            msg(#"{"filters": [{"displayData": {"name": "a"}, "layerKey": "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "action": {"type": "FWP_ACTION_BLOKC"}}]}"#)
                == "$.filters[0].action.type: unknown action type 'FWP_ACTION_BLOKC'")
        #expect(msg(#"{"filters": [}"#).contains("JSON syntax error"))
    }

    @Test("Shorthands are accepted in addition to typed values")
    func shorthands() throws {
        let p = try Policy.parse(
            """
            filters:
              - displayData: { name: s }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: 7
                action: FWP_ACTION_PERMIT
                flags: FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS, conditionValue: 10.0.0.0/8 }
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_RANGE, conditionValue: 400-443 }
                  - { fieldKey: FWPM_CONDITION_FLAGS, matchType: FWP_MATCH_FLAGS_ANY_SET, conditionValue: IS_LOOPBACK|0x4 }
                  - { fieldKey: FWPM_CONDITION_ALE_USER_ID, conditionValue: "D:(A;;CC;;;S-1-22-1-1000)" }
                  - { fieldKey: FWPM_CONDITION_IP_PROTOCOL, conditionValue: tcp }
              - displayData: { name: v6 }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V6
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS, conditionValue: fd00::/8 }
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_ADDRESS, conditionValue: { type: FWP_BYTE_ARRAY16_TYPE, byteArray16: "::1" } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let c = p.filters[0].filterCondition
        #expect(p.filters[0].weight == .uint64(7))
        #expect(p.filters[0].flags == .clearActionRight)
        #expect(c[0].conditionValue == .v4AddrMask(addr: 0x0A00_0000, mask: 0xFF00_0000))
        #expect(c[1].conditionValue == .range(low: .uint16(400), high: .uint16(443)))
        #expect(c[2].conditionValue == .uint32(5))
        #expect(c[4].conditionValue == .uint8(6))
        guard case .v6AddrMask(_, 8) = p.filters[1].filterCondition[0].conditionValue else {
            Issue.record("fd00::/8 is a v6 mask")
            return
        }
        let bfe = BaseFilteringEngine()
        try bfe.load(p)
    }

    @Test("Export round-trips: YAML and JSON load back to the same objects")
    func roundTrip() throws {
        let bfe = BaseFilteringEngine()
        let fixtures = ["C12", "C26", "C31a", "C32a", "C36b", "C37", "C39", "C29a", "C35"]
        for id in fixtures {
            let text = try Yams.serialize(node: Fixtures.cases[id]!["policy"]!)
            let p = try Policy.parse(text)
            let s = bfe.openSession()
            let pY = try Policy.parse(p.exportYAML())
            let pJ = try Policy.parse(p.exportJSON())
            #expect(pY == p, "\(id) YAML\n\(p.exportYAML())")
            #expect(pJ == p, "\(id) JSON\n\(p.exportJSON())")
            try bfe.closeSession(s)
        }
        // A committed snapshot (with filterIds and effective weights) reloads into the same objects.
        let text = try Yams.serialize(node: Fixtures.cases["C09"]!["policy"]!)
        let src = BaseFilteringEngine()
        try src.load(try Policy.parse(text))
        let snap = src.snapshot()
        let back = try Policy.parse(snap.exportYAML())
        #expect(back == snap)
        let dst = BaseFilteringEngine()
        try dst.load(back)
        #expect(dst.snapshot() == snap, "same keys, ids and weights")
    }

    @Test("lfpReauthorize: a top-level boolean, true by default, exported only when false")
    func reauthorizeSwitch() throws {
        #expect(try Policy.parse(PolicyFileTests.example).lfpReauthorize, "on by default")
        #expect(!Policy().exportJSON().contains("lfpReauthorize"), "the default is not written")
        for text in ["lfpReauthorize: false\n" + PolicyFileTests.example, "{\"lfpReauthorize\": false, \"filters\": []}"] {
            let p = try Policy.parse(text)
            #expect(p.lfpReauthorize == false)
            #expect(try Policy.parse(p.exportYAML()) == p, "\(p.exportYAML())")
            #expect(try Policy.parse(p.exportJSON()) == p, "\(p.exportJSON())")
            #expect(p.exportJSON().contains("\"lfpReauthorize\": false"), "a JSON boolean")
        }
        #expect(try Policy.parse("lfpReauthorize: TRUE\nfilters: []").lfpReauthorize)
        #expect(try Policy.parse("lfpReauthorize: false").isEmpty, "a setting, not an object")
        for bad in ["lfpReauthorize: maybe", "lfpReauthorize: 0", "lfpReauthorize: no", "{\"lfpReauthorize\": 0}"] {
            #expect {
                try Policy.parse(bad)
            } throws: { error in
                "\(error)".contains("lfpReauthorize") && "\(error)".contains("is not a boolean")
            }
        }
    }

    @Test("Policy.load reads files")
    func loadFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lfp-model-\(UUID()).yaml")
        try PolicyFileTests.example.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(try Policy.load(contentsOf: url.path).filters.count == 1)
        #expect(throws: FWPError.self) { try Policy.load(contentsOf: url.path + ".missing") }
    }
}

@Suite("Incoming values and classify output")
struct ClassifyOutputTests {
    @Test("CLI assignments parse the way WFP writes values")
    func incoming() throws {
        let v = try IncomingValues.parse(
            layer: .authConnectV4,
            assignments: [
                "FWPM_CONDITION_IP_REMOTE_PORT=22", "FWPM_CONDITION_IP_REMOTE_ADDRESS=10.1.2.3",
                "FWPM_CONDITION_ALE_APP_ID=/usr/bin/curl", "FWPM_CONDITION_ALE_USER_ID=1000",
                "FWPM_CONDITION_FLAGS=FWP_CONDITION_FLAG_IS_LOOPBACK|FWP_CONDITION_FLAG_IS_REAUTHORIZE",
                "FWPM_CONDITION_IP_PROTOCOL=tcp", "FWPM_CONDITION_ICMP_TYPE=8", "LFP_CONDITION_CGROUP_ID=0x10",
            ])
        #expect(v[.ipRemotePort] == .uint16(22))
        #expect(v[.ipRemoteAddress] == .uint32(0x0A01_0203))
        #expect(v[.aleAppId] == .byteBlob(Array("/usr/bin/curl".utf8)))
        #expect(v[.aleUserId] == .token(UserToken(uid: 1000)))
        #expect(v[.flags] == .uint32(5))
        #expect(v[.ipProtocol] == .uint8(6))
        #expect(v[.ipLocalPort] == .uint16(8))
        #expect(v[.lfpCgroupId] == .uint64(16))
        let v6 = try IncomingValues.parse(layer: .authConnectV6, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=10.1.2.3"])
        #expect(v6[.ipRemoteAddress] == .byteArray16(IPText.v4Mapped(0x0A01_0203)), "dual-stack: v4-mapped (R3.22)")
        #expect(throws: FWPError.self) { try IncomingValues.parse(layer: .authListenV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=1"]) }
        #expect(throws: FWPError.self) { try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=70000"]) }
        #expect(throws: FWPError.self) { try IncomingValues.parse(layer: .authConnectV4, assignments: ["NOPE=1"]) }
    }

    @Test("LFP_CONDITION_UID and ALE_USER_ID stay consistent")
    func uidConsistency() throws {
        let bfe = BaseFilteringEngine()
        try bfe.addFilter(
            Filter(
                displayData: DisplayData(name: "uid"), layerKey: .authConnectV4,
                filterCondition: [FilterCondition(fieldKey: .lfpUid, conditionValue: .uint32(1000))], action: .block))
        let r = bfe.classify(layer: .authConnectV4, values: try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_ALE_USER_ID=1000:5"]))
        #expect(r.actionType == .block)
    }

    @Test("JSON output has actionType, filterId, filterName and trace")
    func json() throws {
        let bfe = BaseFilteringEngine()
        try bfe.load(try Policy.parse(PolicyFileTests.example))
        let r = bfe.classify(
            layer: .authConnectV4,
            values: try IncomingValues.parse(
                layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_PORT=22", "FWPM_CONDITION_IP_REMOTE_ADDRESS=10.9.9.9"]))
        let obj = try JSONSerialization.jsonObject(with: Data(r.jsonString().utf8)) as! [String: Any]
        #expect(obj["actionType"] as? String == "FWP_ACTION_BLOCK")
        #expect((obj["filterId"] as? NSNumber)?.uint64Value == r.filterId)
        #expect(obj["filterName"] as? String == "block ssh out")
        let trace = obj["trace"] as! [[String: Any]]
        #expect(trace.count == 1)
        #expect(r.render().contains("block ssh out"))
        let none = bfe.classify(layer: .authConnectV4, values: IncomingValues())
        let o2 = try JSONSerialization.jsonObject(with: Data(none.jsonString().utf8)) as! [String: Any]
        #expect(o2["actionType"] as? String == "FWP_ACTION_PERMIT")
        #expect((o2["filterId"] as? NSNumber)?.intValue == 0)
        #expect(none.render().contains("layer default"))
    }
}

@Suite("Weights and order")
struct WeightTests {
    func w(_ c: [FilterCondition]) -> UInt64 { FilterWeight.autoWeight(c, layer: .authConnectV4) }

    @Test("Auto-weight ordering (R2.4): more specific ranks higher; documented formula")
    func autoWeight() throws {
        let port = FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(443))
        let addr = FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .uint32(0x0A01_0203))
        let net16 = FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .v4AddrMask(addr: 0x0A01_0000, mask: 0xFFFF_0000))
        let net8 = FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .v4AddrMask(addr: 0x0A00_0000, mask: 0xFF00_0000))
        let range = FilterCondition(fieldKey: .ipRemotePort, matchType: .range, conditionValue: .range(low: .uint16(1), high: .uint16(1024)))
        let ne = FilterCondition(fieldKey: .ipRemotePort, matchType: .notEqual, conditionValue: .uint16(80))
        #expect(w([]) == 0)
        #expect(w([port, addr]) > w([port]))
        #expect(w([port]) > w([range]))
        #expect(w([range]) > w([ne]))
        #expect(w([addr]) > w([net16]))
        #expect(w([net16]) > w([net8]))
        #expect(w([port, addr, FilterCondition(fieldKey: .ipProtocol, conditionValue: .uint8(6))]) < FilterWeight.autoWeightMax)
        // Two ORed ports are as specific as the looser of them.
        #expect(w([port, FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(80))]) == w([port]))
        #expect(try FilterWeight.effectiveWeight(.uint8(1), conditions: [], layer: .authConnectV4) == 1 << 60)
    }

    @Test("Arbitration order: sublayer weight, then effectiveWeight, ties by filterId / creation order (R1.7)")
    func order() throws {
        let bfe = BaseFilteringEngine()
        let a = try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "A"), weight: 0x100))
        let b = try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "B"), weight: 0x100))
        let c = try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "C"), weight: 0x200))
        for (sl, n, wt) in [(b, "b1", 5), (a, "a1", 5), (a, "a2", 5), (a, "a3", 9), (c, "c1", 1)] {
            try bfe.addFilter(
                Filter(displayData: DisplayData(name: n), layerKey: .authConnectV4, subLayerKey: sl, weight: .uint64(UInt64(wt)), action: .permit))
        }
        let order = bfe.arbitrationOrder(layer: .authConnectV4)
        #expect(order.map { $0.sublayer.displayData.name! } == ["C", "A", "B"])
        #expect(order[1].filters.map(\.name) == ["a3", "a1", "a2"])
        #expect(bfe.arbitrationOrder(layer: .authConnectV6).isEmpty)
        // Default sublayer (R4.9).
        try bfe.addFilter(Filter(displayData: DisplayData(name: "u"), layerKey: .authConnectV4, action: .block))
        #expect(bfe.arbitrationOrder(layer: .authConnectV4).contains { $0.sublayer.subLayerKey == Sublayer.universalKey })
    }

    @Test("Enumeration: layer, provider, action mask, sorted, best terminating match (R8.15)")
    func enumeration() throws {
        let bfe = try baseEngine()
        try bfe.addFilter(filter("x", [FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(1))]))
        try bfe.addFilter(filter("y", layer: .authConnectV6))
        #expect(try bfe.filters(matching: FilterEnumTemplate(layerKey: .authConnectV6)).map(\.name) == ["y"])
        #expect(try bfe.filters(matching: FilterEnumTemplate(providerKey: PK)).isEmpty)
        let t = FilterEnumTemplate(
            layerKey: .authConnectV4, enumType: .fullyContained, conditions: [FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(1))])
        #expect(try bfe.filters(matching: t).map(\.name) == ["x"])
        let t2 = FilterEnumTemplate(conditions: [FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(2))])
        #expect(try bfe.filters(matching: t2).map(\.name) == ["y"])
    }
}

@Suite("Fixture runner self-test")
struct RunnerSelfTest {
    @Test("A wrong expectation is reported (the runner really checks)")
    func wrongExpectation() throws {
        var text = try Yams.serialize(node: Fixtures.cases["C01"]!)
        text = text.replacingOccurrences(of: "actionType: FWP_ACTION_BLOCK", with: "actionType: FWP_ACTION_PERMIT")
        let node = try Yams.compose(yaml: text)!
        withKnownIssue {
            try FixtureRunner(id: "C01-mutated", node: node).run(sourceLocation: #_sourceLocation)
        }
        var t2 = try Yams.serialize(node: Fixtures.cases["C43a"]!)
        t2 = t2.replacingOccurrences(of: "expectError: FWP_E_NULL_DISPLAY_NAME", with: "expectError: FWP_E_INVALID_FLAGS")
        withKnownIssue {
            try FixtureRunner(id: "C43a-mutated", node: try Yams.compose(yaml: t2)!).run(sourceLocation: #_sourceLocation)
        }
    }

    @Test("Every reference case is present")
    func allCases() {
        #expect(Fixtures.cases.count >= 100)
        #expect(Fixtures.cases["C66"] != nil)
    }
}
