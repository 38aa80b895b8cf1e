import FilterEngine
import Foundation
import KernelABI
import Testing

/// Exit statuses as a convention (ExitStatus, README "Exit status"): a wrong command line is 64
/// with a Usage: line, and nothing else is; refused input, the environment and the kernel each
/// have their own status; --json errors are JSON; Foundation's wording never reaches the user.
@Suite("lfp exit statuses and error reports", .serialized)
struct ExitStatusTests {
    typealias R = CLITests.Result

    static func expectRuntimeError(_ r: R, _ status: Int32, _ needle: String, _ comment: String = "") {
        #expect(r.status == status, "\(comment): \(r)")
        #expect(r.stderr.contains(needle), "\(comment): \(r.stderr)")
        #expect(!r.stderr.contains("Usage:") && !r.stderr.contains("NSCocoaErrorDomain"), "\(comment): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
    }

    @Test("--version names the ABI; --help lists the exit statuses")
    func versionAndHelp() throws {
        let v = try CLITests.run(["--version"], env: [:])
        #expect(v.status == 0 && v.stdout.hasPrefix("lfp ") && v.stdout.contains("(ABI \(LFP_ABI_VERSION))"), "\(v)")
        let h = try CLITests.run(["--help"], env: [:])
        #expect(h.status == 0 && h.stdout.contains("Exit status:"), "\(h)")
        for code in ["64", "65", "70", "71", "77", "126"] { #expect(h.stdout.contains("  \(code) "), "\(code) in --help") }
    }

    @Test("nothing committed: show and export fail alike (77, LFP_E_NO_POLICY), as JSON with --json")
    func nothingCommitted() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        for args in [["policy", "show"], ["policy", "export"]] {
            Self.expectRuntimeError(try CLITests.run(args, env: env), ExitStatus.environment, "Error: LFP_E_NO_POLICY: no policy is committed", "\(args)")
        }
        let j = try CLITests.run(["policy", "export", "--json"], env: env)
        #expect(j.status == ExitStatus.environment && j.stdout.isEmpty, "\(j)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stderr.utf8)) as? [String: [String: String]], "\(j.stderr)")
        #expect(obj["error"]?["code"] == "LFP_E_NO_POLICY" && obj["error"]?["message"]?.contains("no policy is committed") == true)
    }

    @Test("a refused policy: 65, one line, its FWP code and document path (JSON with --json), nothing committed")
    func refusedPolicy() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        let bad = try CLITests.write(CLITests.good.replacingOccurrences(of: "FWP_MATCH_EQUAL", with: "FWP_MATCH_EQUALS"))
        let range = try CLITests.write(CLITests.good.replacingOccurrences(of: "uint16: 9", with: "uint16: 18446744073709551616"))
        let dir = NSTemporaryDirectory() + "lfp-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { [bad, range, dir].forEach { try? FileManager.default.removeItem(atPath: $0) } }

        Self.expectRuntimeError(try CLITests.run(["policy", "load", bad], env: env), ExitStatus.refused, "unknown match type")
        let j = try CLITests.run(["policy", "load", bad, "--json"], env: env)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stderr.utf8)) as? [String: [String: String]], "\(j.stderr)")
        #expect(j.status == ExitStatus.refused)
        #expect(obj["error"]?["code"] == "LFP_E_POLICY_SYNTAX", "\(obj)")
        #expect(obj["error"]?["path"] == "filters[0].filterCondition[0].matchType", "\(obj)")
        Self.expectRuntimeError(try CLITests.run(["policy", "load", range], env: env), ExitStatus.refused, "is out of range for FWP_UINT16")
        Self.expectRuntimeError(try CLITests.run(["policy", "load", dir], env: env), ExitStatus.refused, "\(dir): cannot read the file (Is a directory)")
        #expect(!FileManager.default.fileExists(atPath: fx.config.stateDirectory + "/policy.json"), "nothing committed")
        // An output path that is a directory: what failed, in words, not Foundation's error 512.
        let good = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        Self.expectRuntimeError(
            try CLITests.run(["policy", "export", "--policy", good, "-o", dir], env: env), ExitStatus.environment, "cannot write \(dir): Is a directory")
    }

    @Test("usage errors alone are 64 with a Usage: line")
    func usage() throws {
        for args in [["policy", "load"], ["frobnicate"], ["events", "--count", "x"]] {
            let r = try CLITests.run(args, env: [:])
            #expect(r.status == ExitStatus.usage && r.stderr.contains("Usage:"), "\(args): \(r)")
        }
    }

    @Test("events --workload naming nothing is refused (65); a workload ever attached is accepted")
    func eventsUnknownWorkload() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        Self.expectRuntimeError(
            try CLITests.run(["events", "--workload", "nosuch"], env: env), ExitStatus.refused, "LFP_E_NO_SUCH_WORKLOAD")
        try fx.workload("known")
        #expect(try CLITests.run(["events", "--workload", "known", "--duration", "0.1"], env: env).status == 0)
        #expect(try CLITests.run(["events", "--workload", "later", "--allow-unknown-workload", "--duration", "0.1"], env: env).status == 0)
    }

    @Test("environment (not root: 77) and kernel (a broken BPF object: 71) errors have their own statuses")
    func environmentAndKernel() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let good = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: good)
        Self.expectRuntimeError(try CLITests.run(["policy", "load", good], env: CLITests.env(fx), asUser: "65534"), ExitStatus.environment, "needs root")
        let broken = try CLITests.write("not an ELF object")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        var env = CLITests.env(fx)
        env["LFP_BPF_OBJECT"] = broken
        let r = try CLITests.run(["policy", "load", good], env: env)
        #expect(r.status == ExitStatus.kernel && r.stderr.contains("LFP_E_KERNEL") && !r.stderr.contains("Usage:"), "\(r)")
    }

    @Test("classify --exit-code: BLOCK exits 1, PERMIT 0; without it both exit 0")
    func classifyExitCode() throws {
        let good = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: good) }
        let base = ["classify", "--policy", good, "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4"]
        #expect(try CLITests.run(base + ["--field", "FWPM_CONDITION_IP_REMOTE_PORT=9", "--exit-code"], env: [:]).status == ExitStatus.blocked)
        #expect(try CLITests.run(base + ["--field", "FWPM_CONDITION_IP_REMOTE_PORT=10", "--exit-code"], env: [:]).status == 0)
        #expect(try CLITests.run(base + ["--field", "FWPM_CONDITION_IP_REMOTE_PORT=9"], env: [:]).status == 0)
        Self.expectRuntimeError(
            try CLITests.run(base + ["--field", "FWPM_CONDITION_IP_REMOTE_PORT=70000"], env: [:]), ExitStatus.refused,
            "70000 is out of range for FWP_UINT16")
    }
}
