import BPFKit
import FilterEngine
import Foundation
import Testing

/// `lfp run` stops as the tools operators trust do: its command starts with default signal
/// dispositions and an empty mask (no shell in between left SIGINT ignored), SIGINT, SIGTERM and
/// SIGHUP sent to lfp reach the command, and lfp exits with the command's status after removing
/// the workload's cgroup and links.
@Suite("lfp run and signals", .serialized)
struct RunSignalTests {
    /// `lfp run` in its own process group, as a shell's job is (Foundation's Process makes its
    /// child a group leader: pgid == pid), its stdin and stdout pipes held by the test.
    final class Job {
        let process = Process()
        private let input = Pipe()
        private let output = Pipe()
        private lazy var lines = LineReader(output.fileHandleForReading)
        private let done = DispatchSemaphore(value: 0)

        init(_ args: [String], env: [String: String]) throws {
            process.executableURL = URL(fileURLWithPath: CLITests.lfp)
            process.arguments = args
            process.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
            process.standardInput = input
            process.standardOutput = output
            process.terminationHandler = { [done] _ in done.signal() }
            try process.run()
            // The group the Ctrl-C test signals must be lfp's alone (not the test runner's).
            try #require(getpgid(process.processIdentifier) == process.processIdentifier, "lfp leads its process group")
        }

        /// The next line the command printed, or nil when none came within `timeoutMs`.
        func readLine(timeoutMs: Int32 = 20_000) -> String? { lines.readLine(timeoutMs: timeoutMs) }

        /// lfp's exit status, or nil when it had not exited within `timeout` (then the whole
        /// group is killed, so nothing outlives the test).
        func wait(timeout: Double = 30) -> Int32? {
            if done.wait(timeout: .now() + timeout) == .timedOut {
                kill(-process.processIdentifier, SIGKILL)
                _ = done.wait(timeout: .now() + 10)
                return nil
            }
            return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
        }

        deinit {
            try? input.fileHandleForWriting.close()
            if process.isRunning { kill(-process.processIdentifier, SIGKILL) }
        }
    }

    /// Nothing of workload `name` is left: no cgroup, no record, no pinned links.
    static func expectGone(_ fx: KernelFixture, _ name: String, _ pid: Int32?) {
        #expect(!FileManager.default.fileExists(atPath: fx.cgroupParent + "/" + name), "cgroup removed")
        #expect(fx.engine.workload(named: name) == nil, "workload record removed")
        #expect(!FileManager.default.fileExists(atPath: fx.config.bpffsRoot + "/workloads/" + name), "links unpinned")
        if let pid { #expect(kill(pid, 0) == -1 && errno == ESRCH, "the command has ended") }
    }

    /// `sh -c 'echo ready $$; read x'`: prints its pid, then waits on stdin with SIGINT, SIGTERM
    /// and SIGHUP at their defaults (a non-interactive dash sets no handler).
    static let waiter = ["/bin/sh", "-c", "echo ready $$; read x"]

    static func started(_ job: Job) throws -> Int32 {
        let line = try #require(job.readLine(), "the command printed its pid")
        let parts = line.split(separator: " ")
        try #require(parts.count == 2 && parts[0] == "ready", "\(line)")
        return try #require(Int32(parts[1]))
    }

    @Test("the command starts with no signal ignored or blocked, even when lfp was started with SIGINT and SIGPIPE ignored")
    func defaultDispositions() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        // As a non-interactive shell leaves a background job: SIGINT (and here SIGPIPE) ignored.
        let r = try HostileTests.lfp(
            [], env: CLITests.env(fx),
            shell: "trap '' INT PIPE HUP; exec \"$0\" run --workload sigdef -- /bin/grep -E '^Sig(Blk|Ign):' /proc/self/status")
        #expect(r.exited && r.status == 0, "\(r)")
        #expect(r.stdout == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "\(r.stdout)")
        Self.expectGone(fx, "sigdef", nil)
    }

    @Test("SIGTERM to lfp reaches the command; lfp exits 143 as it did, and cleans up")
    func sigtermKills() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let job = try Job(["run", "--workload", "sigterm", "--"] + Self.waiter, env: CLITests.env(fx))
        let pid = try Self.started(job)
        #expect(CgroupV2.pids(fx.cgroupParent + "/sigterm").contains(pid), "the command runs in the workload's cgroup")
        kill(job.process.processIdentifier, SIGTERM)
        #expect(job.wait() == 128 + SIGTERM)
        Self.expectGone(fx, "sigterm", pid)
    }

    @Test("Ctrl-C (SIGINT to the process group) stops the command; lfp exits 130 and cleans up")
    func ctrlC() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let job = try Job(["run", "--workload", "sigint", "--"] + Self.waiter, env: CLITests.env(fx))
        let pid = try Self.started(job)
        kill(-job.process.processIdentifier, SIGINT)
        #expect(job.wait() == 128 + SIGINT)
        Self.expectGone(fx, "sigint", pid)
    }

    @Test("a command that handles SIGHUP gets it from lfp and lfp exits with the status it chose")
    func sighupHandled() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let script = """
            import os, signal, sys
            def handler(n, _):
                print("got", n, flush=True)
                os._exit(10 + n)
            signal.signal(signal.SIGHUP, handler)
            print("ready", os.getpid(), flush=True)
            sys.stdin.readline()
            """
        let job = try Job(["run", "--workload", "sighup", "--", KernelFixture.python, "-c", script], env: CLITests.env(fx))
        let pid = try Self.started(job)
        kill(job.process.processIdentifier, SIGHUP)
        #expect(job.readLine() == "got \(SIGHUP)")
        #expect(job.wait() == 10 + SIGHUP)
        Self.expectGone(fx, "sighup", pid)
    }

    @Test("a command not in PATH: LFP_E_COMMAND_NOT_FOUND, exit 127, nothing made")
    func commandNotFound() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let r = try HostileTests.lfp(["run", "--workload", "nocmd", "--", "lfp-no-such-command"], env: CLITests.env(fx))
        #expect(r.exited && r.status == 127 && r.stderr.contains("LFP_E_COMMAND_NOT_FOUND"), "\(r)")
        Self.expectGone(fx, "nocmd", nil)
    }
}
