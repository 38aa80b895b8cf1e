import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// Issue 10, "crash consistency and truthful status", replayed as it was found: a cgroup
/// removed and made again, the bpffs root removed (with and without a process holding the
/// links), kill -9 of `lfp attach` at random moments, and many `lfp run` at once. Real cgroups,
/// real bpffs, real programs and the real CLI; every wait has a deadline, and everything made
/// here is removed, also after a failure.
@Suite("Truthful status, crash-safe attach, concurrent run (issue 10)", .serialized)
struct HealthTests {
    struct Outcome: CustomStringConvertible {
        var exited: Bool  // false: killed by a signal, or by the deadline
        var status: Int32
        var timedOut: Bool
        var stdout: String
        var stderr: String
        var description: String { "exited=\(exited) status=\(status) timedOut=\(timedOut) stdout=\(stdout.prefix(2000)) stderr=\(stderr.prefix(2000))" }
    }

    /// A process whose output goes to files (nothing here can block on a pipe), waited for with
    /// a deadline. Started from a test thread it inherits a blocked SIGTERM: stop it with SIGKILL.
    final class Child {
        let process = Process()
        let dir = NSTemporaryDirectory() + "lfp-health-\(UUID().uuidString)"
        let exited = DispatchSemaphore(value: 0)
        private var waited = false

        init(_ executable: String, _ args: [String], env: [String: String] = [:]) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: dir + "/out", contents: nil)
            _ = FileManager.default.createFile(atPath: dir + "/err", contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
            let err = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
            defer {
                try? out.close()
                try? err.close()
            }
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = args
            process.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
            process.standardOutput = out
            process.standardError = err
            let exited = self.exited
            process.terminationHandler = { _ in exited.signal() }
            try process.run()
        }

        var pid: Int32 { process.processIdentifier }

        /// Wait until it exits, at most `timeout` seconds; then kill it (and wait for that).
        func wait(timeout: Double) -> Outcome {
            var timedOut = false
            if !waited {
                if exited.wait(timeout: .now() + timeout) == .timedOut {
                    timedOut = true
                    kill(pid, SIGKILL)
                    _ = exited.wait(timeout: .now() + 10)
                }
                waited = true
            }
            return Outcome(
                exited: process.terminationReason == .exit && !timedOut, status: process.terminationStatus, timedOut: timedOut,
                stdout: (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "",
                stderr: (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")
        }

        deinit {
            if !waited {
                kill(pid, SIGKILL)
                _ = exited.wait(timeout: .now() + 10)
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    static func lfp(_ args: [String], _ fx: KernelFixture, timeout: Double = 60) throws -> Outcome {
        try Child(CLITests.lfp, args, env: CLITests.env(fx)).wait(timeout: timeout)
    }

    /// connect() to 127.0.0.1:9 from inside `cgroup`: "EPERM" when lfp blocks it (the test
    /// policy blocks port 9), "ECONNREFUSED" when nothing does (nothing listens there).
    static func probe(_ cgroup: String) throws -> String {
        let script = """
            import errno, socket
            try:
                socket.create_connection(('127.0.0.1', 9), 3)
                print('connected')
            except OSError as e:
                print(errno.errorcode.get(e.errno, str(e.errno)))
            """
        let r = try Child(
            "/bin/sh", ["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup, KernelFixture.python, "-c", script]
        ).wait(timeout: 30)
        try #require(r.exited && r.status == 0, "probe: \(r)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `lfp status --json`, decoded, with its exit status.
    static func statusJSON(_ fx: KernelFixture) throws -> (status: Int32, json: [String: Any], text: String) {
        let r = try lfp(["status", "--json"], fx)
        try #require(r.exited, "status: \(r)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r)")
        return (r.status, obj, r.stdout)
    }

    static func kinds(_ problems: [HealthProblem]) -> Set<HealthProblem.Kind> { Set(problems.map(\.kind)) }

    /// The kernel's own list of cgroup links (bpftool, independent of lfp's code): link id ->
    /// cgroup id, for links on `cgroups`.
    static func kernelLinks(on cgroups: Set<UInt64>) throws -> [UInt32: UInt64] {
        let r = try Child("/usr/sbin/bpftool", ["link", "show", "--json"]).wait(timeout: 60)
        try #require(r.exited && r.status == 0, "bpftool: \(r)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        var out: [UInt32: UInt64] = [:]
        for l in list where l["type"] as? String == "cgroup" {
            guard let id = (l["id"] as? NSNumber)?.uint32Value, let cg = (l["cgroup_id"] as? NSNumber)?.uint64Value else { continue }
            if cgroups.contains(cg) { out[id] = cg }
        }
        return out
    }

    // MARK: finding 1: status checks what it reports

    @Test("a cgroup removed and made again: status says DEGRADED (cgroupRecreated), exits 3, and it is unenforced")
    func recreatedCgroup() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)  // blocks remote port 9
        let w = try fx.workload("again")
        #expect(try Self.probe(w.cgroupPath) == "EPERM", "enforced while attached")
        let before = try fx.engine.status()
        #expect(before.healthy && before.workloads.first?.healthy == true, "\(before.render())")
        #expect(before.workloads.first?.links.count == w.programs.count, "the kernel has every link")
        #expect(try Self.lfp(["status"], fx).status == 0)

        try #require(rmdir(w.cgroupPath) == 0)
        try CgroupV2.create(w.cgroupPath)
        #expect(try Self.probe(w.cgroupPath) == "ECONNREFUSED", "the new cgroup at the same path is not enforced")

        let s = try fx.engine.status()
        let ws = try #require(s.workloads.first)
        #expect(!s.healthy && !ws.healthy, "\(s.render())")
        #expect(Self.kinds(ws.problems).contains(.cgroupRecreated), "\(ws.problems)")
        #expect(ws.liveCgroupId != nil && ws.liveCgroupId != w.cgroupId)
        // The CLI: a distinct exit status, and healthy: false with the reasons in JSON.
        let text = try Self.lfp(["status"], fx)
        #expect(text.exited && text.status == EngineStatus.degradedExitCode, "\(text)")
        #expect(text.stdout.contains("DEGRADED") && text.stdout.contains("removed and made again"), "\(text.stdout)")
        let (code, json, raw) = try Self.statusJSON(fx)
        #expect(code == EngineStatus.degradedExitCode)
        #expect(json["healthy"] as? Bool == false, "\(raw)")
        let jw = try #require((json["workloads"] as? [[String: Any]])?.first)
        #expect(jw["healthy"] as? Bool == false)
        let jk = (jw["problems"] as? [[String: Any]])?.compactMap { $0["kind"] as? String } ?? []
        #expect(jk.contains("cgroupRecreated"), "\(raw)")

        // Detaching takes the stale links away; attached again, it is healthy and enforced.
        #expect(try Self.lfp(["detach", "--workload", "again"], fx).status == 0)
        try fx.engine.attach(workload: "again", cgroupPath: w.cgroupPath)
        #expect(try Self.probe(w.cgroupPath) == "EPERM")
        #expect(try Self.lfp(["status"], fx).status == 0)
    }

    @Test("rm -rf of the bpffs root: enforcement stops, and status says so and exits 3")
    func removedBPFFSRoot() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("rooted")
        #expect(try Self.probe(w.cgroupPath) == "EPERM")
        try FileManager.default.removeItem(atPath: fx.config.bpffsRoot)
        #expect(try Self.probe(w.cgroupPath) == "ECONNREFUSED", "fail open: the links went with their pins")

        let s = try fx.engine.status()
        #expect(!s.healthy, "\(s.render())")
        #expect(Self.kinds(s.problems).isSuperset(of: [.bpffsRootMissing, .policyNotInKernel]), "\(s.problems)")
        let ws = try #require(s.workloads.first)
        #expect(Self.kinds(ws.problems).isSuperset(of: [.linkNotPinned, .programNotAttached]), "\(ws.problems)")
        #expect(s.kernelLinks == 0)
        let r = try Self.lfp(["status"], fx)
        #expect(r.exited && r.status == EngineStatus.degradedExitCode, "\(r)")
        #expect(!r.stdout.contains("no kernel state"), "\(r.stdout)")
        #expect(r.stdout.contains("is gone"), "\(r.stdout)")

        // Detach forgets the workload; loading the policy again makes the state whole.
        #expect(try Self.lfp(["detach", "--workload", "rooted"], fx).status == 0)
        let good = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        #expect(try Self.lfp(["policy", "load", good], fx).status == 0)
        let after = try Self.lfp(["status"], fx)
        #expect(after.status == 0, "\(after)")
    }

    @Test("maps unpinned, links still pinned: status says the links enforce a policy no commit can reach, and exits 3")
    func removedMaps() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("mapless")
        try FileManager.default.removeItem(atPath: fx.config.bpffsRoot + "/maps")
        #expect(try Self.probe(w.cgroupPath) == "EPERM", "the programs keep the maps they were loaded with")
        let s = try fx.engine.status()
        #expect(!s.healthy && !s.kernelStatePresent && s.kernelLinks == w.programs.count, "\(s.render())")
        #expect(Self.kinds(s.problems) == [.mapsMissing, .policyNotInKernel], "\(s.problems)")
        #expect(s.workloads.first?.healthy == true, "the workload's own links are whole: \(s.render())")
        let r = try Self.lfp(["status"], fx)
        #expect(r.exited && r.status == EngineStatus.degradedExitCode, "\(r)")
        #expect(r.stdout.contains("maps not pinned, but \(w.programs.count) lfp links still enforce"), "\(r.stdout)")
    }

    @Test("pins gone but a process holds the links: status finds them in the kernel, detach --orphans removes them")
    func linksOutliveTheirPins() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("held")
        let ids = try #require(try fx.engine.status().workloads.first).links.map(\.linkId)
        try #require(ids.count == w.programs.count)
        // Hold every link open, as a daemon would, then lose the whole bpffs tree.
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        for id in ids { held.append(try BPFKernel.holdLink(id: id)) }
        try FileManager.default.removeItem(atPath: fx.config.bpffsRoot)
        #expect(try Self.probe(w.cgroupPath) == "EPERM", "the held links still enforce")

        let s = try fx.engine.status()
        #expect(!s.healthy && s.kernelLinks == ids.count, "\(s.render())")
        #expect(!s.render().contains("no kernel state"), "\(s.render())")
        #expect(s.render().contains("\(ids.count) lfp links still enforce"), "\(s.render())")
        let ws = try #require(s.workloads.first)
        let unpinned = try #require(ws.problems.first { $0.kind == .unpinnedLinks }, "\(ws.problems)")
        #expect(Set(unpinned.linkIds ?? []) == Set(ids))
        #expect(Set(s.orphanLinks.map(\.linkId)) == Set(ids), "pinned under no registered workload")
        #expect(s.orphanLinks.allSatisfy { $0.workload == "held" && $0.pinPath == nil && $0.program.hasPrefix("lfp_") })

        let r = try Self.lfp(["detach", "--orphans"], fx)
        #expect(r.exited && r.status == 0, "\(r)")
        #expect(r.stdout.contains("detached \(ids.count) orphan links"), "\(r.stdout)")
        #expect(try Self.probe(w.cgroupPath) == "ECONNREFUSED", "detached although still held open")
        let cgfd = try CgroupV2.open(w.cgroupPath)
        defer { close(cgfd) }
        for type in Set(try ids.compactMap { try BPFKernel.linkInfo(id: $0)?.attachType }) {
            #expect(try BPFKernel.attachedPrograms(cgroupFD: cgfd, attachType: type, cgroup: w.cgroupPath).isEmpty)
        }
        #expect(try fx.engine.status().kernelLinks == 0)
    }

    // MARK: finding 2: kill -9 of lfp attach

    /// Waits for pins to appear in a directory that does not exist yet (inotify: bpffs reports
    /// its mkdir and pin creations).
    final class PinWatch {
        let fd: Int32
        let parent: String
        let name: String
        private var dirWatch: Int32 = -1

        init(parent: String, name: String) throws {
            fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
            try #require(fd >= 0)
            self.parent = parent
            self.name = name
            try #require(inotify_add_watch(fd, parent, UInt32(IN_CREATE)) >= 0)
        }

        /// Pins in the directory now (0 when it does not exist).
        var count: Int { ((try? FileManager.default.contentsOfDirectory(atPath: parent + "/" + name)) ?? []).count }

        /// Until `count >= n`, `done()` says the process is gone, or the deadline passes.
        func wait(forPins n: Int, deadline: Date, done: () -> Bool) {
            var buf = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline {
                if dirWatch < 0 {
                    dirWatch = inotify_add_watch(fd, parent + "/" + name, UInt32(IN_CREATE))
                }
                if count >= n || done() { return }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, 20)  // wake on a creation; re-check the exit now and then
                while read(fd, &buf, buf.count) > 0 {}
            }
        }

        deinit { close(fd) }
    }

    @Test("kill -9 of `lfp attach` at 20 random moments: status lists every lfp link in the kernel, detach removes them all")
    func killAttach() throws {
        let fx = try KernelFixture()
        defer {
            _ = try? fx.engine.detachOrphans()
            fx.cleanup()
        }
        _ = try fx.commit(CLITests.good)
        // One whole attach, to learn how long one takes here (and to make the pin directories).
        let probeCgroup = fx.cgroupParent + "/timing"
        try CgroupV2.create(probeCgroup)
        let started = Date()
        let whole = try Self.lfp(["attach", "--workload", "timing", "--cgroup", probeCgroup], fx)
        let duration = Date().timeIntervalSince(started)
        try #require(whole.status == 0, "\(whole)")
        try #require(try Self.lfp(["detach", "--workload", "timing"], fx).status == 0)

        var cgroups: [String: UInt64] = [:]
        var partial = 0
        let tries = 20
        for i in 0..<tries {
            let name = "k\(i)"
            let path = fx.cgroupParent + "/" + name
            try CgroupV2.create(path)
            cgroups[name] = try CgroupV2.id(of: path)
            let watch = try PinWatch(parent: fx.config.bpffsRoot + "/workloads", name: name)
            let child = try Child(CLITests.lfp, ["attach", "--workload", name, "--cgroup", path], env: CLITests.env(fx))
            if i % 2 == 0 {
                // Any moment of the attach, the load and the verifier included.
                usleep(UInt32(Double.random(in: 0...(duration * 1.2)) * 1e6))
            } else {
                // Right after the k-th link is pinned: the window between the first link and
                // the end of the attach.
                let k = Int.random(in: 1...10)
                watch.wait(forPins: k, deadline: Date().addingTimeInterval(60)) { !child.process.isRunning }
            }
            kill(child.pid, SIGKILL)
            let r = child.wait(timeout: 30)
            #expect(!r.timedOut, "\(name): \(r)")
            let pins = watch.count
            if pins > 0 && pins < 10 { partial += 1 }
        }

        // The kernel's truth (bpftool), against what status lists.
        let ids = Set(cgroups.values)
        let truth = try Self.kernelLinks(on: ids)
        let s = try fx.engine.status()
        let listed = Set(s.workloads.flatMap { $0.links.map(\.linkId) } + s.orphanLinks.map(\.linkId))
        #expect(Set(truth.keys).isSubset(of: listed), "links no one lists: \(Set(truth.keys).subtracting(listed)); status: \(s.render())")
        #expect(listed.isSubset(of: Set(truth.keys)), "status lists links the kernel does not have")
        // Every link is listed by a record: a kill -9 leaves nothing but records' links.
        #expect(s.orphanLinks.isEmpty, "\(s.render())")
        for ws in s.workloads where ws.problems.contains(where: { $0.kind == .attachInterrupted }) {
            #expect(!ws.healthy)
        }
        let interrupted = s.workloads.filter { w in w.problems.contains { $0.kind == .attachInterrupted } }
        // The window the probe found: killed after its first link and before the record was
        // complete. Half the kills wait for a pin, so some land there.
        #expect(interrupted.contains { !$0.links.isEmpty }, "some kills landed after a link (\(partial) between two): \(s.render())")
        #expect(!truth.isEmpty && !s.healthy)
        let (code, json, _) = try Self.statusJSON(fx)
        #expect(code == (s.healthy ? 0 : EngineStatus.degradedExitCode) && json["healthy"] as? Bool == s.healthy)

        // Cleanup through the CLI: interrupted attaches and orphans, then the finished ones.
        let orphans = try Self.lfp(["detach", "--orphans"], fx)
        #expect(orphans.exited && orphans.status == 0, "\(orphans)")
        for w in fx.engine.workloads() {
            #expect(w.attaching == nil, "\(w.name) was left by --orphans")
            let r = try Self.lfp(["detach", "--workload", w.name], fx)
            #expect(r.status == 0, "\(r)")
        }
        #expect(try Self.kernelLinks(on: ids).isEmpty, "no lfp link left on the test's cgroups")
        let after = try Self.lfp(["status"], fx)
        #expect(after.status == 0, "\(after)")
    }

    // MARK: finding 3: concurrent lfp run

    @Test("40 concurrent `lfp run` with distinct names and 20 with one name: no EEXIST; distinct all run; same-name run or fail with LFP_E_WORKLOAD_EXISTS")
    func concurrentRuns() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        // Exits 42 when lfp blocked its connect to port 9: it ran inside an enforced workload.
        let script =
            "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), 3)\nexcept PermissionError:\n raise SystemExit(42)\nexcept OSError:\n raise SystemExit(43)"
        // The shared parent is absent at the start, as on a machine where no run is going on.
        try #require(rmdir(fx.cgroupParent) == 0)
        // A starting gate: every run waits for a shared flock of a file this test holds
        // exclusively, so all 60 start at once rather than one process start apart.
        let gate = try Gate()
        var children: [(name: String, child: Child)] = []
        let names = (0..<40).map { "d\($0)" } + Array(repeating: "same", count: 20)
        for name in names.shuffled() {
            let args = ["run", "--workload", name, "--", KernelFixture.python, "-c", script]
            children.append((name, try Child("/bin/sh", gate.wrap([CLITests.lfp] + args), env: CLITests.env(fx))))
        }
        gate.open(waiters: names.count, deadline: Date().addingTimeInterval(60))
        let deadline = Date().addingTimeInterval(300)
        var sameRan = 0
        var sameRefused = 0
        for (name, child) in children {
            let r = child.wait(timeout: max(1, deadline.timeIntervalSinceNow))
            #expect(!r.stderr.contains("EEXIST"), "\(name): \(r)")
            if name == "same" {
                if r.exited && r.status == 42 {
                    sameRan += 1
                } else {
                    #expect(r.exited && r.status == ExitStatus.refused, "\(name): \(r)")
                    #expect(r.stderr.hasPrefix("Error: LFP_E_WORKLOAD_EXISTS: workload 'same' already exists"), "\(name): \(r)")
                    sameRefused += 1
                }
            } else {
                #expect(r.exited && r.status == 42, "\(name): \(r)")
            }
        }
        #expect(sameRan >= 1 && sameRan + sameRefused == 20, "same name: \(sameRan) ran, \(sameRefused) refused")
        // Everything went away with the runs.
        #expect(fx.engine.workloads().isEmpty)
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: fx.cgroupParent)) ?? []).filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: fx.cgroupParent + "/" + $0, isDirectory: &isDir) && isDir.boolValue
        }
        #expect(left.isEmpty, "cgroups left: \(left)")
        #expect(try Self.lfp(["status"], fx).status == 0)
    }

    /// A file locked exclusively until `open()`; wrapped commands take a shared lock first.
    final class Gate {
        let path = NSTemporaryDirectory() + "lfp-health-gate-\(UUID().uuidString)"
        let fd: Int32
        var inode: UInt64 = 0
        private var isOpen = false

        init() throws {
            fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            try #require(fd >= 0 && flock(fd, LOCK_EX) == 0)
            var st = stat()
            try #require(fstat(fd, &st) == 0)
            inode = UInt64(st.st_ino)
        }

        /// `/bin/sh` arguments: wait for the gate (a shared flock on fd 9), then exec `command`.
        func wrap(_ command: [String]) -> [String] {
            ["-c", "exec 9<\"$0\" && flock -s 9 && exec \"$@\"", path] + command
        }

        /// Processes waiting for the gate right now (/proc/locks lists them with "->").
        var waiting: Int {
            let text = (try? String(contentsOfFile: "/proc/locks", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { $0.contains("->") && $0.contains(":\(inode) ") }.count
        }

        /// Let everyone through once `waiters` wait (or at the deadline: they go anyway).
        func open(waiters: Int, deadline: Date) {
            while waiting < waiters && Date() < deadline {
                var none = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&none, 1, 10)
            }
            flock(fd, LOCK_UN)
            isOpen = true
        }

        deinit {
            if !isOpen { flock(fd, LOCK_UN) }
            close(fd)
            unlink(path)
        }
    }

    @Test("a second run of a name in use fails with WorkloadError.exists before it makes anything")
    func sameNameTyped() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let w = try fx.workload("busy")
        let error = #expect(throws: WorkloadError.self) { try fx.engine.run(workload: "busy", command: ["/bin/true"]) }
        #expect(error == .exists(name: "busy", cgroupPath: w.cgroupPath))
        // Its cgroup already there (another run of it is starting), no record yet: the same.
        try CgroupV2.create(fx.cgroupParent + "/starting")
        let error2 = #expect(throws: WorkloadError.self) { try fx.engine.run(workload: "starting", command: ["/bin/true"]) }
        #expect(error2 == .exists(name: "starting", cgroupPath: fx.cgroupParent + "/starting"))
        #expect(fx.engine.workloads().map(\.name) == ["busy"])
        let attachAgain = #expect(throws: WorkloadError.self) { try fx.engine.attach(workload: "busy", cgroupPath: fx.cgroupParent + "/starting") }
        #expect(attachAgain?.code == "LFP_E_WORKLOAD_EXISTS")
    }
}
