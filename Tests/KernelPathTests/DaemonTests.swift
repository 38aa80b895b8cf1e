import BPFKit
import FilterEngine
import FilterModel
import Foundation
import LFPClient
import ServiceProtocol
import Testing

/// `lfp daemon` as a real process: sessions over its socket, enforcement by the kernel, and the
/// lifetimes WFP defines (dynamic objects die with their client, persistent ones survive).
@Suite("lfp daemon", .serialized)
struct DaemonTests {
    static let wireClient = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Support/wire_client.py").path

    static func block(_ name: String, port: UInt16, key: UUID = UUID(), provider: UUID? = nil, flags: [String] = []) -> Filter {
        let yaml = """
            filters:
              - filterKey: \(key.uuidString)
                displayData: { name: \(name) }
                \(provider.map { "providerKey: \($0.uuidString)" } ?? "")
                flags: [\(flags.joined(separator: ", "))]
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
                action: { type: FWP_ACTION_BLOCK }
            """
        return try! Policy.parse(yaml).filters[0]
    }

    static func provider(_ key: UUID, _ name: String, persistent: Bool = false) -> Provider {
        try! Policy.parse(
            """
            providers:
              - providerKey: \(key.uuidString)
                displayData: { name: \(name) }
                flags: [\(persistent ? "FWPM_PROVIDER_FLAG_PERSISTENT" : "")]
            """
        ).providers[0]
    }

    /// Does a connect from the workload to `port` go through?
    static func connects(_ fx: KernelFixture, _ w: Workload, _ port: UInt16) throws -> Bool {
        let r = try fx.runClient(in: w, [["addr": "127.0.0.1", "port": Int(port)]])
        return r[0].ok == true
    }

    /// The protocol peer of docs/protocol.md (python), in its own process.
    static func peer(_ fx: KernelFixture, socket: String, user: String? = nil) throws -> PyProc {
        let cg = fx.cgroupParent + "/peers"
        if !FileManager.default.fileExists(atPath: cg) { try CgroupV2.create(cg) }
        let script = try String(contentsOfFile: wireClient, encoding: .utf8)
        return try PyProc(cgroup: cg, script: script, args: [socket], user: user)
    }

    static func line(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    static func reply(_ p: PyProc) throws -> [String: Any] {
        let l = try #require(p.readLine(timeoutMs: 10_000), "the peer printed nothing")
        return try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], "not JSON: \(l)")
    }

    @Test("a dynamic session's filters are enforced, and gone within 1 s of its client's kill -9")
    func dynamicSessionDiesWithClient() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let w = try fx.workload("w")
        let l = try Listener()
        #expect(try Self.connects(fx, w, l.port))

        let p = try Self.peer(fx, socket: d.socket)
        #expect(try Self.reply(p)["connected"] as? Bool == true)
        p.send(Self.line(["id": 1, "op": "open", "protocolVersion": 1, "sessionFlags": 1, "sessionName": "vpn"]))
        #expect(try Self.reply(p)["session"] != nil)
        let doc = Policy(filters: [Self.block("dyn", port: l.port)]).exportJSON()
        p.send(Self.line(["id": 2, "op": "add", "objects": doc]))
        let added = try Self.reply(p)
        #expect(added["error"] == nil && (added["filterIds"] as? [Int])?.count == 1)
        #expect(try !Self.connects(fx, w, l.port), "the dynamic filter blocks")

        // Watch the engine's changes, then kill the client.
        let watcher = try LFPSession.open(socket: d.socket, name: "watcher")
        let gone = DispatchSemaphore(value: 0)
        try watcher.subscribeChanges { changes in
            if let changes, changes.contains(where: { $0.change == .delete && $0.kind == .filter }) { gone.signal() }
        }
        let killed = DispatchTime.now()
        kill(p.process.processIdentifier, SIGKILL)
        #expect(gone.wait(timeout: killed + 1.0) == .success, "the filter outlived its session by more than 1 s")
        #expect(try Self.connects(fx, w, l.port), "the kernel no longer blocks")
        #expect(try watcher.filters().isEmpty)
    }

    @Test("two providers' clients add and delete concurrently; neither loses the other's objects")
    func providersSideBySide() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let keys = [UUID(), UUID()]
        let rounds = 12
        let errors = LockedErrors()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            do {
                let s = try LFPSession.open(socket: d.socket, name: "tool-\(i)")
                try s.add(Self.provider(keys[i], "tool \(i)"))
                for r in 0..<rounds {
                    if r % 3 == 2 {
                        // A transaction: the other client's writes wait for it (R8.13).
                        try s.beginTransaction()
                        let k = UUID()
                        try s.add(Self.block("t\(i)-\(r)", port: UInt16(20000 + 100 * i + r), key: k, provider: keys[i]))
                        try s.add(Self.block("t\(i)-\(r)-gone", port: UInt16(21000 + 100 * i + r), provider: keys[i]))
                        try s.deleteFilter(
                            key: try s.filters(matching: WireEnumTemplate(providerKey: keys[i].uuidString)).first {
                                $0.name == "t\(i)-\(r)-gone"
                            }!.filterKey)
                        try s.commitTransaction()
                    } else {
                        try s.add(Self.block("t\(i)-\(r)", port: UInt16(20000 + 100 * i + r), provider: keys[i]))
                    }
                }
            } catch { errors.add("\(i): \(error)") }
        }
        #expect(errors.all.isEmpty, "\(errors.all)")
        let s = try LFPSession.open(socket: d.socket)
        for i in 0..<2 {
            let names = Set(try s.filters(matching: WireEnumTemplate(providerKey: keys[i].uuidString)).map(\.name))
            #expect(names == Set((0..<rounds).map { "t\(i)-\($0)" }))
        }
        // A `policy load` of one provider's document replaces that provider's objects only.
        let doc = Policy(providers: [Self.provider(keys[0], "tool 0")], filters: [Self.block("only", port: 9, provider: keys[0])])
        _ = try s.replace(document: doc.exportJSON(), sourceName: "doc")
        #expect(try s.filters(matching: WireEnumTemplate(providerKey: keys[0].uuidString)).map(\.name) == ["only"])
        #expect(try s.filters(matching: WireEnumTemplate(providerKey: keys[1].uuidString)).count == rounds)
    }

    @Test("a write waits for another session's transaction, up to its txnWaitTimeoutInMSec")
    func transactionWait() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let a = try LFPSession.open(socket: d.socket, name: "a")
        let impatient = try LFPSession.open(socket: d.socket, name: "impatient", txnWaitTimeoutMs: 100)
        try a.beginTransaction()
        try a.add(Self.block("a", port: 9))
        #expect {
            try impatient.add(Self.block("b", port: 10))
        } throws: { ($0 as? FWPError)?.code == .timeout }
        // A patient writer is answered once the transaction commits.
        let patient = try LFPSession.open(socket: d.socket, name: "patient")
        let done = DispatchSemaphore(value: 0)
        let result = LockedErrors()
        DispatchQueue.global().async {
            do { try patient.add(Self.block("c", port: 11)) } catch { result.add("\(error)") }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 0.3) == .timedOut, "the write did not wait for the transaction")
        try a.commitTransaction()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(result.all.isEmpty, "\(result.all)")
        #expect(Set(try a.filters().map(\.name)) == ["a", "c"])
    }

    @Test("a peer that is not root is refused; malformed frames get an error and the daemon keeps serving")
    func hostilePeers() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        // Let a non-root process reach the socket, as a careless operator might.
        chmod(fx.config.stateDirectory, 0o711)
        chmod(d.socket, 0o666)
        let nobody = try Self.peer(fx, socket: d.socket, user: "nobody")
        #expect(try Self.reply(nobody)["connected"] as? Bool == true)
        nobody.send(Self.line(["id": 1, "op": "open", "protocolVersion": 1]))
        let refused = try Self.reply(nobody)
        #expect((refused["error"] as? [String: Any])?["code"] as? String == "LFP_E_ACCESS_DENIED")
        chmod(d.socket, 0o600)
        chmod(fx.config.stateDirectory, 0o700)

        let p = try Self.peer(fx, socket: d.socket)
        _ = try Self.reply(p)
        p.send("RAW {not json")
        #expect((try Self.reply(p)["error"] as? [String: Any])?["code"] as? String == "LFP_E_PROTOCOL")
        p.send(Self.line(["id": 2, "op": "nosuch"]))
        #expect((try Self.reply(p)["error"] as? [String: Any])?["code"] as? String == "LFP_E_PROTOCOL")
        p.send(Self.line(["id": 3, "op": "open", "protocolVersion": 99]))
        #expect((try Self.reply(p)["error"] as? [String: Any])?["code"] as? String == "LFP_E_PROTOCOL_VERSION")
        p.send(Self.line(["id": 4, "op": "add", "objects": "{}"]))
        #expect((try Self.reply(p)["error"] as? [String: Any])?["code"] as? String == "LFP_E_PROTOCOL", "no session yet")
        p.send(Self.line(["id": 5, "op": "open", "protocolVersion": 1]))
        #expect(try Self.reply(p)["session"] != nil)
        p.send(Self.line(["id": 6, "op": "add", "objects": "filters: [ {"]))
        #expect((try Self.reply(p)["error"] as? [String: Any])?["code"] as? String == "LFP_E_POLICY_SYNTAX")
        // The daemon still serves everyone.
        #expect(try LFPSession.open(socket: d.socket).status().filters == 0)
    }
}

extension DaemonTests {
    @Test("lfp run --policy adds its filters in a dynamic session scoped to the workload; they go when the run ends")
    func runPolicyIsDynamic() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let l = try Listener()
        let admin = try LFPSession.open(socket: d.socket)
        try admin.add(Self.block("someone else's", port: 7))
        let file = try CLITests.write(Policy(filters: [Self.block("run-only", port: l.port)]).exportYAML())
        defer { unlink(file) }
        // The command exits 0 when its connect is refused with EPERM (the run's filter), 3 otherwise.
        let probe = """
            import errno, socket, sys
            s = socket.socket(); s.settimeout(3)
            try:
                s.connect(("127.0.0.1", \(l.port))); sys.exit(3)
            except OSError as e:
                sys.exit(0 if e.errno == errno.EPERM else 3)
            """
        let r = try CLITests.run(["run", "--workload", "r", "--policy", file, "--", KernelFixture.python, "-c", probe], env: d.env)
        #expect(r.status == 0, "the run's filter did not block its connect: \(r.stderr)")
        // Gone with the run; the other tool's filter stays.
        #expect(try admin.filters().map(\.name) == ["someone else's"])
        // And it never applied outside the workload: the test process connects.
        let fd = Net.connect("127.0.0.1", l.port)
        #expect(fd >= 0)
        if fd >= 0 { close(fd) }
    }
}

final class LockedErrors: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [String] = []
    func add(_ e: String) {
        lock.lock()
        errors.append(e)
        lock.unlock()
    }
    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return errors
    }
}

extension DaemonTests {
    @Test("lfp daemon --policy-dir loads a directory's policy files and loads one again when it changes, as a ConfigMap update does")
    func policyDirectory() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        let dir = "/tmp/\(fx.tag)-policies"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let provider = UUID()
        func write(_ port: UInt16) throws {
            // As the kubelet does: the new file is written aside, then renamed into place.
            let doc = Policy(providers: [Self.provider(provider, "cluster")], filters: [Self.block("cm-\(port)", port: port, provider: provider)])
            try doc.exportYAML().write(toFile: dir + "/.tmp", atomically: false, encoding: .utf8)
            guard rename(dir + "/.tmp", dir + "/guard.yaml") == 0 else { throw DaemonTestError.notReady("rename") }
        }
        let a = try Listener(), b = try Listener()
        try write(a.port)
        try d.start(["--policy-dir", dir])
        let w = try DaemonLifetimeTests.machine(fx)
        #expect(try !Self.connects(fx, w, a.port), "loaded at start")
        let s = try LFPSession.open(socket: d.socket)
        let changed = Counter()
        try s.subscribeChanges { c in if c?.contains(where: { $0.kind == .filter && $0.change == .add }) == true { changed.increment() } }
        try write(b.port)
        #expect(changed.wait(atLeast: 1, timeoutMs: 10_000), "the change was not loaded")
        #expect(try Self.connects(fx, w, a.port) && !Self.connects(fx, w, b.port))
        #expect(try s.filters().count == 1)
    }
}
