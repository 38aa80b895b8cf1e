// Incoming values the model derives as the kernel does: address types from addresses, and
// ALE_APP_ID equality by file identity.

import Foundation
import Testing

@testable import FilterModel

@Suite("Derived incoming values")
struct DerivedValueTests {
    @Test("NL_ADDRESS_TYPE from the address alone (the kernel's lfp_addr_type)")
    func addressTypes() throws {
        let v4: [(String, AddressType)] = [
            ("0.0.0.0", .unspecified), ("255.255.255.255", .broadcast), ("224.0.0.0", .multicast),
            ("239.255.255.255", .multicast), ("223.255.255.255", .unicast), ("240.0.0.0", .unicast),
            ("127.0.0.1", .unicast), ("10.1.255.255", .unicast),  // subnet-directed broadcast: unicast
            ("0.0.0.1", .unicast),
        ]
        for (text, want) in v4 { #expect(AddressType.of(v4: try #require(IPText.parseV4(text))) == want, "\(text)") }
        let v6: [(String, AddressType)] = [
            ("::", .unspecified), ("ff02::1", .multicast), ("ff00::", .multicast), ("fe80::1", .unicast), ("::1", .unicast),
            ("::ffff:224.0.0.1", .unicast), ("::ffff:0.0.0.0", .unicast), ("fec0::", .unicast),
        ]
        for (text, want) in v6 { #expect(AddressType.of(v6: try #require(IPText.parseV6(text))) == want, "\(text)") }
        #expect(AddressType.of(IncomingValue.empty) == nil)
        #expect(AddressType.of(.uint32(0xE000_0001)) == .multicast && AddressType.of(.byteArray16(IPText.parseV6("ff05::2")!)) == .multicast)
    }

    @Test("classify derives address types not given, keeps the ones given, and only where the field exists")
    func derivedInClassify() throws {
        let v = try IncomingValues.parse(
            layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=239.1.2.3", "FWPM_CONDITION_IP_LOCAL_ADDRESS=0.0.0.0"])
        let n = v.normalized(layer: .authConnectV4)
        #expect(n[.ipDestinationAddressType] == .uint8(3) && n[.ipLocalAddressType] == .uint8(0))
        let given = try IncomingValues.parse(
            layer: .authConnectV4,
            assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=239.1.2.3", "FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE=NlatUnicast"])
        #expect(given.normalized(layer: .authConnectV4)[.ipDestinationAddressType] == .uint8(1))
        let inbound = try IncomingValues.parse(layer: .authRecvAcceptV6, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=ff02::1"])
        #expect(inbound.normalized(layer: .authRecvAcceptV6)[.ipDestinationAddressType] == nil)
        let empty = try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_LOCAL_ADDRESS=FWP_EMPTY"])
        #expect(empty.normalized(layer: .authConnectV4)[.ipLocalAddressType] == nil)
    }

    /// A temporary file, a symlink to it, a hard link to it, and a copy.
    struct Files {
        let dir: String
        var file: String { dir + "/app" }
        var symlink: String { dir + "/app-link" }
        var hardlink: String { dir + "/app-hard" }
        var copy: String { dir + "/app-copy" }
        init() throws {
            dir = NSTemporaryDirectory() + "lfp-appid-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let fm = FileManager.default
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: dir + "/app"))
            try fm.createSymbolicLink(atPath: dir + "/app-link", withDestinationPath: "app")
            try fm.linkItem(atPath: dir + "/app", toPath: dir + "/app-hard")
            try fm.copyItem(atPath: dir + "/app", toPath: dir + "/app-copy")
        }
        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    static func policy(_ path: String, match: String = "FWP_MATCH_EQUAL") throws -> BaseFilteringEngine {
        try engine(path, match: match, identity: AppId.statIdentity)
    }

    static func engine(_ path: String, match: String, identity: @escaping AppId.IdentityLookup) throws -> BaseFilteringEngine {
        let bfe = BaseFilteringEngine(appIdentity: identity)
        _ = try bfe.load(
            try Policy.parse(
                """
                filters:
                  - displayData: { name: app }
                    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                    filterCondition:
                      - { fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: \(match), conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: '\(path)' } }
                    action: { type: FWP_ACTION_BLOCK }
                """, sourceName: "t"))
        return bfe
    }

    static func verdict(_ bfe: BaseFilteringEngine, _ app: String) throws -> ActionType {
        bfe.classify(
            layer: .authConnectV4, values: try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_ALE_APP_ID=\(app)"])
        ).actionType
    }

    @Test("ALE_APP_ID EQUAL: a symlink and a hard link are the same application, a copy is not")
    func appIdentity() throws {
        let f = try Files()
        defer { f.remove() }
        for named in [f.file, f.symlink, f.hardlink] {
            let bfe = try Self.policy(named)
            for same in [f.file, f.symlink, f.hardlink, f.dir + "/./app", f.dir + "/sub/../app-link"] {
                #expect(try Self.verdict(bfe, same) == .block, "policy \(named), app \(same)")
            }
            #expect(try Self.verdict(bfe, f.copy) == .permit, "policy \(named), copy")
            #expect(try Self.verdict(bfe, f.dir + "/missing") == .permit)
        }
        // NOT_EQUAL is its negation
        let ne = try Self.policy(f.symlink, match: "FWP_MATCH_NOT_EQUAL")
        #expect(try Self.verdict(ne, f.hardlink) == .permit)
        #expect(try Self.verdict(ne, f.copy) == .block)
    }

    @Test("ALE_APP_ID: paths that name nothing compare as text, byte for byte (C37); the lookup is injectable")
    func appIdentityFallback() throws {
        let f = try Files()
        defer { f.remove() }
        let missing = try Self.policy("/nonexistent/lfp/App")
        #expect(try Self.verdict(missing, "/nonexistent/lfp/App") == .block)
        #expect(try Self.verdict(missing, "/nonexistent/lfp/app") == .permit)
        #expect(try Self.verdict(missing, f.file) == .permit)
        // paths only: a link is another path
        let paths = try Self.engine(f.symlink, match: "FWP_MATCH_EQUAL", identity: AppId.pathsOnly)
        #expect(try Self.verdict(paths, f.file) == .permit)
        #expect(try Self.verdict(paths, f.symlink) == .block)
        // a scripted lookup: every path under /opt/a is one file; each path is looked up once per classify
        let calls = Counter()
        let scripted = try Self.engine(
            "/opt/a/x", match: "FWP_MATCH_EQUAL",
            identity: { path in
                calls.add()
                return path.hasPrefix("/opt/a/") ? FileIdentity(device: 1, inode: 2) : nil
            })
        #expect(try Self.verdict(scripted, "/opt/a/y") == .block)
        #expect(try Self.verdict(scripted, "/opt/b/x") == .permit)
        #expect(calls.value <= 4, "each path at most once per classify")
        // the other string matches compare text
        let suffix = try Self.engine("app-link", match: "FWP_MATCH_PREFIX", identity: AppId.statIdentity)
        #expect(try Self.verdict(suffix, f.symlink) == .block)
        #expect(try Self.verdict(suffix, f.hardlink) == .permit)
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add() { lock.lock(); n += 1; lock.unlock() }
        var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    }
}
