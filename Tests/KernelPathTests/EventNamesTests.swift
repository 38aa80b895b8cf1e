import FilterEngine
import Foundation
import Testing

/// `lfp events` says who did what in names as well as ids (the deciding filter's name and key,
/// the executable the kernel matched, the user), prints one aligned line per event (coloured on
/// a terminal only), and `lfp classify --from-event` replays an event through the model.
@Suite("lfp events names and replay", .serialized)
struct EventNamesTests {
    /// Connects to 127.0.0.1:9 from the workload, prints the errno, then waits on stdin, so the
    /// process (and its /proc/PID/exe) is still there while the tail reads the event.
    static let connect = """
        import socket, sys
        try:
            socket.create_connection(('127.0.0.1', 9), 1)
            print(0, flush=True)
        except OSError as e:
            print(e.errno, flush=True)
        sys.stdin.readline()
        """

    /// A tail (`lfp events ARGS`) that is registered in the kernel when this returns; its output
    /// is read through `stdout` with a watchdog.
    final class Tail {
        let process = Process()
        let out = Pipe()
        let watchdog: DispatchWorkItem

        init(_ args: [String], fx: KernelFixture, launcher: [String] = [], without unset: [String] = []) throws {
            let env = CLITests.env(fx)
            if launcher.isEmpty {
                process.executableURL = URL(fileURLWithPath: CLITests.lfp)
                process.arguments = ["events"] + args
            } else {
                process.executableURL = URL(fileURLWithPath: launcher[0])
                process.arguments = Array(launcher.dropFirst()) + [([CLITests.lfp, "events"] + args).joined(separator: " "), "/dev/null"]
            }
            process.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }.filter { !unset.contains($0.key) }
            process.standardOutput = out
            try process.run()
            let p = process
            watchdog = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
            DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
            // Handshake: the tail is ready once its ring is registered (a subscriber in status).
            let ready = Date().addingTimeInterval(15)
            while (try? fx.engine.status().subscribers.isEmpty) ?? true, Date() < ready, process.isRunning {
                usleep(10_000)  // polling the kernel's subscriber list, with a deadline
            }
        }

        /// Everything it printed, once it has exited (after --count events, or the watchdog).
        func output() -> String {
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            watchdog.cancel()
            return text
        }
    }

    /// Run the connect script in the workload while `tail` listens; returns the tail's output.
    static func blockedConnect(_ fx: KernelFixture, _ w: Workload, _ tail: Tail) throws -> String {
        let py = try PyProc(cgroup: w.cgroupPath, script: Self.connect)
        #expect(py.readLine(timeoutMs: 15_000) == "\(EPERM)", "the connect was blocked")
        let text = tail.output()  // read while the process is alive: its executable is named
        py.send()
        _ = py.finish()
        return text
    }

    @Test("JSON events name the filter (name and key), the executable and the user; replaying one gives the kernel's verdict")
    func namesAndReplay() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("evn")
        let tail = try Tail(["--json", "--workload", "evn", "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "--count", "1"], fx: fx)
        let line = try Self.blockedConnect(fx, w, tail).trimmingCharacters(in: .whitespacesAndNewlines)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        let (_, committed) = try #require(try fx.engine.committedPolicy())
        let filter = try #require(committed.filters.first)
        #expect(obj["filterId"] as? Int == Int(filter.filterId))
        #expect(obj["filterName"] as? String == "block-9")
        #expect(obj["filterKey"] as? String == filter.filterKey.uuidString.lowercased())
        #expect(obj["userName"] as? String == "root")
        let python = URL(fileURLWithPath: KernelFixture.python).resolvingSymlinksInPath().path
        #expect(obj["appId"] as? String == python, "\(line)")

        let replay = try CLITests.run(["classify", "--from-event", line], env: CLITests.env(fx))
        #expect(replay.status == 0, "\(replay)")
        #expect(replay.stdout.contains("replaying event #"), "\(replay.stdout)")
        #expect(replay.stdout.contains("FWPM_LAYER_ALE_AUTH_CONNECT_V4: FWP_ACTION_BLOCK by filter \(filter.filterId) 'block-9'"), "\(replay.stdout)")
        #expect(replay.stdout.contains("FWPM_CONDITION_ALE_APP_ID=\(python)"), "\(replay.stdout)")
        // From standard input, as a pipe from `lfp events --json` gives it, for scripts.
        var env = CLITests.env(fx)
        env["EVENT"] = line
        let piped = try HostileTests.lfpShell("printf '%s\\n' \"$EVENT\" | \"$0\" classify --from-event - --exit-code", env: env, timeout: 30)
        #expect(piped.exited && piped.status == ExitStatus.blocked, "\(piped)")
        let bad = try CLITests.run(["classify", "--from-event", "{\"layer\": 3}"], env: CLITests.env(fx))
        #expect(bad.status == ExitStatus.refused && bad.stderr.contains("not an event"), "\(bad)")
    }

    @Test("one aligned line per event, plain when piped, coloured on a terminal")
    func humanFormat() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(CLITests.good)
        let w = try fx.workload("evh")
        let piped = try Self.blockedConnect(fx, w, try Tail(["--workload", "evh", "--count", "2"], fx: fx))
        let lines = piped.split(separator: "\n").map(String.init)
        try #require(lines.count == 2, "\(piped)")
        #expect(!piped.contains("\u{1B}["), "no escape codes into a pipe: \(piped.debugDescription)")
        // Columns: "#seq" (7), layer (23), then the action at the same offset on every line.
        for l in lines {
            let action = l.dropFirst(32).prefix(6)
            #expect(["PERMIT", "BLOCK ", "NONE  "].contains(String(action)), "aligned: \(l)")
        }
        #expect(lines[0].contains("RESOURCE_ASSIGNMENT_V4") && lines[1].contains("AUTH_CONNECT_V4"), "\(piped)")
        #expect(lines[1].contains("filter ") && lines[1].contains("'block-9' (EPERM)") && lines[1].contains(" root "), "\(lines[1])")
        #expect(lines[1].contains("-> 127.0.0.1:9 ") && lines[1].contains("python3["), "\(lines[1])")

        // On a terminal (script(1) gives the tail a pty): the verdict is coloured.
        let tty = try Tail(
            ["--workload", "evh", "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "--count", "1"], fx: fx,
            launcher: ["/usr/bin/script", "-qfec"], without: ["NO_COLOR"])  // the test runner may set it
        let coloured = try Self.blockedConnect(fx, w, tty)
        #expect(coloured.contains("\u{1B}[31") && coloured.contains("BLOCK"), "red BLOCK on a tty: \(coloured.debugDescription)")
    }
}
