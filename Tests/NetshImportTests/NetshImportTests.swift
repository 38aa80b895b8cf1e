import FilterModel
import Foundation
import NetshImport
import Testing

/// `lfp policy import --netsh` over a real Windows dump and over a hand-written kill-switch whose
/// verdicts are known.
@Suite("netsh import")
struct NetshImportTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// The real dump, unpacked (it is stored gzip'd) into a temporary file.
    static func realDump() throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-dc", fixtures + "/keploy-wfpstate.xml.gz"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)
        return data
    }

    static func engine(_ policy: Policy) throws -> BaseFilteringEngine {
        let bfe = BaseFilteringEngine()
        _ = try bfe.load(policy)
        return bfe
    }

    @Test("a kill-switch from netsh classifies every probe as the same policy written for lfp")
    func killSwitchMatchesNative() throws {
        let result = try NetshImporter().importFile(Self.fixtures + "/killswitch-wfpstate.xml")
        let native = try Policy.load(contentsOf: Self.fixtures + "/killswitch-native.yaml")
        #expect(result.format == "wfpstate")
        #expect(result.policy.filters.count == 4, "\(result.render())")
        // Keys, weights and flags as Windows had them.
        for f in native.filters {
            let g = try #require(result.policy.filters.first { $0.filterKey == f.filterKey })
            #expect(g.weight == f.weight && g.subLayerKey == f.subLayerKey && g.providerKey == f.providerKey, "\(f.name)")
            #expect(g.filterCondition == f.filterCondition, "\(f.name)")
            #expect(g.flags.subtracting(.hasProviderContext) == f.flags || f.name.hasSuffix("loopback"), "\(f.name)")
        }
        #expect(result.policy.filters.first { $0.name.hasSuffix("tunnel's network") }?.flags == [.persistent, .indexed])
        #expect(result.policy.sublayers == native.sublayers)
        #expect(result.policy.providers == native.providers)
        // Everything else is listed with lfp's reason.
        let reasons = Dictionary(uniqueKeysWithValues: result.skipped.map { ($0.key ?? "", $0.reason) })
        #expect(reasons["c0000000-0000-4000-8000-000000000005"]?.contains("does not exist here") == true, "\(reasons)")
        #expect(reasons["c0000000-0000-4000-8000-000000000006"]?.contains("CALLOUT_TERMINATING") == true)
        #expect(reasons["c0000000-0000-4000-8000-000000000007"]?.contains("FWP_SID") == true)
        #expect(reasons["c0000000-0000-4000-8000-000000000008"]?.contains("no lfp equivalent") == true)
        #expect(result.adjusted.contains { $0.change.contains("FWPM_FILTER_FLAG_HAS_FILTER_ORIGIN") })

        let imported = try Self.engine(result.policy)
        let reference = try Self.engine(native)
        let layer = Layer.authConnectV4
        let probes: [([String], ActionType, String)] = [
            (["FWPM_CONDITION_IP_REMOTE_ADDRESS=10.8.1.2", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_IP_REMOTE_PORT=443"], .permit, "02"),
            (["FWPM_CONDITION_IP_REMOTE_ADDRESS=10.8.1.2", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_IP_REMOTE_PORT=25"], .block, "03"),
            (["FWPM_CONDITION_IP_REMOTE_ADDRESS=192.0.2.1", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_IP_REMOTE_PORT=443"], .block, "01"),
            (
                ["FWPM_CONDITION_IP_REMOTE_ADDRESS=127.0.0.1", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_IP_REMOTE_PORT=25", "FWPM_CONDITION_FLAGS=1"],
                .permit, "04"
            ),
        ]
        for (fields, expected, filter) in probes {
            let values = try IncomingValues.parse(layer: layer, assignments: fields)
            let a = imported.classify(layer: layer, values: values)
            let b = reference.classify(layer: layer, values: values)
            #expect(a.actionType == expected && b.actionType == expected, "\(fields): import \(a.actionType), native \(b.actionType)")
            #expect(a.filterKey == b.filterKey && a.filterKey?.lowerString.hasSuffix("0000000000" + filter) == true, "\(fields)")
        }
    }

    @Test("a real netsh wfp show state dump: what lfp can enforce loads, the rest is listed with reasons")
    func realDump() throws {
        let result = try NetshImporter().importData(try Self.realDump(), sourceName: "keploy-wfpstate.xml")
        #expect(result.format == "wfpstate")
        let total = result.policy.filters.count + result.skipped.filter { $0.kind == .filter }.count
        #expect(total == 1254, "every filter of the dump is imported or listed")
        #expect(result.policy.filters.count > 0, "\(result.render())")
        #expect(result.skipped.allSatisfy { !$0.reason.isEmpty })
        #expect(result.symbolicKeys["FWPM_SUBLAYER_MPSSVC_WF"] != nil)
        // The import loads as a whole, and WFP's effective weights come out as Windows computed
        // them: the dump's own statement of the order it arbitrates in.
        let bfe = try Self.engine(result.policy)
        for f in result.imported {
            let g = try bfe.filter(key: f.key)
            #expect(g.effectiveWeight == f.windowsEffectiveWeight, "\(f.name) at \(f.layer)")
        }
        // What the dump says this machine did with outbound connections: "Default Outbound"
        // (MPSSVC_WF, sublayer weight 2) permits what nothing else decides; loopback is permitted
        // first by "AppContainerLoopback" (MPSSVC_APP_ISOLATION, sublayer weight 7), and the soft
        // permit of the later sublayer stands as the final decision, as WFP arbitrates.
        let v4 = Layer.authConnectV4
        let outbound = bfe.classify(
            layer: v4,
            values: try IncomingValues.parse(
                layer: v4,
                assignments: [
                    "FWPM_CONDITION_IP_REMOTE_ADDRESS=192.0.2.1", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_IP_REMOTE_PORT=443",
                ]))
        #expect(outbound.actionType == .permit && outbound.filterName == "Default Outbound", "\(outbound.render())")
        let loopback = bfe.classify(
            layer: v4,
            values: try IncomingValues.parse(
                layer: v4,
                assignments: [
                    "FWPM_CONDITION_IP_REMOTE_ADDRESS=127.0.0.1", "FWPM_CONDITION_IP_PROTOCOL=6", "FWPM_CONDITION_FLAGS=1",
                ]))
        #expect(loopback.actionType == .permit && loopback.filterName == "Default Outbound", "\(loopback.render())")
        #expect(loopback.trace.first?.weight == 7 && loopback.trace.first?.result == .permit, "\(loopback.render())")
        #expect(result.imported.count == 14, "\(result.render())")
        // Round trip through the policy file the CLI writes.
        let again = try Policy.parse(result.policy.exportYAML(), sourceName: "export")
        #expect(again.filters == result.policy.filters)
    }

    @Test("input that is not a netsh dump is one precise error")
    func notNetsh() throws {
        #expect(throws: NetshImportError.notNetsh(root: "policy")) {
            _ = try NetshImporter().importData(Data("<policy/>".utf8))
        }
        #expect(throws: NetshImportError.self) { _ = try NetshImporter().importData(Data("<wfpdiag><filters>".utf8)) }
    }
}
