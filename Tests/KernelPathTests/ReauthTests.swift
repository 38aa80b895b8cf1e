import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// Reauthorization of live connections (issue 7): a commit classifies every live connection of
/// lfp's workloads again, with IS_REAUTHORIZE at the layer that authorized it, and ends those
/// the new policy blocks (bpf/lib/reauth.h). Real sockets in real cgroups; every wait has a
/// timeout, and the children say when they are ready.
@Suite("Reauthorization of live connections", .serialized)
struct ReauthTests {
    static func layer(_ kind: String, _ v6: Bool) -> Layer { Layer(name: "FWPM_LAYER_ALE_\(kind)_\(v6 ? "V6" : "V4")")! }
    static let isReauthorize: UInt32 = 0x4
    static let isLoopback: UInt32 = 0x1

    /// The children's watch loop over `socks` (socket -> label): data is printed and answered with
    /// "pong" ("bye" ends the watch of that socket); an error is printed, then what a send on the
    /// same socket gives. Ends with "done" once every socket is finished, or "idle" after 10 s.
    static let watch = """
        def name(e):
            return errno.errorcode.get(e, str(e))
        pending = dict(socks)
        while pending:
            r, _, _ = select.select(list(pending), [], [], 10)
            if not r:
                print('idle', flush=True)
                break
            for s in r:
                label = pending[s]
                try:
                    d = s.recv(16)
                except OSError as e:
                    del pending[s]
                    print(f'{label} err {name(e.errno)}', flush=True)
                    try:
                        s.send(b'x')
                        print(f'{label} send ok', flush=True)
                    except OSError as e2:
                        print(f'{label} send {name(e2.errno)}', flush=True)
                    continue
                if not d or d == b'bye':
                    del pending[s]
                    print(f'{label} {"bye" if d else "eof"}', flush=True)
                else:
                    print(f'{label} data {d.decode()}', flush=True)
                    s.send(b'pong')
        print('done', flush=True)
        """

    /// argv: host, tcp|udp, ports. Connects one socket per port (a UDP one says hello, so the
    /// peer learns its address), prints "ready", then watches them, labelled by remote port.
    static let client =
        """
        import errno, select, socket, sys
        host, kind = sys.argv[1], sys.argv[2]
        fam = socket.AF_INET6 if ':' in host else socket.AF_INET
        typ = socket.SOCK_DGRAM if kind == 'udp' else socket.SOCK_STREAM
        socks = {}
        for p in sys.argv[3:]:
            s = socket.socket(fam, typ)
            s.settimeout(3)
            s.connect((host, int(p)))
            if typ == socket.SOCK_DGRAM:
                s.send(b'hello')
            socks[s] = p
        print('ready', flush=True)

        """ + watch

    /// argv: host, n. Listens, prints its port, accepts n connections, prints "ready", then
    /// watches them, labelled by the client's port.
    static let server =
        """
        import errno, select, socket, sys
        host, n = sys.argv[1], int(sys.argv[2])
        l = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
        l.bind((host, 0))
        l.listen(8)
        print(l.getsockname()[1], flush=True)
        l.settimeout(5)
        socks = {}
        for _ in range(n):
            c, a = l.accept()
            socks[c] = str(a[1])
        print('ready', flush=True)

        """ + watch

    /// Commit `yaml` and return the outcome with the committed filterIds by name.
    static func commit(_ fx: KernelFixture, _ yaml: String) throws -> (Engine.Commit, [String: UInt64]) {
        let c = try fx.engine.commit(try Policy.parse(yaml, sourceName: "reauth"))
        let (_, committed) = try #require(try fx.engine.committedPolicy())
        return (c, Dictionary(committed.filters.map { ($0.displayData.name ?? "", $0.filterId) }, uniquingKeysWith: { a, _ in a }))
    }

    /// One filter named "block" at `layer`: remote port and protocol, plus `remoteAddress` and
    /// `more` conditions (flow-style YAML) if given.
    static func blockRemotePort(
        _ port: UInt16, layer: String, v6: Bool, protocol proto: UInt8, remoteAddress: String? = nil, more: [String] = []
    ) -> String {
        var conditions = [
            "{ fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }",
            "{ fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: \(proto) } }",
        ]
        if let a = remoteAddress {
            let value = v6 ? "{ type: FWP_BYTE_ARRAY16_TYPE, byteArray16: \"\(a)\" }" : "{ type: FWP_UINT32, uint32: \(a) }"
            conditions.append("{ fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS, matchType: FWP_MATCH_EQUAL, conditionValue: \(value) }")
        }
        conditions += more
        return """
            filters:
              - displayData: { name: block }
                layerKey: FWPM_LAYER_ALE_\(layer)_\(v6 ? "V6" : "V4")
                filterCondition:
            \(conditions.map { "      - " + $0 }.joined(separator: "\n"))
                action: { type: FWP_ACTION_BLOCK }
            """
    }

    /// IP_LOCAL_INTERFACE as the authorizing hook saw it: FWP_EMPTY for an unbound socket at
    /// AUTH_CONNECT, lo (ifindex 1) as the arrival device at RECV_ACCEPT.
    static let unboundDevice =
        "{ fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_EMPTY } }"
    static let arrivedOnLoopback =
        "{ fieldKey: FWPM_CONDITION_IP_LOCAL_INTERFACE, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT64, uint64: 1 } }"

    /// The events of one handle as "LAYER:ACTION" (V4/V6 left out).
    static func steps(_ events: [ALEEvent], handle: UInt64) -> [String] {
        events.filter { $0.transportEndpointHandle == handle }.map { e in
            let kind = (e.layer?.name ?? "?").replacingOccurrences(of: "FWPM_LAYER_ALE_", with: "")
                .replacingOccurrences(of: "_V4", with: "").replacingOccurrences(of: "_V6", with: "")
            return "\(kind):\(e.actionType.replacingOccurrences(of: "FWP_ACTION_", with: ""))"
        }
    }

    static func reauthEvents(_ events: [ALEEvent]) -> [ALEEvent] {
        events.filter { $0.conditionFlags & isReauthorize != 0 && $0.isBlock }
    }

    static func kill(_ p: PyProc) {
        if p.process.isRunning { Glibc.kill(p.process.processIdentifier, SIGKILL) }  // SIGTERM is blocked in the test's children
    }

    // MARK: (a) outbound TCP

    @Test("an outbound TCP connection the new policy blocks is ended; another one goes on", arguments: [false, true])
    func outboundTCP(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("client")
        let host = v6 ? "::1" : "127.0.0.1"
        let a = try Listener(v6: v6), b = try Listener(v6: v6)
        let sub = try fx.engine.subscribe()
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: [host, "tcp", String(a.port), String(b.port)])
        defer { Self.kill(py) }
        let fa = try Sock.accept(a), fb = try Sock.accept(b)
        defer { close(fa); close(fb) }
        try #require(py.readLine(timeoutMs: 5000) == "ready")

        let (c, ids) = try Self.commit(
            fx, Self.blockRemotePort(a.port, layer: "AUTH_CONNECT", v6: v6, protocol: 6, more: [Self.unboundDevice]))
        #expect(c.reauthorization.ran && c.reauthorization.endedConnections == 1, "\(c.reauthorization)")
        #expect(c.reauthorization.error == nil)
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) err ECONNABORTED", "the client's recv fails with ECONNABORTED")
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) send EPIPE", "and so does a later send")
        #expect(Sock.recv(fa) == .failed(ECONNRESET), "the peer gets a RST")
        // the connection to the other port carries data both ways
        try Sock.send(fb, "ping")
        #expect(py.readLine(timeoutMs: 5000) == "\(b.port) data ping")
        #expect(Sock.recv(fb) == .data("pong"))
        try Sock.send(fb, "bye")
        #expect(py.readLine(timeoutMs: 5000) == "\(b.port) bye")
        #expect(py.readLine(timeoutMs: 5000) == "done")
        _ = py.finish()

        let events = await fx.collect(sub) { evs in
            evs.filter { $0.layer?.kind == .resourceRelease }.count >= 2
        }
        let reauth = Self.reauthEvents(events)
        try #require(reauth.count == 1, "one reauthorization block: \(events.map { $0.render() })")
        let e = reauth[0]
        #expect(e.layer == Self.layer("AUTH_CONNECT", v6) && e.filterId == ids["block"] && e.remotePort == a.port)
        #expect(e.conditionFlags == Self.isReauthorize | Self.isLoopback, "IS_REAUTHORIZE and IS_LOOPBACK")
        #expect(e.errno == "ECONNABORTED" && e.policyGeneration == c.generation && e.workload == w.name)
        #expect(e.localPort != nil && e.ipProtocol == 6)
        #expect(
            Self.steps(events, handle: e.transportEndpointHandle) == [
                "RESOURCE_ASSIGNMENT:PERMIT", "AUTH_CONNECT:PERMIT", "RESOURCE_ASSIGNMENT:PERMIT", "FLOW_ESTABLISHED:NONE",
                "AUTH_CONNECT:BLOCK", "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ], "the ended connection's lifetime: \(events.map { $0.render() })")
        let other = try #require(events.first { $0.layer == Self.layer("AUTH_CONNECT", v6) && $0.remotePort == b.port })
        #expect(
            !Self.steps(events, handle: other.transportEndpointHandle).contains("AUTH_CONNECT:BLOCK"),
            "a permitted connection is left alone (and silent)")
    }

    // MARK: (b) inbound TCP

    @Test("an accepted TCP connection is ended by a RECV_ACCEPT block of its remote port", arguments: [false, true])
    func inboundTCP(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("server")
        let host = v6 ? "::1" : "127.0.0.1"
        let sub = try fx.engine.subscribe()
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.server, args: [host, "2"])
        defer { Self.kill(py) }
        let port = try #require(py.readLine(timeoutMs: 5000).flatMap(UInt16.init))
        let c1 = Net.connect(host, port), c2 = Net.connect(host, port)
        defer { close(c1); close(c2) }
        try #require(c1 >= 0 && c2 >= 0, "connect: \(c1) \(c2)")
        let p1 = Sock.localPort(c1), p2 = Sock.localPort(c2)
        try #require(py.readLine(timeoutMs: 5000) == "ready")

        let (c, ids) = try Self.commit(
            fx,
            Self.blockRemotePort(
                p1, layer: "AUTH_RECV_ACCEPT", v6: v6, protocol: 6, remoteAddress: host, more: [Self.arrivedOnLoopback]))
        #expect(c.reauthorization.endedConnections == 1, "\(c.reauthorization)")
        #expect(py.readLine(timeoutMs: 5000) == "\(p1) err ECONNABORTED")
        #expect(py.readLine(timeoutMs: 5000) == "\(p1) send EPIPE")
        #expect(Sock.recv(c1) == .failed(ECONNRESET), "the remote client gets a RST")
        try Sock.send(c2, "ping")
        #expect(py.readLine(timeoutMs: 5000) == "\(p2) data ping")
        #expect(Sock.recv(c2) == .data("pong"))
        try Sock.send(c2, "bye")
        #expect(py.readLine(timeoutMs: 5000) == "\(p2) bye")
        #expect(py.readLine(timeoutMs: 5000) == "done")
        _ = py.finish()

        let events = await fx.collect(sub) { evs in evs.filter { $0.layer?.kind == .resourceRelease }.count >= 3 }
        let reauth = Self.reauthEvents(events)
        try #require(reauth.count == 1, "\(events.map { $0.render() })")
        let e = reauth[0]
        let listen = try #require(events.first { $0.layer == Self.layer("AUTH_LISTEN", v6) })
        #expect(e.layer == Self.layer("AUTH_RECV_ACCEPT", v6) && e.filterId == ids["block"])
        #expect(e.remotePort == p1 && e.localPort == port && e.remoteAddress == host)
        #expect(e.conditionFlags == Self.isReauthorize | Self.isLoopback)
        #expect(e.parentEndpointHandle == listen.transportEndpointHandle, "the accepted connection names its listener")
        #expect(
            Self.steps(events, handle: e.transportEndpointHandle) == [
                "RESOURCE_ASSIGNMENT:PERMIT", "FLOW_ESTABLISHED:NONE", "AUTH_RECV_ACCEPT:BLOCK",
                "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ], "\(events.map { $0.render() })")
        #expect(
            !Self.steps(events, handle: listen.transportEndpointHandle).contains("AUTH_RECV_ACCEPT:BLOCK"),
            "the listener itself is not reauthorized")
    }

    // MARK: (c) connected UDP

    @Test("a connected UDP socket the new policy blocks is disconnected; another one goes on", arguments: [false, true])
    func connectedUDP(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("udp")
        let host = v6 ? "::1" : "127.0.0.1"
        let a = try Listener(v6: v6, udp: true), b = try Listener(v6: v6, udp: true)
        let sub = try fx.engine.subscribe()
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: [host, "udp", String(a.port), String(b.port)])
        defer { Self.kill(py) }
        try #require(py.readLine(timeoutMs: 5000) == "ready")
        _ = try Sock.receiveFrom(a)
        let (hello, peerB) = try Sock.receiveFrom(b)
        #expect(hello == "hello")

        let (c, ids) = try Self.commit(fx, Self.blockRemotePort(a.port, layer: "AUTH_CONNECT", v6: v6, protocol: 17))
        #expect(c.reauthorization.endedConnections == 1, "\(c.reauthorization)")
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) err ECONNABORTED", "recv reports the abort")
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) send EDESTADDRREQ", "the socket is no longer connected")
        try Sock.sendTo(b, "ping", peerB)
        #expect(py.readLine(timeoutMs: 5000) == "\(b.port) data ping")
        #expect(try Sock.receiveFrom(b).0 == "pong")
        try Sock.sendTo(b, "bye", peerB)
        #expect(py.readLine(timeoutMs: 5000) == "\(b.port) bye")
        #expect(py.readLine(timeoutMs: 5000) == "done")
        _ = py.finish()

        let events = await fx.collect(sub) { evs in evs.filter { $0.layer?.kind == .resourceRelease }.count >= 2 }
        let reauth = Self.reauthEvents(events)
        try #require(reauth.count == 1, "\(events.map { $0.render() })")
        let e = reauth[0]
        #expect(e.layer == Self.layer("AUTH_CONNECT", v6) && e.filterId == ids["block"] && e.remotePort == a.port)
        #expect(e.ipProtocol == 17 && e.conditionFlags == Self.isReauthorize | Self.isLoopback)
        // the UDP socket lives on (disconnected): its closure and release come when it is closed
        #expect(
            Self.steps(events, handle: e.transportEndpointHandle).suffix(3) == [
                "AUTH_CONNECT:BLOCK", "ENDPOINT_CLOSURE:NONE", "RESOURCE_RELEASE:NONE",
            ], "\(events.map { $0.render() })")
    }

    // MARK: (d) the switch

    @Test("lfpReauthorize: false leaves established connections alone; the next commit without it ends them")
    func switchedOff() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("keep")
        let a = try Listener()
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: ["127.0.0.1", "tcp", String(a.port)])
        defer { Self.kill(py) }
        let fa = try Sock.accept(a)
        defer { close(fa) }
        try #require(py.readLine(timeoutMs: 5000) == "ready")

        let block = Self.blockRemotePort(a.port, layer: "AUTH_CONNECT", v6: false, protocol: 6)
        let (off, _) = try Self.commit(fx, "lfpReauthorize: false\n" + block)
        #expect(!off.reauthorization.ran && off.reauthorization.endedConnections == 0)
        #expect(try fx.engine.committedPolicy()?.policy.lfpReauthorize == false, "the switch is recorded with the policy")
        try Sock.send(fa, "ping")
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) data ping", "the connection survived the commit")
        #expect(Sock.recv(fa) == .data("pong"))

        let (on, _) = try Self.commit(fx, block)
        #expect(on.reauthorization.ran && on.reauthorization.endedConnections == 1)
        #expect(try fx.engine.committedPolicy()?.policy.lfpReauthorize == true)
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) err ECONNABORTED")
        _ = py.finish()
    }

    // MARK: (e) outside any workload

    @Test("a matching connection of a process outside every workload is never ended")
    func outsideWorkload() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let w = try fx.workload("inside")
        let a = try Listener()
        // the test process's own connection to the port the policy will block
        let mine = Net.connect("127.0.0.1", a.port)
        try #require(mine >= 0, "connect: \(-mine)")
        defer { close(mine) }
        let peer = try Sock.accept(a)
        defer { close(peer) }
        // and a workload's connection to the same port, so the pass has something to end
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: ["127.0.0.1", "tcp", String(a.port)])
        defer { Self.kill(py) }
        let theirs = try Sock.accept(a)
        defer { close(theirs) }
        try #require(py.readLine(timeoutMs: 5000) == "ready")

        let (c, _) = try Self.commit(fx, Self.blockRemotePort(a.port, layer: "AUTH_CONNECT", v6: false, protocol: 6))
        #expect(c.reauthorization.ran && c.reauthorization.endedConnections == 1, "only the workload's connection")
        #expect(py.readLine(timeoutMs: 5000) == "\(a.port) err ECONNABORTED")
        try Sock.send(mine, "ping")
        #expect(Sock.recv(peer) == .data("ping"), "the test process's connection still carries data")
        try Sock.send(peer, "pong")
        #expect(Sock.recv(mine) == .data("pong"))
        _ = py.finish()
    }
}

extension ReauthTests {
    @Test("a cgroup nested in a workload is the workload's; a detached workload's sockets are left alone")
    func nestedAndDetached() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit("filters: []")
        let outer = try fx.workload("outer")
        let inner = outer.cgroupPath + "/inner"
        try CgroupV2.create(inner)
        let gone = try fx.workload("gone")
        let a = try Listener()
        let nested = try PyProc(cgroup: inner, script: Self.client, args: ["127.0.0.1", "tcp", String(a.port)])
        defer { Self.kill(nested) }
        let fNested = try Sock.accept(a)
        defer { close(fNested) }
        try #require(nested.readLine(timeoutMs: 5000) == "ready")
        let old = try PyProc(cgroup: gone.cgroupPath, script: Self.client, args: ["127.0.0.1", "tcp", String(a.port)])
        defer { Self.kill(old) }
        let fOld = try Sock.accept(a)
        defer { close(fOld) }
        try #require(old.readLine(timeoutMs: 5000) == "ready")
        try fx.engine.detach(workload: gone.name)

        let (c, _) = try Self.commit(fx, Self.blockRemotePort(a.port, layer: "AUTH_CONNECT", v6: false, protocol: 6))
        #expect(c.reauthorization.endedConnections == 1, "\(c.reauthorization)")
        #expect(nested.readLine(timeoutMs: 5000) == "\(a.port) err ECONNABORTED", "programs attached to a cgroup cover its subtree")
        try Sock.send(fOld, "ping")
        #expect(old.readLine(timeoutMs: 5000) == "\(a.port) data ping", "no longer a workload: not lfp's to end")
        #expect(Sock.recv(fOld) == .data("pong"))
    }
}

/// Socket helpers for the test's side of each connection; every wait has a timeout.
enum Sock {
    enum Received: Equatable {
        case data(String)
        case failed(Int32)  // errno
        case closed
        case timedOut
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func wait(_ fd: Int32, timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, timeoutMs) > 0
    }

    static func accept(_ l: Listener, timeoutMs: Int32 = 5000) throws -> Int32 {
        guard wait(l.fd, timeoutMs: timeoutMs) else { throw Failure(description: "no connection on port \(l.port)") }
        let fd = Glibc.accept(l.fd, nil, nil)
        guard fd >= 0 else { throw Failure(description: "accept: errno \(errno)") }
        return fd
    }

    static func recv(_ fd: Int32, timeoutMs: Int32 = 5000) -> Received {
        guard wait(fd, timeoutMs: timeoutMs) else { return .timedOut }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = Glibc.recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
        if n < 0 { return .failed(errno) }
        return n == 0 ? .closed : .data(String(decoding: buf[0..<n], as: UTF8.self))
    }

    static func send(_ fd: Int32, _ text: String) throws {
        guard Glibc.send(fd, text, text.utf8.count, Int32(MSG_NOSIGNAL)) == text.utf8.count else {
            throw Failure(description: "send: errno \(errno)")
        }
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var a = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        // sin_port and sin6_port sit at the same offset
        return withUnsafeBytes(of: &a) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
    }

    /// A datagram on a UDP Listener and who sent it.
    static func receiveFrom(_ l: Listener, timeoutMs: Int32 = 5000) throws -> (String, sockaddr_storage) {
        guard wait(l.fd, timeoutMs: timeoutMs) else { throw Failure(description: "no datagram on port \(l.port)") }
        var buf = [UInt8](repeating: 0, count: 64)
        var from = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &from) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(l.fd, &buf, buf.count, Int32(MSG_DONTWAIT), $0, &len) }
        }
        guard n >= 0 else { throw Failure(description: "recvfrom: errno \(errno)") }
        return (String(decoding: buf[0..<n], as: UTF8.self), from)
    }

    static func sendTo(_ l: Listener, _ text: String, _ to: sockaddr_storage) throws {
        var to = to
        let len = socklen_t(to.ss_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let n = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(l.fd, text, text.utf8.count, 0, $0, len) }
        }
        guard n == text.utf8.count else { throw Failure(description: "sendto: errno \(errno)") }
    }
}
