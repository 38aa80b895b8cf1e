import FilterEngine
import FilterModel
import Foundation
import Testing

/// The kernel's hold (bpf/lib/pend.h) driven by the engine alone: a registered terminating
/// callout's filter makes connect() wait, and `HeldOperations.complete` ends the wait with data
/// flowing (permit) or with the refusal's errno (block). Real sockets on loopback; the test plays
/// the daemon's part (it reads the pend event and completes it). The daemon's callouts are
/// tested in CalloutHostTests.
@Suite("Held operations in the kernel", .serialized)
struct PendTests {
    static let calloutKey = UUID(uuidString: "88888888-8888-4888-8888-888888888888")!

    static func policy(port: UInt16, v6: Bool, errno: Int32? = nil) -> String {
        """
        providers:
          - { providerKey: eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee, displayData: { name: P } }
        sublayers:
          - { subLayerKey: 33333333-3333-4333-8333-333333333333, displayData: { name: SL_LO }, providerKey: eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee, weight: 0x1000 }
        callouts:
          - { calloutKey: 88888888-8888-4888-8888-888888888888, displayData: { name: CP }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V\(v6 ? 6 : 4) }
        filters:
          - displayData: { name: F1 }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V\(v6 ? 6 : 4)
            subLayerKey: 33333333-3333-4333-8333-333333333333
            weight: { type: FWP_UINT64, uint64: 10 }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
            action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: 88888888-8888-4888-8888-888888888888\(errno.map { ", lfpBlockErrno: \($0)" } ?? "") }
        """
    }

    /// Publish `yaml` with the callout registered, as the daemon does.
    static func publishWithCallout(_ fx: KernelFixture, _ yaml: String) throws {
        let bfe = BaseFilteringEngine()
        try bfe.load(try Policy.parse(yaml, sourceName: "pend-test"))
        try bfe.registerCallout(ScriptedCallout(calloutKey: calloutKey, returns: .permit))
        try fx.engine.publish(bfe) { generation in
            CommittedPolicy.record(generation: generation, policyJSON: bfe.snapshot().exportJSON())
        }
    }

    /// connect() (blocking, or non-blocking + poll) then send "ping"; prints "ready" before the
    /// connect and "ok" or "err <errno>" after it.
    static let client = """
        import socket, sys, select, errno
        host, port, mode, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        if len(sys.argv) > 5:
            s.setsockopt(socket.SOL_SOCKET, 36, int(sys.argv[5]))  # SO_MARK
        print("ready")
        try:
            if mode == "nonblocking":
                s.setblocking(False)
                rc = s.connect_ex((host, port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, "connect")
                print("inprogress" if rc == errno.EINPROGRESS else "immediate")
                select.select([], [s], [], 300)
                rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    raise OSError(rc, "connect")
                s.setblocking(True)
            else:
                s.settimeout(300)  # generous: under a full run's load the test took over 30 s to complete it
                s.connect((host, port))
            s.send(b"ping")
            print("ok")
        except OSError as e:
            print("err", e.errno)
        """

    static func waitForPend(_ fx: KernelFixture, _ sub: EventSubscription) async -> ALEEvent? {
        await fx.collect(sub, timeout: 5) { $0.contains(where: \.isPended) }.first(where: \.isPended)
    }

    @Test(
        "a held TCP connect completes with data on permit", arguments: [(false, "blocking"), (true, "blocking"), (false, "nonblocking"), (true, "nonblocking")])
    func permit(v6: Bool, mode: String) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("w")
        let l = try Listener(v6: v6)
        try Self.publishWithCallout(fx, Self.policy(port: l.port, v6: v6))
        let sub = try fx.engine.subscribe()
        defer { sub.cancel() }
        let host = v6 ? "::1" : "127.0.0.1"
        let p = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: [host, "\(l.port)", mode, "tcp"])
        #expect(p.readLine(timeoutMs: 5000) == "ready")
        if mode == "nonblocking" { #expect(p.readLine(timeoutMs: 5000) == "inprogress") }
        let e = try #require(await Self.waitForPend(fx, sub))
        #expect(e.layer == (v6 ? .authConnectV6 : .authConnectV4))
        let held = try fx.engine.heldOperations()
        let key = HeldFlowKey(event: e)
        let op = try #require(try held.operation(key))
        #expect(op.waiting)
        // Held: no answer while the kernel waits for the verdict.
        #expect(p.readLine(timeoutMs: 300) == nil)
        #expect(try held.complete(key, .permit) == .completed(refusal: nil))
        #expect(p.readLine(timeoutMs: 5000) == "ok")
        // Data flowed: the listener's accepted connection reads the client's "ping".
        #expect(Net.acceptAndRead(l.fd, timeoutMs: 5000) == "ping")
        #expect(try held.operation(key) == nil)  // forgotten after a permit
        _ = p.finish()
    }

    @Test("a held TCP connect fails at once on block, with the refusal's errno", arguments: [false, true])
    func block(v6: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("w")
        let l = try Listener(v6: v6)
        try Self.publishWithCallout(fx, Self.policy(port: l.port, v6: v6))
        let sub = try fx.engine.subscribe()
        defer { sub.cancel() }
        // Whatever errno the filter chose, a held connect is refused by the peer's forged RST.
        for (wanted, seen) in [(ECONNREFUSED, ECONNREFUSED), (EPERM, ECONNREFUSED)] {
            let p = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: [v6 ? "::1" : "127.0.0.1", "\(l.port)", "blocking", "tcp"])
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            let e = try #require(await Self.waitForPend(fx, sub))
            let held = try fx.engine.heldOperations()
            let started = DispatchTime.now()
            let outcome = try held.complete(HeldFlowKey(event: e), .block(errno: wanted))
            let line = p.readLine(timeoutMs: 5000)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e6
            #expect(line == "err \(seen)", "wanted \(wanted), outcome \(outcome)")
            #expect(ms < 1000, "the refusal took \(ms) ms")
            _ = p.finish()
        }
    }

    @Test(
        "a held UDP flow drops datagrams until completed: permit lets them through, block refuses them",
        arguments: [(false, true), (true, true), (false, false), (true, false)])
    func udp(v6: Bool, permit: Bool) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("w")
        let l = try Listener(v6: v6, udp: true)
        try Self.publishWithCallout(fx, Self.policy(port: l.port, v6: v6))
        let sub = try fx.engine.subscribe()
        defer { sub.cancel() }
        let script = """
            import socket, sys
            host, port = sys.argv[1], int(sys.argv[2])
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((host, port))
            for data in (b"held", b"after"):
                try:
                    s.send(data)
                    print("sent", flush=True)
                except OSError as e:
                    print("err", e.errno, flush=True)
                sys.stdin.readline()
            """
        let p = try PyProc(cgroup: w.cgroupPath, script: script, args: [v6 ? "::1" : "127.0.0.1", "\(l.port)"])
        #expect(p.readLine(timeoutMs: 5000) == "sent")  // send() succeeds while held...
        let e = try #require(await Self.waitForPend(fx, sub))
        #expect(Net.datagram(l.fd, timeoutMs: 200) == nil)  // ... and the datagram is lost (R6.5)
        try fx.engine.heldOperations().complete(HeldFlowKey(event: e), permit ? .permit : .block(errno: EPERM))
        p.send()
        if permit {
            #expect(p.readLine(timeoutMs: 5000) == "sent")
            #expect(Net.datagram(l.fd, timeoutMs: 5000) == "after")
        } else {
            #expect(p.readLine(timeoutMs: 5000) == "err \(EPERM)")
            #expect(Net.datagram(l.fd, timeoutMs: 200) == nil)
        }
        p.send()
        _ = p.finish()
    }

    @Test("a socket with a mark is held too, but not re-injected: permit waits for the kernel's retransmission, block ends it with ECONNABORTED")
    func markedSocket() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("w")
        let l = try Listener()
        try Self.publishWithCallout(fx, Self.policy(port: l.port, v6: false))
        let sub = try fx.engine.subscribe()
        defer { sub.cancel() }
        for permit in [true, false] {
            let p = try PyProc(cgroup: w.cgroupPath, script: Self.client, args: ["127.0.0.1", "\(l.port)", "blocking", "tcp", "7"])
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            let e = try #require(await Self.waitForPend(fx, sub))
            let held = try fx.engine.heldOperations()
            let op = try #require(try held.operation(HeldFlowKey(event: e)))
            #expect(op.kernelRetry, "SO_MARK: no re-injection")
            #expect(p.readLine(timeoutMs: 300) == nil)
            try held.complete(HeldFlowKey(event: e), permit ? .permit : .block(errno: EPERM))
            #expect(p.readLine(timeoutMs: 10_000) == (permit ? "ok" : "err \(ECONNABORTED)"))
            _ = p.finish()
        }
    }
}
