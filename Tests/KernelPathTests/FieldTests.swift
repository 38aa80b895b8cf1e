import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// Condition fields the kernel derives or reads beyond the 5-tuple, on real sockets: the address
/// types (derived from the addresses), IP_LOCAL_INTERFACE (the bound device, the arrival device)
/// and ALE_APP_ID through symlinks and hard links. Every kernel verdict is checked against the
/// model (`committedEngine().classify`, `lfp classify`).
@Suite("Kernel fields: address types, local interface, app identity", .serialized)
struct FieldTests {
    static func layer(_ kind: String, _ v6: Bool) -> Layer { Layer(name: "FWPM_LAYER_ALE_\(kind)_\(v6 ? "V6" : "V4")")! }

    /// The model's verdict for what an event says the kernel saw (addresses, ports, protocol,
    /// interface), with the address types left for the model to derive.
    static func modelFilter(_ fx: KernelFixture, _ e: ALEEvent) throws -> UInt64 {
        let layer = try #require(e.layer)
        var a = ["FWPM_CONDITION_IP_PROTOCOL=\(e.ipProtocol)"]
        if let r = e.remoteAddress, ConditionField.ipRemoteAddress.isAvailable(at: layer) { a.append("FWPM_CONDITION_IP_REMOTE_ADDRESS=\(r)") }
        if let r = e.remotePort, ConditionField.ipRemotePort.isAvailable(at: layer) { a.append("FWPM_CONDITION_IP_REMOTE_PORT=\(r)") }
        if let l = e.localAddress { a.append("FWPM_CONDITION_IP_LOCAL_ADDRESS=\(l)") }
        if let p = e.localPort, ConditionField.ipLocalPort.isAvailable(at: layer) { a.append("FWPM_CONDITION_IP_LOCAL_PORT=\(p)") }
        if let i = e.localInterface { a.append("FWPM_CONDITION_IP_LOCAL_INTERFACE=\(i)") }
        let values = try IncomingValues.parse(layer: layer, assignments: a)
        return try fx.engine.committedEngine().classify(layer: layer, values: values).filterId
    }

    @Test("IP_DESTINATION_ADDRESS_TYPE: connect and sendto to multicast (and broadcast) refused, unicast not", arguments: [false, true])
    func destinationAddressType(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let tcp = try Listener(v6: v6), udp = try Listener(v6: v6, udp: true)
        let sfx = v6 ? "V6" : "V4"
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-multicast }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 3 } }
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: no-broadcast }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 4 } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("mcast")
        let sub = try fx.engine.subscribe()
        let fam = v6 ? 6 : 4
        let group = v6 ? "ff05::1:3" : "239.1.2.3", loop = v6 ? "::1" : "127.0.0.1"
        var steps: [[String: Any]] = [
            ["family": fam, "type": "udp", "addr": group, "port": 5000],
            ["family": fam, "type": "udp", "op": "sendto", "addr": group, "port": 5000],
            ["family": fam, "addr": loop, "port": Int(tcp.port)],
            ["family": fam, "type": "udp", "addr": loop, "port": Int(udp.port)],
        ]
        if !v6 { steps.append(["family": 4, "type": "udp", "addr": "255.255.255.255", "port": 5000]) }
        let r = try fx.runClient(in: w, steps)
        #expect(r[0].errno == EPERM && r[0].stage == "connect", "UDP connect to \(group): \(r[0])")
        #expect(r[1].errno == EPERM && r[1].stage == "sendto", "UDP sendto \(group): \(r[1])")
        #expect(r[2].ok == true && r[3].ok == true, "unicast loopback: \(r[2]) \(r[3])")
        if !v6 { #expect(r[4].errno == EPERM && r[4].stage == "connect", "UDP connect to broadcast: \(r[4])") }

        let events = await fx.collect(sub) { $0.filter { $0.layer?.kind == .resourceRelease }.count >= steps.count }
        let connects = events.filter { $0.layer == Self.layer("AUTH_CONNECT", v6) && $0.workload == "mcast" }
        try #require(connects.count == steps.count, "\(events.map { $0.render() })")
        #expect(connects[0].isBlock && connects[0].filterId == ids["no-multicast"] && connects[0].remoteAddress == group)
        #expect(connects[1].isBlock && connects[1].filterId == ids["no-multicast"])
        #expect(connects[2].isPermit && connects[2].filterId == 0 && connects[3].isPermit)
        if !v6 { #expect(connects[4].isBlock && connects[4].filterId == ids["no-broadcast"]) }
        for c in connects { #expect(try Self.modelFilter(fx, c) == c.filterId, "model vs kernel: \(c.render())") }
    }

    @Test("IP_LOCAL_ADDRESS_TYPE: a bind to the unspecified address refused, a bind to loopback not")
    func localAddressType() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-wildcard-udp }
                layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_ADDRESS_TYPE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 0 } }
                  - { fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 17 } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("binder")
        let sub = try fx.engine.subscribe()
        let r = try fx.runClient(
            in: w,
            [
                ["type": "udp", "op": "none", "bind": "0.0.0.0"],
                ["type": "udp", "op": "none", "bind": "127.0.0.1"],
                ["op": "none", "bind": "0.0.0.0"],
            ])
        #expect(r[0].errno == EPERM && r[0].stage == "bind", "\(r[0])")
        #expect(r[1].ok == true && r[2].ok == true, "\(r[1]) \(r[2])")
        let events = await fx.collect(sub) { $0.filter { $0.layer?.kind == .resourceRelease }.count >= 3 }
        let ra = events.filter { $0.layer == .resourceAssignmentV4 && $0.workload == "binder" }
        let blocked = ra.filter(\.isBlock)
        #expect(blocked.count == 1 && blocked.first?.filterId == ids["no-wildcard-udp"], "\(events.map { $0.render() })")
        // socket creation (no local address: FWP_EMPTY type) and the other binds decide nothing
        for e in ra { #expect(try Self.modelFilter(fx, e) == e.filterId, "model vs kernel: \(e.render())") }
    }

    @Test("IP_LOCAL_INTERFACE: a socket bound to lo (SO_BINDTODEVICE) is ifindex 1, an unbound one FWP_EMPTY", arguments: [false, true])
    func localInterface(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener(v6: v6)
        let sfx = v6 ? "V6" : "V4"
        let bindPort = Int(Net.freePort(v6: v6))
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: via-lo }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                weight: { type: FWP_UINT64, uint64: 20 }
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT64, uint64: 1 } }
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: no-device }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                weight: { type: FWP_UINT64, uint64: 10 }
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_EMPTY } }
                action: { type: FWP_ACTION_PERMIT }
              - displayData: { name: bind-on-lo }
                layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_\(sfx)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT64, uint64: 1 } }
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(bindPort) } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("dev")
        let sub = try fx.engine.subscribe()
        let fam = v6 ? 6 : 4, host = v6 ? "::1" : "127.0.0.1"
        let r = try fx.runClient(
            in: w,
            [
                ["family": fam, "device": "lo", "addr": host, "port": Int(l.port)],
                ["family": fam, "addr": host, "port": Int(l.port)],
                ["family": fam, "device": "lo", "op": "none", "bind": host, "bindPort": bindPort],
                ["family": fam, "op": "none", "bind": host, "bindPort": bindPort],
            ])
        #expect(r[0].errno == EPERM && r[0].stage == "connect", "bound to lo: \(r[0])")
        #expect(r[1].ok == true, "unbound: \(r[1])")
        #expect(r[2].errno == EPERM && r[2].stage == "bind", "bind on lo: \(r[2])")
        #expect(r[3].ok == true, "bind without a device: \(r[3])")

        let events = await fx.collect(sub) { $0.filter { $0.layer?.kind == .resourceRelease }.count >= 4 }
        let mine = events.filter { $0.workload == "dev" }
        let connects = mine.filter { $0.layer == Self.layer("AUTH_CONNECT", v6) }
        try #require(connects.count == 2, "\(mine.map { $0.render() })")
        #expect(connects[0].isBlock && connects[0].filterId == ids["via-lo"] && connects[0].localInterface == 1)
        #expect(connects[1].isPermit && connects[1].filterId == ids["no-device"] && connects[1].localInterface == nil)
        let binds = mine.filter { $0.layer == Self.layer("RESOURCE_ASSIGNMENT", v6) && $0.localPort == UInt16(bindPort) }
        #expect(binds.map(\.isBlock) == [true, false], "\(mine.map { $0.render() })")
        #expect(binds.first?.filterId == ids["bind-on-lo"] && binds.first?.localInterface == 1)
        for e in connects + binds { #expect(try Self.modelFilter(fx, e) == e.filterId, "model vs kernel: \(e.render())") }
    }

    @Test("IP_LOCAL_INTERFACE at AUTH_RECV_ACCEPT: the device the SYN arrived on (lo = 1)")
    func arrivalInterface() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        func policy(_ ifindex: Int) -> String {
            """
            filters:
              - displayData: { name: in-on-\(ifindex) }
                layerKey: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT64, uint64: \(ifindex) } }
                action: { type: FWP_ACTION_BLOCK }
            """
        }
        let ids = try fx.commit(policy(1))
        let w = try fx.workload("server")
        let sub = try fx.engine.subscribe()
        var py = try PyProc(cgroup: w.cgroupPath, script: LifetimeTests.listenOnce, args: ["127.0.0.1"])
        var port = try #require(py.readLine().flatMap(UInt16.init))
        var fd = Net.connect("127.0.0.1", port, timeoutMs: 700)
        #expect(fd == -ETIMEDOUT, "a SYN on lo is refused")
        if fd >= 0 { close(fd) }
        #expect(py.finish().0.contains("nothing"))
        let events = await fx.collect(sub) { LifetimeTests.releases($0, 1) }
        let accept = try #require(events.first { $0.layer == .authRecvAcceptV4 }, "\(events.map { $0.render() })")
        #expect(accept.isBlock && accept.filterId == ids["in-on-1"] && accept.localInterface == 1)
        #expect(try Self.modelFilter(fx, accept) == accept.filterId)
        sub.cancel()

        _ = try fx.commit(policy(999))  // no such device: the same SYN is accepted
        py = try PyProc(cgroup: w.cgroupPath, script: LifetimeTests.listenOnce, args: ["127.0.0.1"])
        port = try #require(py.readLine().flatMap(UInt16.init))
        fd = Net.connect("127.0.0.1", port, timeoutMs: 1000)
        #expect(fd >= 0, "not lo's ifindex: accepted (\(fd))")
        if fd >= 0 { close(fd) }
        #expect(py.finish().0.contains("accepted"))
    }

    /// The issue's case: the policy names one path, the process runs the same file under
    /// another (a symlink, a hard link). The kernel and `lfp classify` must give one answer.
    @Test("ALE_APP_ID: the file, its symlink and its hard link are one application, in the kernel and in lfp classify")
    func appIdentityThroughLinks() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        let dir = NSTemporaryDirectory() + "lfp-apps-\(UUID().uuidString)"  // not in lfp's state tree, which refuses links
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        let real = URL(fileURLWithPath: KernelFixture.python).resolvingSymlinksInPath().path
        let file = dir + "/py", symlink = dir + "/py-link", hardlink = dir + "/py-hard"
        try fm.copyItem(atPath: real, toPath: file)
        try fm.createSymbolicLink(atPath: symlink, withDestinationPath: "py")
        try fm.linkItem(atPath: file, toPath: hardlink)
        let yaml = """
            filters:
              - displayData: { name: no-py }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: '\(symlink)' } }
                action: { type: FWP_ACTION_BLOCK }
            """
        _ = try fx.commit(yaml)
        let policyFile = try CLITests.write(yaml)
        defer { try? fm.removeItem(atPath: policyFile) }
        let w = try fx.workload("apps")
        func kernel(_ exe: String) throws -> Bool {
            try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l.port)]], python: exe)[0].errno == EPERM
        }
        func cli(_ policy: String, _ exe: String) throws -> Bool {
            let r = try CLITests.run(
                [
                    "classify", "--policy", policy, "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "--field",
                    "FWPM_CONDITION_ALE_APP_ID=\(exe)", "--json",
                ], env: CLITests.env(fx))
            try #require(r.status == 0, "lfp classify: \(r.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            return json?["actionType"] as? String == "FWP_ACTION_BLOCK"  // the trace names every filter's action too
        }
        for exe in [file, symlink, hardlink, real] {
            let k = try kernel(exe), c = try cli(policyFile, exe)
            #expect(k == (exe != real), "kernel, \(exe)")
            #expect(c == k, "lfp classify says \(c ? "BLOCK" : "PERMIT") for \(exe), the kernel \(k ? "blocked" : "permitted")")
        }

        // the issue's example: the policy names /usr/bin/python3 (a symlink), the process is the
        // file it points to
        let named = KernelFixture.python
        let yaml2 = yaml.replacingOccurrences(of: "'\(symlink)'", with: "'\(named)'")
        _ = try fx.commit(yaml2)
        let policy2 = try CLITests.write(yaml2)
        defer { try? fm.removeItem(atPath: policy2) }
        for exe in [named, real, file] {
            let k = try kernel(exe), c = try cli(policy2, exe)
            #expect(k == (exe != file), "kernel, \(exe)")
            #expect(c == k, "lfp classify says \(c ? "BLOCK" : "PERMIT") for \(exe) under \(named), the kernel \(k ? "blocked" : "permitted")")
        }
    }
}
