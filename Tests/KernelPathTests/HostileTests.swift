import BPFKit
import FilterEngine
import FilterModel
import Foundation
import PolicyCompiler
import Testing

/// Issue 10 replayed as it was found: a hostile machine (an unprivileged user squatting lfp's
/// state before lfp first runs) and hostile input (a FIFO as ALE_APP_ID, deep YAML, empty and
/// oversized files, a reader that goes away). Each test asserts the fixed behaviour; every
/// blocking wait has a timeout and everything made here is removed, also after a failure.
@Suite("Hostile machines and hostile input (issue 10)", .serialized)
struct HostileTests {
    static let nobody: UInt32 = 65534

    /// Run a command as `nobody` (uid and gid 65534, no supplementary groups, no capabilities).
    static func asNobody(_ command: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "--inh-caps=-all"] + command
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    struct Outcome {
        var exited: Bool  // false: killed by a signal (a crash), or by the timeout
        var status: Int32  // exit status, or the signal
        var timedOut: Bool
        var stdout: String
        var stderr: String
    }

    /// Run the lfp binary with a deadline; its output goes to files, so nothing here can block
    /// on a pipe. On timeout it is killed and `timedOut` is set.
    static func lfp(
        _ args: [String], env: [String: String], umask mask: String? = nil, timeout: Double = 30, shell: String? = nil
    ) throws -> Outcome {
        let dir = NSTemporaryDirectory() + "lfp-hostile-out-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
        let p = Process()
        if let shell {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            p.arguments = ["--wait", "/bin/bash", "-c", shell, CLITests.lfp]
        } else if let mask {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "umask \(mask) && exec \"$0\" \"$@\"", CLITests.lfp] + args
        } else {
            p.executableURL = URL(fileURLWithPath: CLITests.lfp)
            p.arguments = args
        }
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        p.standardOutput = out
        p.standardError = err
        let done = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in done.signal() }
        try p.run()
        try? out.close()
        try? err.close()
        var timedOut = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(shell == nil ? p.processIdentifier : -p.processIdentifier, SIGKILL)  // setsid: its group
            _ = done.wait(timeout: .now() + 10)
        }
        return Outcome(
            exited: p.terminationReason == .exit, status: p.terminationStatus, timedOut: timedOut,
            stdout: (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")
    }

    /// `body` throws a StateTreeError, and it is the `expected` case.
    static func expectRefused(
        _ expected: (StateTreeError) -> Bool, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Any?
    ) {
        let error = #expect(throws: StateTreeError.self, "\(what)", sourceLocation: sourceLocation) { _ = try body() }
        if let error { #expect(expected(error), "\(what): \(error)", sourceLocation: sourceLocation) }
    }

    /// A policy file with `text`, removed by the caller.
    static func file(_ text: String, _ ext: String = "yaml") throws -> String {
        let path = NSTemporaryDirectory() + "lfp-hostile-\(UUID().uuidString).\(ext)"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    // MARK: squatting the state tree

    /// How the squatter prepared lfp's bpffs root before lfp ever ran, and what lfp must say.
    enum Squat: String, CaseIterable {
        case directories  // nobody made root/ and root/maps/ (bpffs is mounted 1777)
        case symlink  // nobody made root a symlink to a directory of its own
        case worldWritable  // root/ made by root, but 0777 (no sticky bit)
        case squattedMaps  // root/ is root's, root/maps/ belongs to nobody
        case plantedPin  // a symlink where lfp's map pin would be
    }

    @Test("an unprivileged user squatting the bpffs root before lfp runs: refused with the path, owner and mode", arguments: Squat.allCases)
    func squattedBPFFS(_ squat: Squat) throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        // bpffs as many machines mount it: 1777. A directory of the same mode on bpffs stands in
        // for the mount, so the test does not depend on how /sys/fs/bpf is mounted here.
        let parent = "/sys/fs/bpf/" + fx.tag + "-squat"
        try #require(mkdir(parent, 0o700) == 0 && chmod(parent, 0o1777) == 0)
        defer { Self.remove(parent) }
        let root = parent + "/lfp"
        var expected: (StateTreeError) -> Bool
        switch squat {
        case .directories:
            #expect(try Self.asNobody(["/bin/mkdir", "-p", root + "/maps", root + "/workloads"]) == 0)
            expected = { if case .notOwnedByRoot(root, Self.nobody, _) = $0 { return true } else { return false } }
        case .symlink:
            #expect(try Self.asNobody(["/bin/mkdir", parent + "/mine"]) == 0)
            #expect(try Self.asNobody(["/bin/ln", "-s", parent + "/mine", root]) == 0)
            expected = { if case .symlink(root, Self.nobody, _) = $0 { return true } else { return false } }
        case .worldWritable:
            try #require(mkdir(root, 0o700) == 0 && chmod(root, 0o777) == 0)
            expected = { if case .writableByOthers(root, 0, let mode) = $0 { return mode & 0o777 == 0o777 } else { return false } }
        case .squattedMaps:
            try #require(mkdir(root, 0o700) == 0 && mkdir(root + "/maps", 0o755) == 0)
            try #require(chown(root + "/maps", Self.nobody, Self.nobody) == 0)
            expected = { if case .notOwnedByRoot(root + "/maps", Self.nobody, _) = $0 { return true } else { return false } }
        case .plantedPin:
            try #require(mkdir(root, 0o700) == 0 && mkdir(root + "/maps", 0o700) == 0)
            try #require(symlink(parent + "/elsewhere", root + "/maps/lfp_config") == 0)
            expected = { if case .symlink(root + "/maps/lfp_config", 0, _) = $0 { return true } else { return false } }
        }
        var cfg = fx.config
        cfg.bpffsRoot = root
        let engine = Engine(config: cfg)
        let policy = try Policy.parse(CLITests.good, sourceName: "good")
        let before = Self.tree(root)

        Self.expectRefused(expected, "commit") { try engine.commit(policy) }
        try CgroupV2.create(fx.cgroupParent + "/w")
        Self.expectRefused(expected, "attach") { try engine.attach(workload: "w", cgroupPath: fx.cgroupParent + "/w") }
        Self.expectRefused(expected, "subscribe") { try engine.subscribe() }
        Self.expectRefused(expected, "status") { try engine.status() }
        #expect(Self.tree(root) == before, "lfp pinned or made nothing in the squatted tree")
        #expect(engine.workloads().isEmpty)

        // The CLI says the same in one message that names the path and its owner.
        var env = CLITests.env(fx)
        env["LFP_BPFFS_ROOT"] = root
        let good = try Self.file(CLITests.good)
        defer { Self.remove(good) }
        let r = try Self.lfp(["policy", "load", good], env: env)
        #expect(r.exited && r.status == ExitStatus.environment, "\(r)")
        #expect(r.stderr.contains("refusing \(root)") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!r.stdout.contains("committed"))
    }

    /// Every path under `root` with its owner and mode (lstat), to show nothing changed.
    static func tree(_ root: String) -> [String: String] {
        var out: [String: String] = [:]
        var st = stat()
        guard lstat(root, &st) == 0 else { return out }
        out[root] = "\(st.st_uid) \(String(st.st_mode, radix: 8))"
        if st.st_mode & S_IFMT == S_IFDIR, let names = try? FileManager.default.contentsOfDirectory(atPath: root) {
            for n in names { out.merge(tree(root + "/" + n)) { a, _ in a } }
        }
        return out
    }

    /// How the state directory was prepared before lfp ran.
    enum StateSquat: String, CaseIterable {
        case ownedByNobody  // nobody made $LFP_STATE_DIR in /tmp first
        case worldWritable  // root made it 0777
        case symlinkedPolicy  // policy.json is a symlink (to a file lfp would then overwrite)
        case squattedRegistry  // workloads/ belongs to nobody
    }

    @Test("a state directory others own or can write is refused", arguments: StateSquat.allCases)
    func squattedStateDirectory(_ squat: StateSquat) throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let dir = fx.config.stateDirectory + "-squat"
        defer { Self.remove(dir) }
        let victim = dir + "-victim"
        defer { Self.remove(victim) }
        var expected: (StateTreeError) -> Bool
        switch squat {
        case .ownedByNobody:
            #expect(try Self.asNobody(["/bin/mkdir", "-m", "0755", dir]) == 0)
            expected = { if case .notOwnedByRoot(dir, Self.nobody, _) = $0 { return true } else { return false } }
        case .worldWritable:
            try #require(mkdir(dir, 0o700) == 0 && chmod(dir, 0o777) == 0)
            expected = { if case .writableByOthers(dir, 0, _) = $0 { return true } else { return false } }
        case .symlinkedPolicy:
            try #require(mkdir(dir, 0o700) == 0)
            try "precious".write(toFile: victim, atomically: false, encoding: .utf8)
            try #require(symlink(victim, dir + "/policy.json") == 0)
            expected = { if case .symlink(dir + "/policy.json", 0, _) = $0 { return true } else { return false } }
        case .squattedRegistry:
            try #require(mkdir(dir, 0o700) == 0 && mkdir(dir + "/workloads", 0o755) == 0)
            try #require(chown(dir + "/workloads", Self.nobody, Self.nobody) == 0)
            expected = { if case .notOwnedByRoot(dir + "/workloads", Self.nobody, _) = $0 { return true } else { return false } }
        }
        var cfg = fx.config
        cfg.stateDirectory = dir
        let engine = Engine(config: cfg)
        let policy = try Policy.parse(CLITests.good, sourceName: "good")
        Self.expectRefused(expected, "commit") { try engine.commit(policy) }
        Self.expectRefused(expected, "committedPolicy") { try engine.committedPolicy() }
        Self.expectRefused(expected, "status") { try engine.status() }
        try CgroupV2.create(fx.cgroupParent + "/w")
        Self.expectRefused(expected, "attach") { try engine.attach(workload: "w", cgroupPath: fx.cgroupParent + "/w") }
        Self.expectRefused(expected, "subscribe") { try engine.subscribe() }
        if squat == .symlinkedPolicy {
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious", "the link's target is untouched")
        }
    }

    @Test("state files 0600 and directories 0700 whatever the umask; modes of older versions narrowed")
    func stateModes() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        // What an older lfp left: a 0755 state directory and a 0644 file.
        try #require(mkdir(fx.config.stateDirectory, 0o755) == 0 && chmod(fx.config.stateDirectory, 0o755) == 0)
        let old = fx.config.stateDirectory + "/workload-names"
        try "old\n".write(toFile: old, atomically: false, encoding: .utf8)
        try #require(chmod(old, 0o644) == 0)
        let good = try Self.file(CLITests.good)
        defer { Self.remove(good) }
        try CgroupV2.create(fx.cgroupParent + "/modes")
        for args in [["policy", "load", good], ["attach", "--workload", "modes", "--cgroup", fx.cgroupParent + "/modes"]] {
            let r = try Self.lfp(args, env: env, umask: "000")
            try #require(r.exited && r.status == 0, "\(args): \(r)")
        }
        for root in [fx.config.stateDirectory, fx.config.bpffsRoot] {
            let entries = Self.tree(root)
            #expect(entries.count > 3, "\(root): \(entries)")
            for (path, ownerMode) in entries {
                let parts = ownerMode.split(separator: " ")
                let mode = UInt32(parts[1], radix: 8)! & 0o170777
                let isDir = mode & 0o170000 == 0o040000
                #expect(parts[0] == "0" && mode == (isDir ? 0o040700 : 0o100600), "\(path): \(ownerMode)")
            }
        }
        for name in ["policy.json", "workloads/modes.json", "workload-names", "lock"] {
            #expect(Self.tree(fx.config.stateDirectory)[fx.config.stateDirectory + "/" + name] != nil, "\(name) exists")
        }
    }

    @Test("lfp mounts bpffs root-only (mode=0700), not 1777")
    func bpffsMountMode() throws {
        try #require(geteuid() == 0)
        let point = NSTemporaryDirectory() + "lfp-hostile-bpffs-\(getpid())"
        try #require(mkdir(point, 0o700) == 0)
        defer { rmdir(point) }
        try BPFFS.ensureMounted(at: point)
        defer { umount2(point, 2) }  // MNT_DETACH
        #expect(BPFFS.isBPFFS(point))
        var st = stat()
        try #require(stat(point, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o700 && st.st_uid == 0, "mode \(String(st.st_mode, radix: 8))")
    }

    // MARK: hostile input

    static func appIDPolicy(_ path: String) -> String {
        """
        filters:
          - displayData: { name: app }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            filterCondition:
              - { fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: '\(path)' } }
            action: { type: FWP_ACTION_BLOCK }
        """
    }

    final class Box<T>: @unchecked Sendable { var value: T? }

    @Test("a FIFO, a directory or a device as ALE_APP_ID: FWP_E_INVALID_PARAMETER at once, no hang")
    func fifoAppID() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let dir = NSTemporaryDirectory() + "lfp-hostile-app-\(UUID().uuidString)"
        try #require(mkdir(dir, 0o700) == 0)
        defer { Self.remove(dir) }
        let fifo = dir + "/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        try #require(symlink(fifo, dir + "/link-to-fifo") == 0)
        let cases = [(fifo, "a FIFO"), (dir + "/link-to-fifo", "a FIFO"), (dir, "a directory"), ("/dev/null", "a character device")]
        for (path, kind) in cases {
            let bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.parse(Self.appIDPolicy(path), sourceName: "app"))
            // Compile on a thread with a deadline. Were the FIFO opened for reading, open()
            // would wait for a writer: the watchdog then opens it for writing, which releases
            // the reader, so a regression fails here instead of hanging the suite.
            let outcome = Box<Result<PolicyImage, any Error>>()
            let done = DispatchSemaphore(value: 0)
            Thread {
                outcome.value = Result { try PolicyCompiler.compile(bfe) }
                done.signal()
            }.start()
            if done.wait(timeout: .now() + 10) == .timedOut {
                Issue.record("compiling ALE_APP_ID=\(path) blocked")
                let w = open(fifo, O_WRONLY | O_NONBLOCK)
                _ = done.wait(timeout: .now() + 10)
                if w >= 0 { close(w) }
            }
            guard case .failure(let error)? = outcome.value else {
                Issue.record("ALE_APP_ID=\(path) compiled: \(String(describing: outcome.value))")
                continue
            }
            let compileError = try #require(error as? CompileError, "\(error)")
            #expect(compileError.code == .invalidParameter)
            #expect(compileError.message.contains("names \(path), which is \(kind), not a regular file"), "\(compileError)")
        }
        // The CLI, as the probe ran it: one message, exit 65 (refused input), long before the deadline.
        let file = try Self.file(Self.appIDPolicy(fifo))
        defer { Self.remove(file) }
        let started = Date()
        let r = try Self.lfp(["policy", "load", file], env: CLITests.env(fx), timeout: 20)
        #expect(!r.timedOut && r.exited && r.status == ExitStatus.refused, "\(r)")
        #expect(r.stderr.hasPrefix("Error: FWP_E_INVALID_PARAMETER: filter 'app': FWPM_CONDITION_ALE_APP_ID names \(fifo), which is a FIFO"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 10)
        // A regular file still works, through a symlink too (identity of the target).
        let exe = dir + "/exe"
        try #require(FileManager.default.createFile(atPath: exe, contents: Data("#!/bin/sh\n".utf8)))
        try #require(symlink(exe, dir + "/link-to-exe") == 0)
        let bfe = BaseFilteringEngine()
        _ = try bfe.load(try Policy.parse(Self.appIDPolicy(dir + "/link-to-exe"), sourceName: "app"))
        #expect(throws: Never.self) { try PolicyCompiler.compile(bfe) }
    }

    /// Documents nested as the probe nested them (5,000 deep in ~10 KB), and an alias chain
    /// whose every line is shallow but whose composed depth is not.
    static let deepDocuments: [(String, String)] = [
        ("flow mappings", "filters: " + String(repeating: "{a: ", count: 5000) + String(repeating: "}", count: 5000)),
        ("flow sequences", "filters: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)),
        ("block sequences", String(repeating: "- ", count: 50000) + "x"),
        ("JSON", "{\"filters\": " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}"),
        ("alias chain", aliasChain(links: 5000, depth: 59)),
    ]

    /// `a0: &a0 [[…x…]]`, then each `aN: &aN [[…*aN-1…]]`: every line `depth` deep, the last
    /// anchor `links * depth` deep once composed.
    static func aliasChain(links: Int, depth: Int) -> String {
        (0..<links).map { i in
            let open = String(repeating: "[", count: depth), close = String(repeating: "]", count: depth)
            return "a\(i): &a\(i) \(open)\(i == 0 ? "x" : "*a\(i - 1)")\(close)"
        }.joined(separator: "\n") + "\n"
    }

    @Test("deep YAML: LFP_E_POLICY_TOO_DEEP from policy load, run --policy and classify --policy; no crash")
    func deepYAML() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        for (shape, text) in Self.deepDocuments {
            let file = try Self.file(text)
            defer { Self.remove(file) }
            let commands = [
                ["policy", "load", file],
                ["run", "--workload", "deep", "--policy", file, "--", "/bin/true"],
                ["classify", "--policy", file, "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4"],
            ]
            for args in commands {
                let r = try Self.lfp(args, env: env, timeout: 60)
                #expect(r.exited && r.status == ExitStatus.refused, "\(shape), \(args[0]): \(r.status) \(r.stderr.prefix(300))")
                #expect(r.stderr.hasPrefix("Error: LFP_E_POLICY_TOO_DEEP: \(file): line "), "\(shape), \(args[0]): \(r.stderr.prefix(300))")
            }
        }
        #expect(try fx.engine.committedPolicy() == nil, "nothing was committed")
        // In this process, just past the limit (shallow enough that even an unbounded parser
        // would survive, so a regression fails here rather than crashing the runner).
        let justPast = [
            "x: " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64),  // 1 + 64
            Self.aliasChain(links: 3, depth: 30),
        ]
        for text in justPast {
            let error = #expect(throws: FWPError.self) { try Policy.parse(text, sourceName: "deep") }
            #expect(error?.code == .policyTooDeep, "\(String(describing: error))")
        }
        // The limit itself is accepted: the document's mapping plus 63 sequences is 64 levels.
        #expect(PolicyLimits.depthExcess(in: "x: " + String(repeating: "[", count: 63) + String(repeating: "]", count: 63)) == nil)
        #expect(PolicyLimits.depthExcess(in: "x: " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64))?.depth == 65)
        // Brackets in quoted and block scalars and in comments are text, not nesting.
        let brackets = String(repeating: "[", count: 200)
        let text = "a: '\(brackets)'\nb: \"\(brackets)\"\nc: |\n  \(brackets)\n# \(brackets)\nd: e\(brackets)\n"
        #expect(PolicyLimits.depthExcess(in: text) == nil)
    }

    @Test("an empty or comment-only policy file is refused unless --allow-empty")
    func emptyPolicy() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        let good = try Self.file(CLITests.good)
        defer { Self.remove(good) }
        try #require(try Self.lfp(["policy", "load", good], env: env).status == 0)
        let before = try #require(try fx.engine.committedPolicy())
        for text in ["", "\n\n", "# nothing here\n   # still nothing\n", "---\n", "filters: []\n", "{}"] {
            let file = try Self.file(text)
            defer { Self.remove(file) }
            for args in [["policy", "load", file], ["run", "--workload", "empty", "--policy", file, "--", "/bin/true"]] {
                let r = try Self.lfp(args, env: env)
                #expect(r.exited && r.status == ExitStatus.refused, "\(text.debugDescription), \(args[0]): \(r)")
                #expect(r.stderr.hasPrefix("Error: LFP_E_POLICY_EMPTY: \(file) defines no "), "\(r.stderr)")
            }
            let error = #expect(throws: FWPError.self) { try Policy.parse(text, sourceName: "empty").requireObjects(sourceName: "empty") }
            #expect(error?.code == .policyEmpty)
        }
        let after = try #require(try fx.engine.committedPolicy())
        #expect(after.generation == before.generation && after.policy == before.policy, "the committed policy is unchanged")
        // On purpose: committed, every filter gone.
        let empty = try Self.file("# no filters, on purpose\n")
        defer { Self.remove(empty) }
        let r = try Self.lfp(["policy", "load", "--allow-empty", empty], env: env)
        #expect(r.exited && r.status == 0, "\(r)")
        let cleared = try #require(try fx.engine.committedPolicy())
        #expect(cleared.generation == before.generation + 1 && cleared.policy.filters.isEmpty)
    }

    @Test("a policy file over 64 MiB, or a stream past the limit, is refused before it is read whole")
    func oversizedPolicy() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        // A sparse file one byte over the limit: refused from its size, without reading it.
        let big = NSTemporaryDirectory() + "lfp-hostile-big-\(UUID().uuidString).yaml"
        let fd = open(big, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        try #require(fd >= 0)
        defer { Self.remove(big) }
        #expect(ftruncate(fd, off_t(PolicyLimits.maxBytes + 1)) == 0)
        close(fd)
        let started = Date()
        // The CLI's limit is 64 MiB or 1 KiB per filter of LFP_MAX_FILTERS, whichever is more.
        var env = CLITests.env(fx)
        env["LFP_MAX_FILTERS"] = "1000"
        let r = try Self.lfp(["policy", "load", big], env: env, timeout: 30)
        #expect(r.exited && r.status == ExitStatus.refused, "\(r)")
        #expect(r.stderr.hasPrefix("Error: LFP_E_POLICY_TOO_LARGE: \(big): \(PolicyLimits.maxBytes + 1) bytes, more than the limit"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 10)
        let error = #expect(throws: FWPError.self) { try Policy.load(contentsOf: big) }
        #expect(error?.code == .policyTooLarge)
        // A stream (a pipe, as with `lfp policy load <(...)`): refused once past the limit.
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let padding = "filters: []\n" + String(repeating: "# padding\n", count: 400)  // ~4 KB, less than the pipe holds
        #expect(padding.withCString { write(fds[1], $0, strlen($0)) } == padding.utf8.count)
        close(fds[1])
        let streamed = #expect(throws: FWPError.self) { try Policy.load(contentsOf: "/dev/fd/\(fds[0])", maxBytes: 1024) }
        #expect(streamed?.code == .policyTooLarge && streamed?.message.contains("refused after reading more than") == true)
        // Under the limit, the same text loads.
        let small = try Self.file(padding)
        defer { Self.remove(small) }
        #expect(throws: Never.self) { try Policy.load(contentsOf: small, maxBytes: padding.utf8.count) }
    }

    // MARK: a reader that goes away

    /// `lfp events` with its standard output into a pipe this test reads as `head -1` would,
    /// and its standard error into a file.
    final class Tail {
        let process = Process()
        let readEnd: Int32
        var readEndOpen = true
        let errFile = NSTemporaryDirectory() + "lfp-hostile-tail-\(UUID().uuidString).err"
        let exited = DispatchSemaphore(value: 0)

        init(_ args: [String], env: [String: String]) throws {
            var fds: [Int32] = [0, 0]
            try #require(pipe(&fds) == 0)
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }  // only the tail gets the write end
            readEnd = fds[0]
            _ = FileManager.default.createFile(atPath: errFile, contents: nil)
            process.executableURL = URL(fileURLWithPath: CLITests.lfp)
            process.arguments = ["events"] + args
            process.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
            process.standardOutput = FileHandle(fileDescriptor: fds[1], closeOnDealloc: false)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errFile))
            let exited = self.exited
            process.terminationHandler = { _ in exited.signal() }
            try process.run()
            close(fds[1])  // the child has it: closing the read end now leaves the pipe without a reader
        }

        /// The first line the tail printed, within `timeout` seconds.
        func firstLine(timeout: Double) -> String? {
            var line = Data()
            let deadline = Date().addingTimeInterval(timeout)
            var byte: UInt8 = 0
            while true {
                var p = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
                let left = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
                guard poll(&p, 1, left) > 0, read(readEnd, &byte, 1) == 1 else { return nil }
                if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
                line.append(byte)
            }
        }

        /// What `head` does once it has its line: close its end of the pipe.
        func closeReadEnd() {
            if readEndOpen { close(readEnd) }
            readEndOpen = false
        }

        var stderr: String { (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "" }

        deinit {
            closeReadEnd()
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                _ = exited.wait(timeout: .now() + 10)
            }
            try? FileManager.default.removeItem(atPath: errFile)
        }
    }

    /// A workload that connects to a blocked port every 10 ms: AUTH_CONNECT events keep coming
    /// until it is stopped, so the tail's subscription shows up as soon as it is live.
    static let connectLoop = """
        import socket, time
        while True:
            try:
                socket.create_connection(('127.0.0.1', 9), 0.2)
            except OSError:
                pass
            time.sleep(0.01)
        """

    /// Stop a workload process for good. SIGKILL, because a process spawned from a test thread
    /// inherits that thread's blocked signals (SIGTERM stays pending); waiting after SIGKILL
    /// cannot block.
    static func stop(_ py: PyProc) {
        guard py.process.isRunning else { return }
        kill(py.process.processIdentifier, SIGKILL)
        py.process.waitUntilExit()
    }

    @Test("`lfp events --follow | head -1`: the tail exits as SIGPIPE does (141), quietly, and frees its slot")
    func eventsIntoClosedPipe() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("pipe")
        let tail = try Tail(["--follow", "--json", "--workload", "pipe"], env: CLITests.env(fx))
        let loop = try PyProc(cgroup: w.cgroupPath, script: Self.connectLoop)
        defer { Self.stop(loop) }
        let line = try #require(tail.firstLine(timeout: 15), "the tail printed an event")
        #expect(line.contains("\"workload\":\"pipe\""))
        tail.closeReadEnd()  // head -1 is done; events keep coming
        try #require(tail.exited.wait(timeout: .now() + 15) == .success, "the tail exited")
        #expect(tail.process.terminationReason == .uncaughtSignal && tail.process.terminationStatus == SIGPIPE, "status \(tail.process.terminationStatus)")
        #expect(tail.stderr.isEmpty, "quietly: \(tail.stderr)")
        #expect(try fx.engine.status().subscribers.isEmpty, "the subscriber slot is free")
    }

    @Test("a tail with nothing left to print notices its reader is gone and frees its slot")
    func quietTailReaderGone() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("quiet")
        let tail = try Tail(
            ["--follow", "--workload", "quiet", "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4"], env: CLITests.env(fx))
        let loop = try PyProc(cgroup: w.cgroupPath, script: Self.connectLoop)
        let line = tail.firstLine(timeout: 15)
        Self.stop(loop)  // no AUTH_CONNECT after this: the tail has nothing to write
        try #require(line != nil, "the tail printed an event")
        try #require(try fx.engine.status().subscribers.count == 1)
        tail.closeReadEnd()
        try #require(tail.exited.wait(timeout: .now() + 15) == .success, "the tail exited without writing")
        #expect(tail.process.terminationReason == .uncaughtSignal && tail.process.terminationStatus == SIGPIPE, "status \(tail.process.terminationStatus)")
        #expect(tail.stderr.isEmpty, "quietly: \(tail.stderr)")
        #expect(try fx.engine.status().subscribers.isEmpty, "the subscriber slot is free")
    }

    @Test("through a real shell pipeline: `lfp events --follow | head -n 1` reports 141")
    func shellPipeline() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("shell")
        let loop = try PyProc(cgroup: w.cgroupPath, script: Self.connectLoop)
        defer { Self.stop(loop) }
        let script = "\"$0\" events --follow --workload shell | head -n 1 >/dev/null; echo \"${PIPESTATUS[0]} ${PIPESTATUS[1]}\""
        let r = try Self.lfpShell(script, env: CLITests.env(fx), timeout: 30)
        #expect(!r.timedOut && r.stdout == "141 0\n", "\(r)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Illegal instruction"), "\(r.stderr)")
        #expect(try fx.engine.status().subscribers.isEmpty, "the subscriber slot is free")
    }

    /// `bash -c script lfp` with a deadline, in its own session so a timeout kills the whole
    /// pipeline.
    static func lfpShell(_ script: String, env: [String: String], timeout: Double) throws -> Outcome {
        try lfp([], env: env, timeout: timeout, shell: script)
    }
}

/// A tail whose consumer stalls keeps a bounded buffer: past `bufferEvents` it sheds whole drain
/// rounds and counts them in its own accounting (a stalled `lfp events` reached 1.09 GB).
@Suite("A stalled tail", .serialized)
struct StalledTailTests {
    @Test("an unconsumed subscription holds at most bufferEvents events and counts the rest as shed")
    func boundedBuffer() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("stall")
        let sub = try fx.engine.subscribe(bufferEvents: 300)
        let port = Net.freePort()
        let steps: [[String: Any]] = (0..<300).map { _ in ["addr": "127.0.0.1", "port": Int(port)] }
        _ = try fx.runClient(in: w, steps)  // ~1,500 events, nobody reading them
        // Wait (bounded) until the reader has taken everything out of the ring.
        let deadline = Date().addingTimeInterval(10)
        var acc = try sub.accounting()
        while acc.received + acc.dropped < acc.submitted || acc.submitted < 1000, Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)  // polling a counter, with a deadline
            acc = try sub.accounting()
        }
        #expect(acc.submitted >= 1000, "\(acc)")
        #expect(acc.shed > 0, "\(acc)")
        let held = Int(acc.received - acc.shed)
        #expect(held > 0 && held <= 300, "the buffer kept what fit: \(acc)")
        let events = await fx.collect(sub, timeout: 2) { $0.count >= held }
        sub.cancel()
        #expect(events.count == held, "the consumer gets exactly what was held: \(events.count) of \(held)")
    }
}

/// Engine errors are typed: tests (and callers) match the case, not the text.
@Suite("Typed engine errors")
struct TypedEngineErrorTests {
    @Test func casesNotMessages() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        #expect(throws: EngineError.noSuchWorkload("nosuch")) { try fx.engine.detach(workload: "nosuch") }
        #expect(throws: EngineError.invalidWorkloadName("bad name!")) {
            try fx.engine.attach(workload: "bad name!", cgroupPath: fx.cgroupParent)
        }
        // bpffs refuses '.' in a pin directory's name: refused up front, not as EPERM from mkdir.
        #expect(throws: EngineError.invalidWorkloadName("nginx.service")) {
            try fx.engine.attach(workload: "nginx.service", cgroupPath: fx.cgroupParent)
        }
        let missing = fx.cgroupParent + "/not-there"
        #expect(throws: EngineError.cgroupNotFound(path: missing, mount: try CgroupV2.mountPoint())) {
            try fx.engine.attach(workload: "w", cgroupPath: missing)
        }
        #expect(throws: EngineError.noCommand) { try fx.engine.run(workload: "w", command: []) }
        #expect(EngineError.noSuchWorkload("x").code == "LFP_E_NO_SUCH_WORKLOAD")
    }
}
