import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// The fast path end to end: real lfp.bpf.o, a real cgroup v2, real loopback sockets.
@Suite("Kernel fast path", .serialized)
struct FastPathTests {
    static func policy(blockPort: UInt16, permitPort: UInt16, v6: Bool) -> String {
        let sfx = v6 ? "V6" : "V4"
        let addr =
            v6
            ? "{ type: FWP_V6_ADDR_MASK, v6AddrMask: { addr: '::1', prefixLength: 128 } }"
            : "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: 127.0.0.0, mask: 255.0.0.0 } }"
        return """
            sublayers:
              - subLayerKey: 6f1c2b1e-8d0a-4e57-9d1c-2f8b7d3a0001
                displayData: { name: guard }
                weight: 0x8000
            filters:
              - displayData: { name: block-port }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                subLayerKey: 6f1c2b1e-8d0a-4e57-9d1c-2f8b7d3a0001
                weight: { type: FWP_UINT64, uint64: 100 }
                filterCondition:
                  - fieldKey: FWPM_CONDITION_IP_REMOTE_PORT
                    matchType: FWP_MATCH_EQUAL
                    conditionValue: { type: FWP_UINT16, uint16: \(blockPort) }
                  - fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS
                    matchType: FWP_MATCH_EQUAL
                    conditionValue: \(addr)
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: permit-port }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(sfx)
                subLayerKey: 6f1c2b1e-8d0a-4e57-9d1c-2f8b7d3a0001
                weight: { type: FWP_UINT64, uint64: 50 }
                filterCondition:
                  - fieldKey: FWPM_CONDITION_IP_REMOTE_PORT
                    matchType: FWP_MATCH_RANGE
                    conditionValue: { type: FWP_RANGE_TYPE, rangeValue: { valueLow: { type: FWP_UINT16, uint16: \(permitPort) }, valueHigh: { type: FWP_UINT16, uint16: \(permitPort) } } }
                action: { type: FWP_ACTION_PERMIT }
            """
    }

    /// TCP connect blocked and permitted, with the exact event sequence per endpoint.
    @Test("connect: block with EPERM, permit, exact events (v4 and v6)", arguments: [false, true])
    func connectBlockAndPermit(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let blocked = try Listener(v6: v6), allowed = try Listener(v6: v6)
        let ids = try fx.commit(Self.policy(blockPort: blocked.port, permitPort: allowed.port, v6: v6))
        let w = try fx.workload("client")
        let sub = try fx.engine.subscribe()
        let host = v6 ? "::1" : "127.0.0.1"
        let results = try fx.runClient(
            in: w,
            [
                ["family": v6 ? 6 : 4, "addr": host, "port": Int(blocked.port)],
                ["family": v6 ? 6 : 4, "addr": host, "port": Int(allowed.port)],
            ])
        #expect(results[0].errno == EPERM && results[0].stage == "connect")
        #expect(results[1].ok == true)

        let layer = { (name: String) in Layer(name: "FWPM_LAYER_ALE_\(name)_\(v6 ? "V6" : "V4")")! }
        let events = await fx.collect(sub) { evs in evs.filter { $0.layer == layer("RESOURCE_RELEASE") }.count >= 2 }
        let mine = events.filter { $0.workload == "client" }
        let connects = mine.filter { $0.layer == layer("AUTH_CONNECT") }
        try #require(connects.count == 2, "events: \(mine.map { $0.render() })")
        let (b, p) = (connects[0], connects[1])
        #expect(b.isBlock && b.filterId == ids["block-port"] && b.errno == "EPERM" && b.remotePort == blocked.port)
        #expect(b.remoteAddress == host)
        #expect(p.isPermit && p.filterId == ids["permit-port"] && p.remotePort == allowed.port)
        // blocked: no bind, no flow, no closure (never authorized); permitted: the full lifetime
        let expected = [
            b.transportEndpointHandle: ["RESOURCE_ASSIGNMENT", "AUTH_CONNECT", "RESOURCE_RELEASE"],
            p.transportEndpointHandle: [
                "RESOURCE_ASSIGNMENT", "AUTH_CONNECT", "RESOURCE_ASSIGNMENT", "FLOW_ESTABLISHED",
                "ENDPOINT_CLOSURE", "RESOURCE_RELEASE",
            ],
        ]
        for (handle, names) in expected {
            let seq = mine.filter { $0.transportEndpointHandle == handle }.compactMap(\.layer)
            #expect(seq == names.map(layer), "sequence for handle \(handle): \(seq.map(\.name))")
        }
        #expect(b.processName == "python3" && p.processName == "python3")
        // the permitted connection's release carries the local port the client reported
        let release = try #require(mine.last { $0.transportEndpointHandle == p.transportEndpointHandle })
        #expect(release.localPort == nil || release.localPort == results[1].localPort)
    }

    /// A dual-stack IPv6 socket talking to an IPv4-mapped address is IPv4 traffic: it is
    /// classified at the V4 layer with the IPv4 address.
    @Test("dual-stack: ::ffff:127.0.0.1 is classified at AUTH_CONNECT_V4")
    func dualStack() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let blocked = try Listener()
        let ids = try fx.commit(Self.policy(blockPort: blocked.port, permitPort: 1, v6: false))
        let w = try fx.workload("dual")
        let sub = try fx.engine.subscribe()
        let r = try fx.runClient(in: w, [["family": 6, "v6only": false, "addr": "::ffff:127.0.0.1", "port": Int(blocked.port)]])
        #expect(r[0].errno == EPERM && r[0].stage == "connect")
        let events = await fx.collect(sub) { $0.contains { $0.layer?.kind == .resourceRelease } }
        let c = try #require(events.first { $0.layer?.kind == .authConnect }, "\(events.map { $0.render() })")
        #expect(c.layer == .authConnectV4 && c.remoteAddress == "127.0.0.1" && c.ipVersion == "FWP_IP_VERSION_V4")
        #expect(c.isBlock && c.filterId == ids["block-port"])
        #expect(events.first?.layer == .resourceAssignmentV6, "the socket itself is an AF_INET6 endpoint")
    }

    /// ALE_APP_ID in the kernel: the executable by file identity. The same interpreter copied to
    /// another file is another application.
    @Test("ALE_APP_ID: block one executable, not its copy")
    func appID() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        let real = URL(fileURLWithPath: KernelFixture.python).resolvingSymlinksInPath().path
        let copy = fx.config.stateDirectory + "/python-copy"
        try FileManager.default.createDirectory(atPath: fx.config.stateDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: real, toPath: copy)
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-python }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: '\(KernelFixture.python)' } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("apps")
        let sub = try fx.engine.subscribe()
        let blocked = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l.port)]])
        let other = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l.port)]], python: copy)
        #expect(blocked[0].errno == EPERM)
        #expect(other[0].ok == true)
        let events = await fx.collect(sub) { $0.filter { $0.layer == .resourceReleaseV4 }.count >= 2 }
        let connects = events.filter { $0.layer == .authConnectV4 }
        #expect(connects.map(\.actionType) == ["FWP_ACTION_BLOCK", "FWP_ACTION_PERMIT"])
        #expect(connects.first?.filterId == ids["no-python"])
        // the model agrees for the path it was given
        let model = try fx.engine.committedEngine().classify(
            layer: .authConnectV4,
            values: try IncomingValues.parse(
                layer: .authConnectV4, assignments: ["FWPM_CONDITION_ALE_APP_ID=\(KernelFixture.python)"]))
        #expect(model.filterId == ids["no-python"])
    }

    /// A block returns the errno the policy names (Linux extension `lfpBlockErrno`), EPERM otherwise.
    @Test("block with a chosen errno (lfpBlockErrno)")
    func chosenErrno() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: refuse }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(l.port) } }
                action: { type: FWP_ACTION_BLOCK, lfpBlockErrno: ECONNREFUSED }
            """)
        let w = try fx.workload("errno")
        let sub = try fx.engine.subscribe()
        let r = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l.port)]])
        #expect(r[0].errno == ECONNREFUSED && r[0].stage == "connect")
        let events = await fx.collect(sub) { $0.contains { $0.layer == .resourceReleaseV4 } }
        let c = try #require(events.first { $0.layer == .authConnectV4 })
        #expect(c.isBlock && c.filterId == ids["refuse"] && c.errno == "ECONNREFUSED")
        // a UDP peer's later datagrams hit the cached flow verdict: same errno
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); out = []
                for _ in range(2):
                    try:
                        s.sendto(b'x', ('127.0.0.1', int(sys.argv[1]))); out.append('ok')
                    except OSError as e:
                        out.append(str(e.errno))
                print(' '.join(out))
                """, args: [String(l.port)])
        let (out, _) = py.finish()
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(ECONNREFUSED) \(ECONNREFUSED)")
    }

    /// An EventSubscription released without cancel() stops its reader thread cleanly.
    @Test("a subscription dropped without cancel() cleans up")
    func dropSubscription() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("drop")
        do {
            let sub = try fx.engine.subscribe()
            _ = try fx.runClient(in: w, [["op": "none"]])
            _ = sub.slot
        }
        let again = try fx.engine.subscribe()
        #expect(again.slot == 0, "the dropped subscription gave its slot back")
        again.cancel()
    }

    /// ALE_RESOURCE_ASSIGNMENT blocks socket creation and explicit binds.
    @Test("resource assignment: block socket creation and a bind", arguments: [false, true])
    func resourceAssignmentBlocks(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let sfx = v6 ? "V6" : "V4"
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-udp }
                layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_\(sfx)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 17 } }
                action: { type: FWP_ACTION_BLOCK }
              - displayData: { name: no-low-ports }
                layerKey: FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_\(sfx)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_PORT, matchType: FWP_MATCH_RANGE, conditionValue: { type: FWP_RANGE_TYPE, rangeValue: { valueLow: { type: FWP_UINT16, uint16: 1 }, valueHigh: { type: FWP_UINT16, uint16: 30000 } } } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("binder")
        let sub = try fx.engine.subscribe()
        let fam = v6 ? 6 : 4, host = v6 ? "::1" : "127.0.0.1"
        let results = try fx.runClient(
            in: w,
            [
                ["family": fam, "type": "udp", "op": "none"],
                ["family": fam, "op": "listen", "bind": host, "bindPort": 20999],
                ["family": fam, "op": "listen", "bind": host, "bindPort": 0],
            ])
        #expect(results[0].errno == EPERM && results[0].stage == "socket")
        #expect(results[1].errno == EPERM && results[1].stage == "bind")
        #expect(results[2].ok == true)
        let ra = { (e: ALEEvent) in e.layer == Layer(name: "FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_\(sfx)") }
        let events = await fx.collect(sub) { evs in evs.filter { $0.layer?.kind == .resourceRelease }.count >= 2 }
        let blocks = events.filter { ra($0) && $0.isBlock }
        #expect(blocks.count == 2, "\(events.map { $0.render() })")
        #expect(blocks.first?.filterId == ids["no-udp"] && blocks.first?.ipProtocol == 17)
        #expect(blocks.last?.filterId == ids["no-low-ports"] && blocks.last?.localPort == 20999)
        // a socket whose creation was refused never gets a release (Q11, documented choice)
        if let refused = blocks.first {
            #expect(!events.contains { $0.transportEndpointHandle == refused.transportEndpointHandle && $0.layer?.kind == .resourceRelease })
        }
    }

    /// Two tails at once each see every event; status counts them.
    @Test("two subscribers each receive every event")
    func twoSubscribers() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        _ = try fx.commit("filters: []")
        let w = try fx.workload("multi")
        let a = try fx.engine.subscribe(), b = try fx.engine.subscribe()
        #expect(a.slot != b.slot)
        _ = try fx.runClient(in: w, Array(repeating: ["addr": "127.0.0.1", "port": Int(l.port)], count: 5))
        let done: ([ALEEvent]) -> Bool = { $0.filter { $0.layer == .resourceReleaseV4 }.count >= 5 }
        let ea = await fx.collect(a, until: done)
        let eb = await fx.collect(b, until: done)
        #expect(ea.map(\.transportEndpointHandle) == eb.map(\.transportEndpointHandle))
        #expect(ea.filter { $0.layer == .authConnectV4 }.count == 5)
        a.cancel(); b.cancel()
        let acc = try a.accounting()
        #expect(acc.submitted == acc.received + acc.dropped)
        let status = try fx.engine.status()
        #expect(status.workloads.map(\.name) == ["multi"] && status.workloads[0].healthy)
        #expect(status.classifications >= 10)
    }

    /// A bad policy changes nothing: the committed generation and its enforcement stay.
    @Test("a rejected policy leaves the committed one in force")
    func rejectedPolicyChangesNothing() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        _ = try fx.commit(Self.policy(blockPort: l.port, permitPort: 1, v6: false))
        let before = try #require(try fx.engine.committedPolicy()).generation
        let bad = try Policy.parse(
            """
            filters:
              - displayData: { name: bad }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: { type: FWP_UINT8, uint8: 16 }
                action: { type: FWP_ACTION_PERMIT }
            """, sourceName: "bad")
        #expect(throws: FWPError.self) { try fx.engine.commit(bad) }
        #expect(try fx.engine.committedPolicy()?.generation == before)
        let w = try fx.workload("still")
        let r = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(l.port)]])
        #expect(r[0].errno == EPERM)
    }

    /// Attaching to a missing cgroup fails clearly and pins nothing.
    @Test("attach to a missing cgroup: clear error, nothing left behind")
    func attachMissingCgroup() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        #expect {
            try fx.engine.attach(workload: "ghost", cgroupPath: fx.cgroupParent + "/does-not-exist")
        } throws: { "\($0)".contains("cgroup not found") }
        #expect(fx.engine.workloads().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: fx.config.bpffsRoot + "/workloads/ghost"))
        // nested workloads would see every operation twice: refused
        let outer = try fx.workload("outer")
        try CgroupV2.create(outer.cgroupPath + "/inner")
        #expect {
            try fx.engine.attach(workload: "inner", cgroupPath: outer.cgroupPath + "/inner")
        } throws: { "\($0)".contains("cannot nest") }
        #expect(fx.engine.workloads().map(\.name) == ["outer"])
    }

    /// `lfp run`: the command runs under the policy, its status comes back, its cgroup goes.
    @Test("run: command in a new cgroup, exit status, cleanup")
    func runWorkload() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try Listener()
        _ = try fx.commit(Self.policy(blockPort: l.port, permitPort: 1, v6: false))
        let script = "import socket,sys\ntry:\n socket.create_connection(('127.0.0.1',\(l.port)),2)\nexcept PermissionError:\n sys.exit(7)\n"
        let status = try fx.engine.run(workload: "job", command: [KernelFixture.python, "-c", script])
        #expect(status == 7)
        #expect(fx.engine.workloads().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: fx.cgroupParent + "/job"))
    }
}
