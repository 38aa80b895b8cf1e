import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// The `lfp` binary as users run it: errors are one precise message and change nothing; events
/// from one lfp process show up in another's `lfp events --json`.
@Suite("lfp CLI", .serialized)
struct CLITests {
    /// The lfp executable built next to this test bundle.
    static var lfp: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            dir.appendingPathComponent("lfp").path,
            dir.deletingLastPathComponent().appendingPathComponent("lfp").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ args: [String], env: [String: String], asUser user: String? = nil, dropCaps: Bool = false) throws -> Result {
        let p = Process()
        if dropCaps {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", lfp] + args
        } else if let user {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--inh-caps=-all", lfp] + args
        } else {
            p.executableURL = URL(fileURLWithPath: lfp)
            p.arguments = args
        }
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(
            status: p.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }

    static func env(_ fx: KernelFixture) -> [String: String] {
        [
            "LFP_BPFFS_ROOT": fx.config.bpffsRoot, "LFP_STATE_DIR": fx.config.stateDirectory,
            "LFP_CGROUP_PARENT": fx.cgroupParent,  // the embedded object, as installed
        ]
    }

    static func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "lfp-cli-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let good = """
        filters:
          - displayData: { name: block-9 }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            filterCondition:
              - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 9 } }
            action: { type: FWP_ACTION_BLOCK }
        """

    @Test("bad input: one precise message, non-zero exit, committed policy unchanged")
    func badInput() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = Self.env(fx)
        let good = try Self.write(Self.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        #expect(try Self.run(["policy", "load", good], env: env).status == 0)
        let before = try Self.run(["policy", "show", "--json"], env: env).stdout

        let cases: [(String, String)] = [
            (Self.good.replacingOccurrences(of: "FWP_MATCH_EQUAL", with: "FWP_MATCH_EQUALS"), "unknown match type"),
            (Self.good.replacingOccurrences(of: "AUTH_CONNECT_V4", with: "AUTH_CONNECT_V5"), "FWP_E_LAYER_NOT_FOUND"),
            (Self.good.replacingOccurrences(of: "{ name: block-9 }", with: "{ description: x }"), "FWP_E_NULL_DISPLAY_NAME"),
            (
                Self.good.replacingOccurrences(of: "FWPM_CONDITION_IP_REMOTE_PORT", with: "FWPM_CONDITION_ALE_APP_ID")
                    .replacingOccurrences(of: "FWP_MATCH_EQUAL", with: "FWP_MATCH_PREFIX")
                    .replacingOccurrences(of: "{ type: FWP_UINT16, uint16: 9 }", with: "{ type: FWP_BYTE_BLOB_TYPE, byteBlob: /curl }"),
                "not supported by the kernel"
            ),
            ("filters: [ { displayData: { name: x }", "YAML syntax error: line 2"),
        ]
        for (text, needle) in cases {
            let file = try Self.write(text)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let r = try Self.run(["policy", "load", file], env: env)
            #expect(r.status != 0, "\(needle)")
            #expect(r.stderr.contains(needle), "stderr for \(needle): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count <= 2, "one message: \(r.stderr)")
        }
        #expect(try Self.run(["policy", "show", "--json"], env: env).stdout == before)
        let layer = try Self.run(["classify", "--layer", "FWPM_LAYER_NOPE", "--field", "FWPM_CONDITION_IP_REMOTE_PORT=9"], env: env)
        #expect(layer.status != 0 && layer.stderr.contains("FWP_E_LAYER_NOT_FOUND"))
        let attach = try Self.run(["attach", "--workload", "w", "--cgroup", fx.cgroupParent + "/missing"], env: env)
        #expect(attach.status != 0 && attach.stderr.contains("cgroup not found"))
        let detach = try Self.run(["detach", "--workload", "nobody-here"], env: env)
        #expect(detach.status != 0 && detach.stderr.contains("no workload named"))
    }

    @Test("non-root, missing capabilities, broken object: a clear error naming the cause, nothing changed")
    func nonRoot() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let good = try Self.write(Self.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: good)
        let r = try Self.run(["policy", "load", good], env: Self.env(fx), asUser: "65534")
        #expect(r.status != 0)
        #expect(r.stderr.contains("needs root"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fx.config.stateDirectory + "/policy.json"))
        // root without the capabilities: named, and nothing made in bpffs
        let nocaps = try Self.run(["policy", "load", good], env: Self.env(fx), dropCaps: true)
        #expect(nocaps.status != 0 && nocaps.stderr.contains("CAP_BPF"), "\(nocaps.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fx.config.bpffsRoot))
        // a broken BPF object: libbpf's reason, and nothing made in bpffs either
        let broken = try Self.write("not an ELF object")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        var env = Self.env(fx)
        env["LFP_BPF_OBJECT"] = broken
        let bad = try Self.run(["policy", "load", good], env: env)
        #expect(bad.status != 0 && bad.stderr.contains("BPF object format invalid"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fx.config.bpffsRoot))
    }

    @Test("events from `lfp run` in one process appear in another's `lfp events --json`")
    func eventsAcrossProcesses() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = Self.env(fx)
        let good = try Self.write(Self.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        #expect(try Self.run(["policy", "load", good], env: env).status == 0)
        let tail = Process()
        tail.executableURL = URL(fileURLWithPath: Self.lfp)
        tail.arguments = [
            "events", "--json", "--follow", "--allow-unknown-workload", "--workload", "cli", "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4",
            "--count", "1",
        ]
        tail.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        let out = Pipe()
        tail.standardOutput = out
        try tail.run()
        // Handshake: the tail is ready once its ring is registered (a subscriber in `status`).
        let ready = Date().addingTimeInterval(15)
        while (try? fx.engine.status().subscribers.isEmpty) ?? true, Date() < ready, tail.isRunning {
            usleep(10_000)  // polling the kernel's subscriber list, with a deadline
        }
        // Every blocking read below has a deadline: the tail is killed if it has not finished.
        let watchdog = DispatchWorkItem { if tail.isRunning { kill(tail.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
        defer { watchdog.cancel() }
        let script = "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), 1)\nexcept OSError as e:\n raise SystemExit(e.errno)"
        let r = try Self.run(["run", "--workload", "cli", "--", KernelFixture.python, "-c", script], env: env)
        #expect(r.status == EPERM, "lfp run exits with the command's status")
        let line = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        tail.waitUntilExit()
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        #expect(obj["layer"] as? String == "FWPM_LAYER_ALE_AUTH_CONNECT_V4")
        #expect(obj["actionType"] as? String == "FWP_ACTION_BLOCK")
        #expect(obj["workload"] as? String == "cli")
        #expect(obj["remotePort"] as? Int == 9 && obj["errno"] as? String == "EPERM")
        for key in [
            "filterId", "transportEndpointHandle", "processId", "userId", "cgroupId", "processName",
            "ipProtocol", "remoteAddress", "timestampNs", "sequence",
        ] {
            #expect(obj[key] != nil, "JSON has \(key)")
        }
    }

    @Test("policy export writes a file that loads to the same objects")
    func exportRoundTrip() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = Self.env(fx)
        let good = try Self.write(Self.good)
        let exported = NSTemporaryDirectory() + "lfp-export-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: good); try? FileManager.default.removeItem(atPath: exported) }
        #expect(try Self.run(["policy", "load", good], env: env).status == 0)
        #expect(try Self.run(["policy", "export", "-o", exported], env: env).status == 0)
        let a = try Self.run(["policy", "export", "--json"], env: env).stdout
        let b = try Self.run(["policy", "export", "--json", "--policy", exported], env: env).stdout
        #expect(a == b && !a.isEmpty)
    }
}
