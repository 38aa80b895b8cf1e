import BPFKit
import FilterEngine
import FilterModel
import Foundation
import LFPClient
import NIOConcurrencyHelpers
import ServiceProtocol
import Testing

/// Callouts hosted through `lfp daemon` (docs/callouts.md), end to end: a real daemon process, a
/// callout registered over its socket with LFPClient (this test process is the callout host),
/// filters naming it, and real connects from a workload cgroup that the kernel holds until the
/// callout's answer.
@Suite("Callouts hosted by lfp daemon", .serialized)
struct CalloutHostTests {
    static let key = UUID(uuidString: "88888888-8888-4888-8888-888888888888")!

    /// A terminating (or other) callout filter at AUTH_CONNECT_V4/V6 for `port`.
    static func policy(port: UInt16, v6: Bool = false, action: String = "FWP_ACTION_CALLOUT_TERMINATING", key: String? = nil, flags: String = "")
        -> String
    {
        """
        callouts:
          - { calloutKey: \(key ?? Self.key.lowerString), displayData: { name: CP }, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V\(v6 ? 6 : 4) }
        filters:
          - displayData: { name: F1 }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V\(v6 ? 6 : 4)
            flags: [\(flags)]
            weight: { type: FWP_UINT64, uint64: 10 }
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
            action: { type: \(action), calloutKey: \(key ?? Self.key.lowerString) }
        """
    }

    /// A daemon, a workload and a session that loaded `yaml` (static objects).
    static func setUp(_ extra: [String] = []) throws -> (KernelFixture, DaemonProcess, Workload) {
        let fx = try KernelFixture()
        let d = DaemonProcess(fx)
        try d.start(extra)
        let w = try fx.workload("w")
        return (fx, d, w)
    }

    static func load(_ d: DaemonProcess, _ yaml: String) throws {
        let s = try LFPSession.open(socket: d.socket, name: "policy")
        defer { s.close() }
        _ = try s.add(try Policy.parse(yaml, sourceName: "test"))
    }

    /// Connect from the workload (PendTests.client: "ready", then "ok" or "err N").
    static func connect(_ w: Workload, port: UInt16, v6: Bool = false, mode: String = "blocking") throws -> PyProc {
        try PyProc(cgroup: w.cgroupPath, script: PendTests.client, args: [v6 ? "::1" : "127.0.0.1", "\(port)", mode, "tcp"])
    }

    @Test("register, duplicate, unregister by id and key, another host's callout, busy while a flow context remains")
    func registration() throws {
        let (fx, d, _) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let other = try LFPSession.open(socket: d.socket, name: "other")
        let deleted = NIOLockedValueBox<[UInt64]>([])
        let id = try host.registerCallout(
            key: Self.key, classify: { _ in .permit() }, flowDelete: { d in deleted.withLockedValue { $0.append(d.flowContext) } })
        #expect(id != 0)
        func code(_ body: () throws -> Void) -> String? {
            do { try body() } catch let e as FWPError { return e.code.name } catch let e as LFPClientError { return e.code } catch { return "\(error)" }
            return nil
        }
        #expect(code { try other.registerCallout(key: Self.key, classify: { _ in .block }) } == "STATUS_FWP_ALREADY_EXISTS")
        #expect(code { try other.unregisterCallout(key: Self.key) } == "FWP_E_WRONG_SESSION")
        try host.flowAssociateContext(flowId: 42, layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", calloutId: id, context: 7)
        #expect(
            code { try host.flowAssociateContext(flowId: 42, layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", calloutId: id, context: 8) }
                == "STATUS_OBJECT_NAME_EXISTS")
        #expect(code { try host.unregisterCallout(id: id) } == "STATUS_DEVICE_BUSY")
        try host.flowRemoveContext(flowId: 42, layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", calloutId: id)
        #expect(deleted.withLockedValue { $0 } == [7])  // flowDelete ran before the remove returned
        try host.unregisterCallout(id: id)
        #expect(code { try host.unregisterCallout(key: Self.key) } == "STATUS_FWP_CALLOUT_NOT_FOUND")
        // Registered again by the other host: keys are free once unregistered.
        #expect(try other.registerCallout(key: Self.key, classify: { _ in .permit() }) != 0)
    }

    @Test("a terminating callout answering at once permits (data flows) and blocks; registration after the filter counts")
    func terminatingCallout() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let allowed = try Listener(), denied = try Listener()
        try Self.load(
            d,
            Self.policy(port: allowed.port) + "\n"
                + Self.policy(port: denied.port).components(separatedBy: "filters:\n")[1].replacingOccurrences(of: "F1", with: "F2"))
        // Unregistered: the filters block (R5.6).
        let before = try Self.connect(w, port: allowed.port)
        #expect(before.readLine(timeoutMs: 5000) == "ready")
        #expect(before.readLine(timeoutMs: 5000)?.hasPrefix("err") == true)
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let seen = NIOLockedValueBox<[String]>([])
        try host.registerCallout(key: Self.key) { req in
            seen.withLockedValue { $0.append(req.fields["FWPM_CONDITION_IP_REMOTE_PORT"] ?? "?") }
            return req.fields["FWPM_CONDITION_IP_REMOTE_PORT"] == "\(allowed.port)" ? .permit() : .block
        }
        let ok = try Self.connect(w, port: allowed.port)
        #expect(ok.readLine(timeoutMs: 5000) == "ready")
        #expect(ok.readLine(timeoutMs: 5000) == "ok")
        #expect(Net.acceptAndRead(allowed.fd, timeoutMs: 5000) == "ping")
        let no = try Self.connect(w, port: denied.port)
        #expect(no.readLine(timeoutMs: 5000) == "ready")
        #expect(no.readLine(timeoutMs: 5000) == "err \(ECONNREFUSED)")  // the forged RST
        #expect(seen.withLockedValue { $0 } == ["\(allowed.port)", "\(denied.port)"])
    }

    @Test(
        "FwpsPendOperation0 + FwpsCompleteOperation0: permit and block, blocking and non-blocking, v4 and v6; the completion is a reauthorization that cannot pend",
        arguments: [(false, "blocking"), (true, "nonblocking")])
    func explicitPend(v6: Bool, mode: String) throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener(v6: v6)
        try Self.load(d, Self.policy(port: l.port, v6: v6))
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let pended = NIOLockedValueBox<[UInt64: PendedOperation]>([:])
        let answers = NIOLockedValueBox<[UInt64: Bool]>([:])
        let cannotPend = NIOLockedValueBox<[String]>([])
        let arrived = DispatchSemaphore(value: 0)
        try host.registerCallout(key: Self.key) { req in
            guard let h = req.endpointHandle else { return .block }
            if req.isReauthorization {
                do { _ = try req.pendOperation() } catch let e as FWPError { cannotPend.withLockedValue { $0.append(e.code.name) } } catch {}
                return answers.withLockedValue { $0[h] } == true ? .permit() : .block
            }
            guard let op = try? req.pendOperation() else { return .block }
            pended.withLockedValue { $0[h] = op }
            arrived.signal()
            return .pend(op)
        }
        for permit in [true, false] {
            let p = try Self.connect(w, port: l.port, v6: v6, mode: mode)
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            if mode == "nonblocking" { #expect(p.readLine(timeoutMs: 5000) == "inprogress") }
            #expect(arrived.wait(timeout: .now() + 10) == .success)
            #expect(p.readLine(timeoutMs: 300) == nil, "the connect waits while pended")
            let (h, op) = try #require(pended.withLockedValue { $0.first })
            pended.withLockedValue { $0[h] = nil }
            answers.withLockedValue { $0[h] = permit }
            // Completed from another thread than the classify's.
            let done = DispatchSemaphore(value: 0)
            let failure = NIOLockedValueBox<String?>(nil)
            Thread.detachNewThread {
                do { try op.complete() } catch { failure.withLockedValue { $0 = "\(error)" } }
                done.signal()
            }
            #expect(done.wait(timeout: .now() + 10) == .success)
            #expect(failure.withLockedValue { $0 } == nil)
            if permit {
                #expect(p.readLine(timeoutMs: 5000) == "ok")
                #expect(Net.acceptAndRead(l.fd, timeoutMs: 5000) == "ping")
            } else {
                #expect(p.readLine(timeoutMs: 5000) == "err \(ECONNREFUSED)")
            }
            // A second completion of the same handle: it is gone.
            #expect(throws: FWPError.self) { try op.complete() }
        }
        #expect(cannotPend.withLockedValue { $0 } == ["STATUS_FWP_CANNOT_PEND", "STATUS_FWP_CANNOT_PEND"])
    }

    @Test("a pend nobody completes ends with the default verdict at the pend timeout")
    func pendTimeout() throws {
        let (fx, d, w) = try Self.setUp(["--pend-timeout", "0.5"])
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port))
        let host = try LFPSession.open(socket: d.socket, name: "host")
        try host.registerCallout(key: Self.key) { req in (try? req.pendOperation()).map { .pend($0) } ?? .block }
        let started = DispatchTime.now()
        let p = try Self.connect(w, port: l.port)
        #expect(p.readLine(timeoutMs: 5000) == "ready")
        #expect(p.readLine(timeoutMs: 10_000) == "err \(ECONNREFUSED)")
        let s = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        #expect(s >= 0.4 && s < 5, "ended after \(s) s")
    }

    @Test("a callout host killed with 1,000 pends outstanding: every one completes with the default verdict, none is permitted")
    func hostDiesWithThousandPends() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port))
        // The host: a separate process (wire protocol from docs/protocol.md) that pends everything.
        let peers = fx.cgroupParent + "/peers"
        try CgroupV2.create(peers)
        let host = try PyProc(cgroup: peers, script: Self.pendingHost, args: [d.socket, Self.key.lowerString])
        #expect(host.readLine(timeoutMs: 10_000) == "registered")
        let n = 1000
        let clients = try PyProc(cgroup: w.cgroupPath, script: Self.manyConnects, args: ["127.0.0.1", "\(l.port)", "\(n)"])
        #expect(clients.readLine(timeoutMs: 10_000) == "started")
        // Every connect reached the host and is pended.
        var held = 0
        for _ in 0..<200 {
            guard let line = host.readLine(timeoutMs: 10_000) else { break }
            held = Int(line.split(separator: " ").last ?? "") ?? held
            if held >= n { break }
        }
        #expect(held == n, "pended \(held) of \(n)")
        kill(host.process.processIdentifier, SIGKILL)
        clients.send()
        let result = clients.readLine(timeoutMs: 30_000) ?? "none"
        #expect(result == "ok=0 failed=\(n) pending=0", "\(result)")
        #expect(!Net.readable(l.fd, timeoutMs: 0), "no connection reached the listener")
    }

    /// Registers `argv[2]` and answers every invocation with a pend; prints "pended N".
    static let pendingHost = """
        import json, socket, struct, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        def send(o):
            b = json.dumps(o).encode(); s.sendall(struct.pack(">I", len(b)) + b)
        def recv():
            h = b""
            while len(h) < 4: h += s.recv(4 - len(h))
            n = struct.unpack(">I", h)[0]; b = b""
            while len(b) < n: b += s.recv(n - len(b))
            return json.loads(b)
        send({"id": 1, "op": "open", "protocolVersion": 1}); recv()
        send({"id": 2, "op": "registerCallout", "calloutKey": sys.argv[2]})
        while True:
            m = recv()
            if m.get("id") == 2: break
        print("registered", flush=True)
        n = 0
        while True:
            m = recv()
            inv = m.get("invocation")
            if inv:
                send({"id": 0, "op": "calloutAnswer", "invocation": inv["invocation"],
                      "answer": {"actionType": "FWP_ACTION_BLOCK", "clearRight": False, "absorb": True, "pended": inv.get("completionId") is not None}})
                n += 1
                if n % 100 == 0: print("pended", n, flush=True)
        """

    /// Starts argv[3] non-blocking connects, prints "started", waits for a line, then polls
    /// them all (30 s at most) and prints how they ended.
    static let manyConnects = """
        import errno, select, socket, sys, time
        host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        socks = []
        for _ in range(n):
            s = socket.socket(); s.setblocking(False)
            s.connect_ex((host, port))
            socks.append(s)
        print("started", flush=True)
        sys.stdin.readline()
        ok = failed = 0
        pending = set(socks)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            _, w, _ = select.select([], list(pending)[:900], [], 1)
            for s in w:
                pending.discard(s)
                # Established means connected to the peer; an error, or a socket closed without
                # one (its error already reported), means refused.
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                try:
                    s.getpeername(); ok += 1
                except OSError:
                    failed += 1
        print(f"ok={ok} failed={failed} pending={len(pending)}", flush=True)
        """
}

/// Closure pends, the built-in callouts and `lfp prompt`.
extension CalloutHostTests {
    static let closureKey = UUID(uuidString: "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb")!
    static let flowKey = UUID(uuidString: "99999999-9999-4999-8999-999999999999")!

    @Test("FwpsPendClassify0 at ENDPOINT_CLOSURE holds the endpoint's release and flowDeleteFn until completed; other layers cannot pend")
    func closurePend() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        let port =
            "filterCondition: [ { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(l.port) } } ]"
        try Self.load(
            d,
            """
            callouts:
              - { calloutKey: \(Self.closureKey.lowerString), displayData: { name: CE }, applicableLayer: FWPM_LAYER_ALE_ENDPOINT_CLOSURE_V4 }
              - { calloutKey: \(Self.flowKey.lowerString), displayData: { name: CF }, applicableLayer: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4 }
            filters:
              - { displayData: { name: F1 }, layerKey: FWPM_LAYER_ALE_ENDPOINT_CLOSURE_V4, \(port), action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(Self.closureKey.lowerString) } }
              - { displayData: { name: F2 }, layerKey: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4, \(port), action: { type: FWP_ACTION_CALLOUT_INSPECTION, calloutKey: \(Self.flowKey.lowerString) } }
            """)
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let deletes = NIOLockedValueBox<[UInt64]>([])
        let deleted = DispatchSemaphore(value: 0), released = DispatchSemaphore(value: 0)
        let refusals = NIOLockedValueBox<[String]>([])
        let flowId = NIOLockedValueBox<UInt32>(0)
        let cf = try host.registerCallout(
            key: Self.flowKey,
            classify: { req in
                // FLOW_ESTABLISHED cannot pend either way (R6.1, C56).
                for attempt in [{ _ = try req.pendOperation() }, { _ = try req.pendClassify() }] {
                    do { try attempt() } catch let e as FWPError { refusals.withLockedValue { $0.append(e.code.name) } } catch {}
                }
                if let h = req.endpointHandle {
                    try? host.flowAssociateContext(flowId: h, layer: req.layer, calloutId: flowId.withLockedValue { $0 }, context: 0x55)
                }
                return .none
            },
            flowDelete: { d in
                deletes.withLockedValue { $0.append(d.flowContext) }
                deleted.signal()
            })
        flowId.withLockedValue { $0 = cf }
        let pended = NIOLockedValueBox<PendedClassify?>(nil)
        let closing = DispatchSemaphore(value: 0)
        try host.registerCallout(key: Self.closureKey) { req in
            guard let pc = try? req.pendClassify() else { return .block }
            pended.withLockedValue { $0 = pc }
            closing.signal()
            return .pend(pc)
        }
        let releases = NIOLockedValueBox<Int>(0)
        let watcher = try LFPSession.open(socket: d.socket, name: "watcher")
        try watcher.subscribeNetEvents { e in
            if let e, e.json.contains("RESOURCE_RELEASE"), e.json.contains("\"processName\":\"python3\"") {
                releases.withLockedValue { $0 += 1 }
                released.signal()
            }
        }
        // Connect, then close: the closure is pended.
        let p = try Self.connect(w, port: l.port)
        #expect(p.readLine(timeoutMs: 5000) == "ready")
        #expect(p.readLine(timeoutMs: 5000) == "ok")
        _ = p.finish()  // the process exits: its socket closes
        #expect(closing.wait(timeout: .now() + 10) == .success, "the closure reached CE")
        #expect(Net.acceptAndRead(l.fd, timeoutMs: 1000) != nil)  // let the peer side finish too
        #expect(refusals.withLockedValue { $0 } == ["STATUS_FWP_CANNOT_PEND", "STATUS_FWP_CANNOT_PEND"])
        // Held: no flowDeleteFn, no RESOURCE_RELEASE for a while.
        #expect(p.readLine(timeoutMs: 300) == nil)
        #expect(deletes.withLockedValue { $0 }.isEmpty)
        let releasedBefore = releases.withLockedValue { $0 }
        let pc = try #require(pended.withLockedValue { $0 })
        try pc.complete(nil)  // NULL classifyOut: classified again (C57b), then the teardown
        // flowDeleteFn ran with CF's context, and the release was reported.
        #expect(deleted.wait(timeout: .now() + 10) == .success)
        while releases.withLockedValue({ $0 }) == releasedBefore, released.wait(timeout: .now() + 10) == .success {}
        #expect(deletes.withLockedValue { $0 } == [0x55])
        #expect(releases.withLockedValue { $0 } > releasedBefore)
        #expect(throws: FWPError.self) { try pc.complete(nil) }  // the handle is spent
    }

    @Test("lfp prompt answers lfp.prompt's held connects: permit, block, and a remembered answer becomes a filter")
    func prompt() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(
            d,
            Self.policy(port: l.port, key: "lfp.prompt").replacingOccurrences(
                of: "calloutKey: lfp.prompt, displayData: { name: CP }", with: "calloutKey: lfp.prompt, displayData: { name: prompt }"))
        // No one to ask: blocked at once.
        let alone = try Self.connect(w, port: l.port)
        #expect(alone.readLine(timeoutMs: 5000) == "ready")
        #expect(alone.readLine(timeoutMs: 5000)?.hasPrefix("err") == true)
        for (answer, expected) in [("block", "err"), ("permit", "ok")] {
            let prompter = try PyProc.command(CLITests.lfp, ["prompt", "--answer", answer, "--after", "1000", "--count", "1"], env: d.env)
            #expect(prompter.readLine(timeoutMs: 10_000)?.contains("waiting") == true)
            let p = try Self.connect(w, port: l.port)
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            #expect(p.readLine(timeoutMs: 300) == nil, "held while the prompt waits")
            #expect(p.readLine(timeoutMs: 10_000)?.hasPrefix(expected) == true, "\(answer)")
            let shown = prompter.readLine(timeoutMs: 5000) ?? ""
            #expect(shown.contains("python3") && shown.contains("127.0.0.1:\(l.port)"), "\(shown)")
            _ = prompter.finish()
        }
        // Remembered: a filter is added, and the next connect needs no prompt.
        let s = try LFPSession.open(socket: d.socket, name: "check")
        let added = DispatchSemaphore(value: 0)
        try s.subscribeChanges { changes in
            if let changes, changes.contains(where: { $0.change == .add && $0.kind == .filter }) { added.signal() }
        }
        let prompter = try PyProc.command(CLITests.lfp, ["prompt", "--answer", "permit", "--remember", "--count", "1"], env: d.env)
        #expect(prompter.readLine(timeoutMs: 10_000)?.contains("waiting") == true)
        let first = try Self.connect(w, port: l.port)
        #expect(first.readLine(timeoutMs: 5000) == "ready")
        #expect(first.readLine(timeoutMs: 10_000) == "ok")
        _ = prompter.finish()
        // The remembered filter is added after the answer: the change notification says when.
        #expect(added.wait(timeout: .now() + 10) == .success)
        let remembered = try s.filters().filter { $0.displayData.name?.hasPrefix("lfp prompt: permit") == true }
        #expect(remembered.count == 1)
        let again = try Self.connect(w, port: l.port)
        #expect(again.readLine(timeoutMs: 5000) == "ready")
        #expect(again.readLine(timeoutMs: 5000) == "ok", "the remembered filter permits without a prompt")
    }

    @Test("lfp.audit sees the connects its inspection filter matches, and changes nothing")
    func audit() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port, action: "FWP_ACTION_CALLOUT_INSPECTION", key: "lfp.audit"))
        let p = try Self.connect(w, port: l.port)
        #expect(p.readLine(timeoutMs: 5000) == "ready")
        #expect(p.readLine(timeoutMs: 5000) == "ok")
        let seen = d.waitForOutput(timeoutMs: 10_000) { $0.contains("lfp.audit: event=") && $0.contains("\"remotePort\":\(l.port)") }
        #expect(seen, "the audit line names the connect: \(d.printed.suffix(2000))")
    }
}

/// Pends at ALE_AUTH_RECV_ACCEPT: the inbound SYN is held, and completion re-injects it (R6.7).
extension CalloutHostTests {
    @Test(
        "an inbound connection pended at AUTH_RECV_ACCEPT: completion re-injects the SYN (classified as the callout's own injection, not a reauthorization) or discards it",
        arguments: [(false, true), (true, true), (false, false)])
    func recvAcceptPend(v6: Bool, reinject: Bool) throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let port = Net.freePort(v6: v6)
        try Self.load(
            d,
            """
            callouts:
              - { calloutKey: \(Self.key.lowerString), displayData: { name: CP }, applicableLayer: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V\(v6 ? 6 : 4) }
            filters:
              - displayData: { name: F1 }
                layerKey: FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V\(v6 ? 6 : 4)
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_LOCAL_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
                action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: \(Self.key.lowerString) }
            """)
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let pended = NIOLockedValueBox<PendedOperation?>(nil)
        let kinds = NIOLockedValueBox<[String]>([])
        let arrived = DispatchSemaphore(value: 0)
        try host.registerCallout(key: Self.key) { req in
            kinds.withLockedValue { $0.append(req.isInjectedBySelf ? "injected" : req.isReauthorization ? "reauthorization" : "first") }
            if req.isInjectedBySelf { return .permit() }
            guard let op = try? req.pendOperation() else { return .block }
            pended.withLockedValue { $0 = op }
            arrived.signal()
            return .pend(op)
        }
        // The listener in the workload; this test process is the peer.
        let server = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
                s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); s.settimeout(float(sys.argv[3]))
                print("listening", flush=True)
                try:
                    c, _ = s.accept(); print("accepted", c.recv(16).decode(), flush=True)
                except OSError as e:
                    print("none", e, flush=True)
                """, args: [v6 ? "::1" : "127.0.0.1", "\(port)", reinject ? "10" : "1"])
        #expect(server.readLine(timeoutMs: 5000) == "listening")
        let result = NIOLockedValueBox<Int32>(0)
        let connected = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let fd = Net.connect(v6 ? "::1" : "127.0.0.1", port, timeoutMs: 10_000)
            if fd >= 0 { _ = "hello".withCString { send(fd, $0, 5, 0) } }
            result.withLockedValue { $0 = fd }
            connected.signal()
        }
        #expect(arrived.wait(timeout: .now() + 10) == .success, "the SYN reached the callout")
        #expect(connected.wait(timeout: .now() + 0.3) == .timedOut, "the peer's connect waits while the SYN is held")
        let op = try #require(pended.withLockedValue { $0 })
        try op.complete(reinject: reinject)
        #expect(connected.wait(timeout: .now() + 10) == .success)
        let fd = result.withLockedValue { $0 }
        if reinject {
            #expect(fd >= 0, "connected (errno \(-fd))")
            #expect(server.readLine(timeoutMs: 5000) == "accepted hello")
            #expect(kinds.withLockedValue { $0 } == ["first", "injected"])  // no reauthorization (R6.7)
            close(fd)
        } else {
            #expect(fd == -ECONNREFUSED, "refused (errno \(-fd))")
            #expect(kinds.withLockedValue { $0 } == ["first"])  // the discarded clone is not classified
        }
        _ = server.finish()
    }
}

/// The example package of docs/callouts.md, run as its own process.
extension CalloutHostTests {
    static var example: String {
        URL(fileURLWithPath: CLITests.lfp).deletingLastPathComponent().appendingPathComponent("lfp-example-dns-callout").path
    }

    @Test("Examples/DNSAllowCallout permits a name's addresses (pending while it resolves) and blocks the rest")
    func exampleCallout() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port))
        for (name, expected) in [("localhost", "ok"), ("nothing.invalid", "err")] {
            let callout = try PyProc.command(Self.example, [Self.key.lowerString, name], env: d.env.merging(["LFP_SOCKET": d.socket]) { _, b in b })
            #expect(callout.readLine(timeoutMs: 10_000)?.contains("registered") == true)
            let p = try Self.connect(w, port: l.port)
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            #expect(p.readLine(timeoutMs: 10_000)?.hasPrefix(expected) == true, "\(name)")
            if expected == "ok" { #expect(Net.acceptAndRead(l.fd, timeoutMs: 5000) == "ping") }
            let pid = callout.process.processIdentifier
            kill(pid, SIGKILL)
            _ = callout.finish()
            // Its registration ends with it (the audit log's "disconnected" follows the cleanup):
            // the next host may register the same key.
            #expect(d.waitForOutput(timeoutMs: 10_000) { $0.split(separator: "\n").contains { $0.contains("pid=\(pid) ") && $0.hasSuffix("disconnected") } })
            let probe = try LFPSession.open(socket: d.socket, name: "probe")
            try probe.registerCallout(key: Self.key) { _ in .block }
            try probe.unregisterCallout(key: Self.key)
            probe.close()
        }
    }
}

extension CalloutHostTests {
    @Test("complete(answer:) gives the reauthorization's answer with the completion: no second classify round trip")
    func completeWithAnswer() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port))
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let calls = NIOLockedValueBox<[Bool]>([])
        let pended = NIOLockedValueBox<PendedOperation?>(nil)
        let arrived = DispatchSemaphore(value: 0)
        try host.registerCallout(key: Self.key) { req in
            calls.withLockedValue { $0.append(req.isReauthorization) }
            guard let op = try? req.pendOperation() else { return .block }
            pended.withLockedValue { $0 = op }
            arrived.signal()
            return .pend(op)
        }
        for permit in [true, false] {
            let p = try Self.connect(w, port: l.port)
            #expect(p.readLine(timeoutMs: 5000) == "ready")
            #expect(arrived.wait(timeout: .now() + 10) == .success)
            let op = try #require(pended.withLockedValue { $0 })
            try op.complete(answer: permit ? .permit() : .block)
            #expect(p.readLine(timeoutMs: 5000)?.hasPrefix(permit ? "ok" : "err") == true)
            if permit { _ = Net.acceptAndRead(l.fd, timeoutMs: 1000) }
        }
        #expect(calls.withLockedValue { $0 } == [false, false], "only the first classifications reached the host")
    }
}

extension CalloutHostTests {
    @Test("a commit reauthorizes a live connection through its callout (POLICY_CHANGE, cannot pend); a block ends it")
    func policyChangeReauthorization() throws {
        let (fx, d, w) = try Self.setUp()
        defer { d.cleanup(); fx.cleanup() }
        let l = try Listener()
        try Self.load(d, Self.policy(port: l.port))
        let host = try LFPSession.open(socket: d.socket, name: "host")
        let seen = NIOLockedValueBox<[String]>([])
        let asked = DispatchSemaphore(value: 0)
        try host.registerCallout(key: Self.key) { req in
            guard req.isReauthorization else { return .permit() }
            var note = "reason=\(req.fields["FWPM_CONDITION_REAUTHORIZE_REASON"] ?? "-")"
            do { _ = try req.pendOperation() } catch let e as FWPError { note += " pend=\(e.code.name)" } catch {}
            seen.withLockedValue { $0.append(note) }
            asked.signal()
            return .block
        }
        let p = try PyProc(
            cgroup: w.cgroupPath,
            script: """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
                print("connected", flush=True)
                sys.stdin.readline()
                try:
                    d = s.recv(16); print("eof" if not d else "data", flush=True)
                except OSError as e:
                    print("err", e.errno, flush=True)
                """, args: ["\(l.port)"])
        #expect(p.readLine(timeoutMs: 10_000) == "connected")
        let server = accept(l.fd, nil, nil)
        defer { close(server) }
        // Any commit reauthorizes the live connections (R7.8).
        let admin = try LFPSession.open(socket: d.socket, name: "admin")
        _ = try admin.add(DaemonTests.block("unrelated", port: 9))
        #expect(asked.wait(timeout: .now() + 10) == .success, "the callout was asked at the reauthorization")
        #expect(seen.withLockedValue { $0.first } == "reason=1 pend=STATUS_FWP_CANNOT_PEND")
        p.send()
        #expect(p.readLine(timeoutMs: 10_000) == "err \(ECONNABORTED)", "the connection was ended")
        _ = p.finish()
    }
}
