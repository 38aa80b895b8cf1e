import BPFKit
import FilterEngine
import FilterModel
import Foundation
import LFPClient
import ServiceProtocol
import Testing

/// Lifetimes across daemon restarts and reboots, on the machine-wide attachment.
@Suite("lfp daemon lifetimes", .serialized)
struct DaemonLifetimeTests {
    /// The fixture's cgroup parent stands in for the machine: `attach --machine` there, and a
    /// workload inside it that is named, not attached twice.
    static func machine(_ fx: KernelFixture) throws -> Workload {
        let m = try fx.engine.attach(workload: "machine", cgroupPath: fx.cgroupParent, machineWide: true)
        #expect(m.machineWide == true && !m.programs.isEmpty)
        let path = fx.cgroupParent + "/w"
        if !FileManager.default.fileExists(atPath: path) { try CgroupV2.create(path) }
        let w = try fx.engine.attach(workload: "w", cgroupPath: path)
        #expect(w.identityOnly == true && w.programs.isEmpty)
        return w
    }

    /// Which of `ports` the workload cannot reach.
    static func blocked(_ fx: KernelFixture, _ w: Workload, _ ports: [String: UInt16]) throws -> Set<String> {
        var out = Set<String>()
        for (name, port) in ports where try !DaemonTests.connects(fx, w, port) { out.insert(name) }
        return out
    }

    @Test("simulated reboot: persistent and boot-time filters come back, static and dynamic ones do not")
    func reboot() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        var w = try Self.machine(fx)
        let listeners = try (0..<4).map { _ in try Listener() }
        let ports = ["persistent": listeners[0].port, "boottime": listeners[1].port, "static": listeners[2].port, "dynamic": listeners[3].port]
        let provider = UUID()
        let s = try LFPSession.open(socket: d.socket, name: "admin")
        try s.add(DaemonTests.provider(provider, "EDR", persistent: true))
        try s.add(DaemonTests.block("persistent", port: ports["persistent"]!, provider: provider, flags: ["FWPM_FILTER_FLAG_PERSISTENT"]))
        try s.add(DaemonTests.block("boottime", port: ports["boottime"]!, provider: provider, flags: ["FWPM_FILTER_FLAG_BOOTTIME"]))
        try s.add(DaemonTests.block("static", port: ports["static"]!))
        let dyn = try LFPSession.open(socket: d.socket, dynamic: true, name: "vpn")
        try dyn.add(DaemonTests.block("dynamic", port: ports["dynamic"]!))
        // With the daemon running, boot-time filters have given way (R8.3).
        #expect(try Self.blocked(fx, w, ports) == ["persistent", "static", "dynamic"])

        // The daemon restarts (same boot): static objects stay, the dynamic session's go.
        s.close()
        dyn.close()
        d.kill9()
        try d.start()
        #expect(try Self.blocked(fx, w, ports) == ["persistent", "static"])
        let names = Set(try LFPSession.open(socket: d.socket).filters().map(\.name))
        #expect(names.isSuperset(of: ["persistent", "static"]) && !names.contains("dynamic"))

        // Reboot: the daemon stops, lfp's pins and run state go (bpffs and /run are empty after
        // a reboot); the database stays.
        d.stop()
        for wl in fx.engine.workloads().sorted(by: { ($0.identityOnly ?? false) && !($1.identityOnly ?? false) }) {
            try fx.engine.detach(workload: wl.name)
        }
        try FileManager.default.removeItem(atPath: fx.config.bpffsRoot)
        try FileManager.default.removeItem(atPath: fx.config.stateDirectory)
        // The boot unit: machine-wide attachment and the boot-time filters only.
        let boot = try CLITests.run(["boot", "--machine", "--cgroup", fx.cgroupParent], env: d.env)
        #expect(boot.status == 0, "\(boot.stderr)")
        w = try fx.engine.attach(workload: "w", cgroupPath: fx.cgroupParent + "/w")
        #expect(try Self.blocked(fx, w, ports) == ["boottime"])
        // The daemon takes over: persistent objects are restored, the boot-time filter gives way.
        try d.start()
        #expect(try Self.blocked(fx, w, ports) == ["persistent"])
        let after = try LFPSession.open(socket: d.socket)
        #expect(Set(try after.filters().map(\.name)) == ["persistent", "boottime"])
        #expect(try after.providers().map(\.providerKey) == [provider])
    }

    @Test("filterIds grow monotonically across daemon restarts and are never reused within a boot")
    func filterIdsNeverReused() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        var s = try LFPSession.open(socket: d.socket)
        let a = try s.add(DaemonTests.block("a", port: 9))
        let b = try s.add(DaemonTests.block("b", port: 10))
        try s.deleteFilter(id: b)
        s.close()
        d.kill9()
        try d.start()
        s = try LFPSession.open(socket: d.socket)
        #expect(try s.filter(key: try s.filters()[0].filterKey).filterId == a, "a static filter keeps its id")
        let c = try s.add(DaemonTests.block("c", port: 11))
        #expect(c > b, "the deleted id \(b) is not handed out again (got \(c))")
    }

    /// Connects to `port` from inside the workload until told to stop; prints how many went through.
    static let prober = """
        import select, socket, sys
        port = int(sys.argv[1]); tries = 0; leaks = 0
        print("ready", flush=True)
        while not select.select([sys.stdin], [], [], 0)[0]:
            s = socket.socket(); s.settimeout(1)
            try:
                s.connect(("127.0.0.1", port)); leaks += 1
            except OSError:
                pass
            s.close(); tries += 1
        print(f"{tries} {leaks}", flush=True)
        """

    @Test("kill -9 of the daemon during transactions: enforcement never lapses, and store and kernel agree afterwards")
    func killDuringTransactions() throws {
        let rounds = ProcessInfo.processInfo.environment["LFP_DAEMON_KILLS"].flatMap(Int.init) ?? 8
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let w = try Self.machine(fx)
        let base = try Listener(), toggled = try Listener()
        let s0 = try LFPSession.open(socket: d.socket)
        try s0.add(DaemonTests.block("base", port: base.port))
        s0.close()
        var rng = SystemRandomNumberGenerator()
        for round in 0..<rounds {
            if round > 0 { try d.start() }
            let probe = try PyProc(cgroup: w.cgroupPath, script: Self.prober, args: ["\(base.port)"])
            #expect(probe.readLine(timeoutMs: 10_000) == "ready")
            // A writer that toggles a filter in explicit transactions as fast as it can.
            let commits = Counter()
            let writer = Thread {
                guard let s = try? LFPSession.open(socket: d.socket, name: "writer", requestTimeoutSeconds: 30) else { return }
                let key = UUID()
                while true {
                    do {
                        try s.beginTransaction()
                        if (try? s.filter(key: key)) != nil {
                            try s.deleteFilter(key: key)
                        } else {
                            try s.add(DaemonTests.block("toggled", port: toggled.port, key: key))
                        }
                        try s.commitTransaction()
                        commits.increment()
                    } catch { return }  // the daemon is gone
                }
            }
            writer.start()
            // Kill at a random moment: after a random number of commits, mid-whatever comes next.
            #expect(commits.wait(atLeast: Int.random(in: 1...4, using: &rng), timeoutMs: 20_000))
            d.kill9()
            probe.send("stop")
            let counts = (probe.readLine(timeoutMs: 10_000) ?? "0 -1").split(separator: " ").compactMap { Int($0) }
            #expect(counts.count == 2 && counts[0] > 0 && counts[1] == 0, "round \(round): connects to the blocked port went through: \(counts)")
            _ = probe.finish()
            // Restarted, the daemon's objects and the kernel agree.
            try d.start()
            let s = try LFPSession.open(socket: d.socket)
            let names = Set(try s.filters().map(\.name))
            #expect(names.contains("base"), "round \(round)")
            #expect(try !DaemonTests.connects(fx, w, base.port), "round \(round)")
            #expect(try DaemonTests.connects(fx, w, toggled.port) == !names.contains("toggled"), "round \(round): store \(names)")
            s.close()
            d.kill9()
        }
    }
}

extension DaemonLifetimeTests {
    @Test("net events: the kernel writes each once for the daemon, which fans them out to tails and keeps a history")
    func eventsThroughDaemon() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let w = try Self.machine(fx)
        let l = try Listener()
        let admin = try LFPSession.open(socket: d.socket)
        let id = try admin.add(DaemonTests.block("drop", port: l.port))
        let port = "\"remotePort\":\(l.port)"
        let tails = try (0..<4).map { _ in try LFPSession.open(socket: d.socket, name: "tail") }
        let got = Counter()
        for t in tails {
            try t.subscribeNetEvents { e in
                if let e, e.json.contains(port), e.json.contains("FWP_ACTION_BLOCK") { got.increment() }
            }
        }
        #expect(try !DaemonTests.connects(fx, w, l.port))
        #expect(got.wait(atLeast: tails.count, timeoutMs: 5_000), "every tail gets the drop")
        // One kernel subscriber (the daemon), however many tails.
        #expect(try fx.engine.status().subscribers.count == 1)
        // FwpmNetEventEnum0: the history has the drop, with its filterId.
        let history = try admin.netEvents(since: Date().addingTimeInterval(-60))
        #expect(history.contains { $0.json.contains(port) && $0.json.contains("\"filterId\":\(id)") })
        let cli = try CLITests.run(["events", "--since", "1m", "--json"], env: d.env)
        #expect(cli.status == 0 && cli.stdout.contains(port), "\(cli.stderr)")
        // "Why was this blocked?" by sequence number, from the history.
        let drop = try #require(history.first { $0.json.contains(port) })
        let o = try #require(try JSONSerialization.jsonObject(with: Data(drop.json.utf8)) as? [String: Any])
        let seq = try #require((o["sequence"] as? NSNumber)?.uint64Value)
        let why = try CLITests.run(["classify", "--event", "\(seq)", "--exit-code"], env: d.env)
        #expect(why.status == 1 && why.stdout.contains("BLOCK"), "\(why.stdout) \(why.stderr)")
        let none = try CLITests.run(["classify", "--event", "999999999"], env: d.env)
        #expect(none.status == 65 && none.stderr.contains("LFP_E_NO_SUCH_EVENT"), "\(none.stderr)")
        // The filter's hit counter counts the drop (from the same event stream).
        #expect(try admin.counters()[id] == 1)
    }
}

extension DaemonLifetimeTests {
    @Test("Prometheus metrics: classifications by layer and action, filter hits, commits, rings and workloads")
    func metrics() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        let port = Net.freePort()
        try d.start(["--metrics", "127.0.0.1:\(port)"])
        let w = try Self.machine(fx)
        let l = try Listener()
        let admin = try LFPSession.open(socket: d.socket)
        let id = try admin.add(DaemonTests.block("drop", port: l.port))
        let seen = Counter()
        try admin.subscribeNetEvents { e in if e?.json.contains("\"filterId\":\(id)") == true { seen.increment() } }
        for _ in 0..<3 { #expect(try !DaemonTests.connects(fx, w, l.port)) }
        #expect(seen.wait(atLeast: 3, timeoutMs: 5_000))
        let text = try #require(httpGet(port: port, path: "/metrics"))
        #expect(text.hasPrefix("HTTP/1.1 200"))
        func value(_ line: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect(value(#"lfp_classifications_total{layer="FWPM_LAYER_ALE_AUTH_CONNECT_V4",action="FWP_ACTION_BLOCK"}"#) == 3, "\(text)")
        #expect(value(#"lfp_filter_hits{filter_id="\#(id)"}"#) == 3)
        #expect((value("lfp_commit_seconds_count") ?? 0) >= 2, "the restore and the add")
        #expect(value(#"lfp_workload_healthy{workload="machine"}"#) == 1)
        #expect(text.contains("lfp_ring_events_submitted_total{ring="))
        #expect(value("lfp_callouts_registered") == 2, "the built-in lfp.prompt and lfp.audit")
        #expect(value("lfp_callout_held_total") == 0)
        #expect(httpGet(port: port, path: "/nothing")?.hasPrefix("HTTP/1.1 404") == true)
    }
}

extension DaemonLifetimeTests {
    @Test("rm -rf of lfp's bpffs root under a running daemon: enforcement continues and every pin comes back")
    func lostPinsComeBack() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let d = DaemonProcess(fx)
        defer { d.cleanup() }
        try d.start()
        let w = try fx.workload("w")
        let l = try Listener(), m = try Listener()
        let admin = try LFPSession.open(socket: d.socket)
        try admin.add(DaemonTests.block("a", port: l.port))
        #expect(try admin.checkPins().isEmpty)  // now the daemon holds the new workload's links
        #expect(try !DaemonTests.connects(fx, w, l.port))
        let pins = [fx.config.bpffsRoot + "/maps/lfp_policy", fx.config.bpffsRoot + "/workloads/w"]
        try FileManager.default.removeItem(atPath: fx.config.bpffsRoot)
        // Without the daemon this would fail open: the links had no other reference.
        #expect(try !DaemonTests.connects(fx, w, l.port), "enforcement stopped with the pins")
        // Pinned again: by this call, or already by the daemon's own check (every second).
        _ = try admin.checkPins()
        #expect(pins.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        #expect(FileManager.default.fileExists(atPath: pins[1] + "/lfp_connect4"))
        #expect(try fx.engine.status().healthy)
        #expect(try fx.engine.status().daemon == d.socket, "status names the running daemon")
        // The engine works on: a commit reaches the kernel through the pins made again.
        try admin.add(DaemonTests.block("b", port: m.port))
        #expect(try !DaemonTests.connects(fx, w, m.port))
        // Status counts the filters from the record's head (no parse of the whole record).
        let record = try #require(FileManager.default.contents(atPath: fx.config.stateDirectory + "/policy.json"))
        #expect(String(decoding: record.prefix(64), as: UTF8.self).contains("\"filterCount\": 2"))
        #expect(try fx.engine.status().maps.first { $0.name.hasPrefix("filters") }?.used == 2)
        // A detached workload is let go of: nothing keeps it enforcing.
        try fx.engine.detach(workload: "w")
        _ = try admin.checkPins()
        let path = fx.cgroupParent + "/w"
        let again2 = try fx.engine.attach(workload: "w2", cgroupPath: path)
        try fx.engine.detach(workload: "w2")
        #expect(try DaemonTests.connects(fx, again2, l.port), "the detached cgroup is not enforced")
        #expect(try admin.checkPins().isEmpty)
    }
}

/// A count that a test can wait on (a condition variable, not a sleep).
final class Counter: @unchecked Sendable {
    private let cond = NSCondition()
    private var value = 0
    func increment() {
        cond.lock()
        value += 1
        cond.broadcast()
        cond.unlock()
    }
    func wait(atLeast n: Int, timeoutMs: Int) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        cond.lock()
        defer { cond.unlock() }
        while value < n {
            if !cond.wait(until: deadline) { return value >= n }
        }
        return true
    }
}
