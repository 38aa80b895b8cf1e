import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// ALE endpoint lifetime (issue 4): the exact event sequence per endpoint — layer, handle,
/// parent handle, verdict — for real sockets in a real cgroup.
@Suite("ALE endpoint lifetime", .serialized)
struct LifetimeTests {
    static func layer(_ kind: String, _ v6: Bool) -> Layer { Layer(name: "FWPM_LAYER_ALE_\(kind)_\(v6 ? "V6" : "V4")")! }

    /// Events of one handle as (layer kind, parent, action) for readable comparisons.
    static func steps(_ events: [ALEEvent], handle: UInt64) -> [String] {
        events.filter { $0.transportEndpointHandle == handle }.map { e in
            let kind = (e.layer?.name ?? "?").replacingOccurrences(of: "FWPM_LAYER_ALE_", with: "")
                .replacingOccurrences(of: "_V4", with: "").replacingOccurrences(of: "_V6", with: "")
            let act = e.actionType.replacingOccurrences(of: "FWP_ACTION_", with: "")
            return e.parentEndpointHandle == 0 ? "\(kind):\(act)" : "\(kind):\(act)^\(e.parentEndpointHandle)"
        }
    }

    /// Listen on argv[1], print the port, wait 1.5 s for one connection, print what happened.
    static let listenOnce = """
        import socket, sys
        s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
        s.bind((sys.argv[1], 0)); s.listen(4); print(s.getsockname()[1])
        s.settimeout(1.5)
        try:
            s.accept(); print('accepted')
        except socket.timeout:
            print('nothing')
        s.close()
        """

    static func releases(_ events: [ALEEvent], _ n: Int) -> Bool {
        events.filter { $0.layer?.kind == .resourceRelease }.count >= n
    }

    @Test("TCP server: accepts two connections, closes them, then itself", arguments: [false, true])
    func tcpServer(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("server")
        let sub = try fx.engine.subscribe()
        let host = v6 ? "::1" : "127.0.0.1"
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
                s.bind((sys.argv[1], 0)); s.listen(8); print(s.getsockname()[1])
                for _ in range(2):
                    c, _ = s.accept(); c.close()
                s.close(); print('done')
                """, args: [host])
        let port = try #require(py.readLine().flatMap(UInt16.init))
        var clientPorts: [UInt16] = []
        for _ in 0..<2 {
            let fd = Net.connect(host, port)
            try #require(fd >= 0, "connect: \(-fd)")
            clientPorts.append(Self.localPort(fd))
            close(fd)
        }
        let (rest, status) = py.finish()
        #expect(status == 0 && rest.contains("done"))
        let events = await fx.collect(sub) { Self.releases($0, 3) }
        let listen = try #require(events.first { $0.layer == Self.layer("AUTH_LISTEN", v6) }, "\(events.map { $0.render() })")
        let L = listen.transportEndpointHandle
        #expect(
            Self.steps(events, handle: L) == [
                "RESOURCE_ASSIGNMENT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT", "AUTH_LISTEN:PERMIT",
                "AUTH_RECV_ACCEPT:PERMIT", "AUTH_RECV_ACCEPT:PERMIT",
                "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ],
            "listener: \(events.map { $0.render() })")
        let accepts = events.filter { $0.layer == Self.layer("AUTH_RECV_ACCEPT", v6) }
        #expect(Set(accepts.compactMap(\.remotePort)) == Set(clientPorts))
        let children = Set(events.filter { $0.parentEndpointHandle == L }.map(\.transportEndpointHandle))
        #expect(children.count == 2, "accepted connections carry the listener as parent")
        for c in children {
            #expect(
                Self.steps(events, handle: c) == [
                    "RESOURCE_ASSIGNMENT:PERMIT^\(L)", "FLOW_ESTABLISHED:NONE^\(L)",
                    "ENDPOINT_CLOSURE:NONE^\(L)", "RESOURCE_RELEASE:NONE^\(L)",
                ],
                "child \(c): \(events.map { $0.render() })")
        }
    }

    @Test("UDP: three peers (one twice), a reply, one closure", arguments: [false, true])
    func udpPeers(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("udp")
        let peers = try (0..<3).map { _ in try Listener(v6: v6, udp: true) }
        let sub = try fx.engine.subscribe()
        let host = v6 ? "::1" : "127.0.0.1"
        let replier = Thread {  // the first peer answers the first datagram it gets
            var buf = [UInt8](repeating: 0, count: 64)
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(peers[0].fd, &buf, buf.count, 0, $0, &len) }
            }
            if n > 0 {
                _ = withUnsafePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(peers[0].fd, "pong", 4, 0, $0, len) } }
            }
        }
        replier.start()
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                host = sys.argv[1]; ports = [int(p) for p in sys.argv[2:]]
                s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
                for p in [ports[0], ports[1], ports[2], ports[0]]:
                    s.sendto(b'ping', (host, p))
                s.settimeout(3); print(s.recv(16).decode()); s.close()
                """, args: [host] + peers.map { String($0.port) })
        let (out, status) = py.finish()
        #expect(status == 0 && out.contains("pong"))
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let handle = try #require(events.first { $0.layer?.kind == .resourceRelease }?.transportEndpointHandle)
        #expect(
            Self.steps(events, handle: handle) == [
                "RESOURCE_ASSIGNMENT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT",
                "AUTH_CONNECT:PERMIT", "FLOW_ESTABLISHED:NONE", "AUTH_CONNECT:PERMIT", "FLOW_ESTABLISHED:NONE",
                "AUTH_CONNECT:PERMIT", "FLOW_ESTABLISHED:NONE", "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ], "\(events.map { $0.render() })")
        let connects = events.filter { $0.layer == Self.layer("AUTH_CONNECT", v6) }
        #expect(connects.compactMap(\.remotePort) == peers.map(\.port), "one AUTH_CONNECT per new peer, in order")
        let bind = events.filter { $0.layer == Self.layer("RESOURCE_ASSIGNMENT", v6) }.last
        #expect(bind?.localPort != nil && bind?.conditionFlags == 0x200, "implicit bind with its port and IS_IMPLICIT_BIND")
        #expect(!events.contains { $0.layer == Self.layer("AUTH_RECV_ACCEPT", v6) }, "the reply belongs to an existing flow")
        replier.cancel()
    }

    @Test("TCP client refused by the peer, and a socket closed unused", arguments: [false, true])
    func refusedAndUnused(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("refused")
        let sub = try fx.engine.subscribe()
        let closed = Net.freePort(v6: v6)
        let fam = v6 ? 6 : 4
        let r = try fx.runClient(
            in: w,
            [
                ["family": fam, "addr": v6 ? "::1" : "127.0.0.1", "port": Int(closed)],
                ["family": fam, "op": "none"],
            ])
        #expect(r[0].errno == ECONNREFUSED)
        let events = await fx.collect(sub) { Self.releases($0, 2) }
        let handles = events.filter { $0.layer == Self.layer("RESOURCE_RELEASE", v6) }.map(\.transportEndpointHandle)
        try #require(handles.count == 2)
        #expect(
            Self.steps(events, handle: handles[0]) == [
                "RESOURCE_ASSIGNMENT:PERMIT", "AUTH_CONNECT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT",
                "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ],
            "refused: closure because AUTH_CONNECT authorized it; no FLOW_ESTABLISHED")
        #expect(Self.steps(events, handle: handles[1]) == ["RESOURCE_ASSIGNMENT:PERMIT", "RESOURCE_RELEASE:NONE"], "unused")
    }

    @Test("blocked listen: AUTH_LISTEN block, nobody can connect", arguments: [false, true])
    func blockedListen(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let host = v6 ? "::1" : "127.0.0.1"
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-listen }
                layerKey: FWPM_LAYER_ALE_AUTH_LISTEN_\(v6 ? "V6" : "V4")
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("listener")
        let sub = try fx.engine.subscribe()
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.listenOnce, args: [host])
        let port = try #require(py.readLine().flatMap(UInt16.init))
        let fd = Net.connect(host, port, timeoutMs: 700)
        #expect(fd == -ETIMEDOUT, "the blocked listener's SYNs are dropped")
        if fd >= 0 { close(fd) }
        let (out, _) = py.finish()
        #expect(out.contains("nothing"))
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let listen = try #require(events.first { $0.layer == Self.layer("AUTH_LISTEN", v6) })
        #expect(listen.isBlock && listen.filterId == ids["no-listen"] && listen.localPort == port)
        #expect(!events.contains { $0.layer?.kind == .authRecvAccept })
        #expect(Self.steps(events, handle: listen.transportEndpointHandle).suffix(2) == ["ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE"])
    }

    @Test("blocked inbound connection: AUTH_RECV_ACCEPT block", arguments: [false, true])
    func blockedInbound(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-inbound }
                layerKey: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_\(v6 ? "V6" : "V4")
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 6 } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("inbound")
        let sub = try fx.engine.subscribe()
        let host = v6 ? "::1" : "127.0.0.1"
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.listenOnce, args: [host])
        let port = try #require(py.readLine().flatMap(UInt16.init))
        let fd = Net.connect(host, port, timeoutMs: 700)
        #expect(fd == -ETIMEDOUT)
        if fd >= 0 { close(fd) }
        let (out, _) = py.finish()
        #expect(out.contains("nothing"))
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let blocked = events.filter { $0.layer == Self.layer("AUTH_RECV_ACCEPT", v6) }
        #expect(blocked.count == 1, "retransmitted SYNs reuse the flow's verdict: \(events.map { $0.render() })")
        #expect(blocked.first?.isBlock == true && blocked.first?.filterId == ids["no-inbound"] && blocked.first?.localPort == port)
    }

    @Test("blocked UDP peer: EPERM for that peer only, one event", arguments: [false, true])
    func blockedUDPPeer(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let host = v6 ? "::1" : "127.0.0.1"
        let peers = try (0..<3).map { _ in try Listener(v6: v6, udp: true) }
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-peer-2 }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_\(v6 ? "V6" : "V4")
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(peers[1].port) } }
                  - { fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: 17 } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("udpblock")
        let sub = try fx.engine.subscribe()
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                host = sys.argv[1]
                s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM); out = []
                for p in sys.argv[2:]:
                    try:
                        s.sendto(b'x', (host, int(p))); out.append('ok')
                    except PermissionError:
                        out.append('EPERM')
                print(' '.join(out)); s.close()
                """, args: [host] + [peers[0].port, peers[1].port, peers[1].port, peers[2].port].map(String.init))
        let (out, _) = py.finish()
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "ok EPERM EPERM ok")
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let connects = events.filter { $0.layer == Self.layer("AUTH_CONNECT", v6) }
        #expect(connects.map(\.actionType) == ["FWP_ACTION_PERMIT", "FWP_ACTION_BLOCK", "FWP_ACTION_PERMIT"])
        #expect(connects[safe: 1]?.filterId == ids["no-peer-2"] && connects[safe: 1]?.errno == "EPERM")
    }

    @Test("sockets that predate the attach are swept and their closure and release reported")
    func preexistingSockets() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let cg = fx.cgroupParent + "/old"
        try CgroupV2.create(cg)
        let py = try PyProc(
            cgroup: cg,
            script: """
                import socket, sys
                l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
                print(l.getsockname()[1], u.getsockname()[1], flush=True)
                sys.stdin.readline()  # the test has attached
                l.close(); u.close(); print('closed')
                """)
        let ports = try #require(py.readLine()).split(separator: " ").compactMap { UInt16($0) }
        let sub = try fx.engine.subscribe()
        try fx.engine.attach(workload: "old", cgroupPath: cg)
        py.send()
        let (out, _) = py.finish()
        #expect(out.contains("closed"))
        let events = await fx.collect(sub) { Self.releases($0, 2) }
        for port in ports {
            let found = try #require(
                events.first { $0.layer == .resourceAssignmentV4 && $0.localPort == port },
                "swept socket on port \(port): \(events.map { $0.render() })")
            #expect(found.actionType == "FWP_ACTION_NONE")
            #expect(
                Self.steps(events, handle: found.transportEndpointHandle) == ["RESOURCE_ASSIGNMENT:NONE", "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE"])
        }
    }

    @Test("a connection nobody accept()ed still gets its RESOURCE_RELEASE when the listener closes")
    func neverAccepted() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("lazy")
        let sub = try fx.engine.subscribe()
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(4); print(s.getsockname()[1], flush=True)
                sys.stdin.readline()  # the test's connection is in the backlog
                s.close(); print('closed')
                """)
        let port = try #require(py.readLine().flatMap(UInt16.init))
        let fd = Net.connect("127.0.0.1", port)
        try #require(fd >= 0)
        py.send()
        let (out, _) = py.finish()
        #expect(out.contains("closed"))
        close(fd)
        let events = await fx.collect(sub) { Self.releases($0, 2) }
        let listen = try #require(events.first { $0.layer == .authListenV4 })
        let child = try #require(events.first { $0.parentEndpointHandle == listen.transportEndpointHandle })
        #expect(
            Self.steps(events, handle: child.transportEndpointHandle).suffix(2)
                == ["ENDPOINT_CLOSURE:NONE^\(listen.transportEndpointHandle)", "RESOURCE_RELEASE:NONE^\(listen.transportEndpointHandle)"],
            "\(events.map { $0.render() })")
    }

    @Test("a TCP socket connecting again after a refused connect: a new bind, a new closure")
    func reconnect() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("again")
        let l = try Listener()
        let closed = Net.freePort()
        let sub = try fx.engine.subscribe()
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket()
                try:
                    s.connect(('127.0.0.1', int(sys.argv[1])))
                except ConnectionRefusedError:
                    print('refused')
                s.connect(('127.0.0.1', int(sys.argv[2]))); print(s.getsockname()[1]); s.close()
                """, args: [String(closed), String(l.port)])
        let (out, status) = py.finish()
        #expect(status == 0 && out.hasPrefix("refused"))
        let port = UInt16(out.split(separator: "\n").last.map(String.init) ?? "")
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let handle = try #require(events.first { $0.layer == .resourceReleaseV4 }?.transportEndpointHandle)
        #expect(
            Self.steps(events, handle: handle) == [
                "RESOURCE_ASSIGNMENT:PERMIT",
                "AUTH_CONNECT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT", "ENDPOINT_CLOSURE:NONE",
                "AUTH_CONNECT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT", "FLOW_ESTABLISHED:NONE", "ENDPOINT_CLOSURE:NONE",
                "RESOURCE_RELEASE:NONE",
            ], "\(events.map { $0.render() })")
        let binds = events.filter { $0.layer == .resourceAssignmentV4 && $0.localPort != nil }
        #expect(binds.last?.localPort == port, "the second connection reports the port it really got")
    }

    @Test("a socket created before the attach and never bound: found at release, paired with an assignment")
    func unsweptSocket() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let cg = fx.cgroupParent + "/early"
        try CgroupV2.create(cg)
        let py = try PyProc(
            cgroup: cg,
            script: """
                import socket, sys
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print('ready', flush=True)
                sys.stdin.readline()  # the test has attached
                u.close(); print('closed')
                """)
        #expect(py.readLine() == "ready")
        let sub = try fx.engine.subscribe()
        try fx.engine.attach(workload: "early", cgroupPath: cg)
        py.send()
        _ = py.finish()
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let release = try #require(events.first { $0.layer == .resourceReleaseV4 })
        #expect(Self.steps(events, handle: release.transportEndpointHandle) == ["RESOURCE_ASSIGNMENT:NONE", "RESOURCE_RELEASE:NONE"])
    }

    @Test("a policy commit reauthorizes UDP flows at their next datagram (IS_REAUTHORIZE)")
    func reauthorize() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("reauth")
        let peer = try Listener(udp: true)
        let sub = try fx.engine.subscribe()
        let py = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b'1', ('127.0.0.1', int(sys.argv[1]))); print('sent', flush=True)
                sys.stdin.readline()  # the test has committed the new policy
                try:
                    s.sendto(b'2', ('127.0.0.1', int(sys.argv[1]))); print('ok')
                except PermissionError:
                    print('EPERM')
                s.close()
                """, args: [String(peer.port)])
        #expect(py.readLine() == "sent")
        let ids = try fx.commit(
            """
            filters:
              - displayData: { name: no-more }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(peer.port) } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        py.send()
        let (out, _) = py.finish()
        #expect(out.contains("EPERM"), "the existing flow met the new policy")
        let events = await fx.collect(sub) { Self.releases($0, 1) }
        let connects = events.filter { $0.layer == .authConnectV4 }
        #expect(connects.count == 2)
        #expect(connects.first?.isPermit == true && ((connects.first?.conditionFlags ?? 0) & 0x4) == 0)
        #expect(connects.last?.isBlock == true && connects.last?.filterId == ids["no-more"])
        #expect((connects.last?.conditionFlags ?? 0) & 0x4 != 0, "FWP_CONDITION_FLAG_IS_REAUTHORIZE")
        #expect(events.filter { $0.layer == .flowEstablishedV4 }.count == 1)
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var a = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return withUnsafeBytes(of: a) { raw in UInt16(raw[2]) << 8 | UInt16(raw[3]) }  // sin_port / sin6_port, network order
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
