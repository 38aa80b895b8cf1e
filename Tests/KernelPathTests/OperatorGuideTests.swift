import BPFKit
import FilterEngine
import Foundation
import Testing

/// docs/operator-guide.md, run: each example's policy is read from the page, loaded as written
/// (documentation addresses replaced by loopback ones), and every connection the example
/// describes is made by a real process in a real cgroup.
@Suite("Operator guide examples", .serialized)
struct OperatorGuideTests {
    static let guide = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/operator-guide.md").path

    /// The ```yaml block after `<!-- example: NAME -->`, with `replacing` applied.
    static func policy(_ name: String, replacing: [(String, String)] = []) throws -> String {
        let text = try String(contentsOfFile: guide, encoding: .utf8)
        let marker = try #require(text.range(of: "<!-- example: \(name) -->"), "example \(name) in the guide")
        let rest = text[marker.upperBound...]
        let start = try #require(rest.range(of: "```yaml\n"))
        let end = try #require(rest[start.upperBound...].range(of: "```"))
        var yaml = String(rest[start.upperBound..<end.lowerBound])
        for (from, to) in replacing { yaml = yaml.replacingOccurrences(of: from, with: to) }
        return yaml
    }

    static func load(_ fx: KernelFixture, _ yaml: String) throws {
        let file = try CLITests.write(yaml)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try CLITests.run(["policy", "load", file], env: CLITests.env(fx))
        try #require(r.status == 0, "\(r)")
    }

    /// A TCP listener on 0.0.0.0 (so 127.8.0.1 and every other loopback address reach it).
    final class AnyListener {
        let fd: Int32
        let port: UInt16
        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            let r = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            self.port = UInt16(bigEndian: a.sin_port)
            try #require(r == 0 && listen(fd, 64) == 0)
        }
        deinit { close(fd) }
    }

    static func errnos(_ fx: KernelFixture, _ w: Workload, _ steps: [[String: Any]], python: String = KernelFixture.python) throws -> [Int32] {
        try fx.runClient(in: w, steps, python: python).map { $0.errno ?? 0 }
    }

    @Test("VPN kill-switch: the VPN server, the tunnel and loopback pass; everything else is blocked")
    func killSwitch() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let l = try AnyListener()
        try Self.load(fx, try Self.policy("kill-switch", replacing: [("198.51.100.7", "127.0.0.2"), ("10.8.0.0", "127.8.0.0")]))
        let machine = try fx.workload("machine")
        let got = try Self.errnos(
            fx, machine,
            [
                ["type": "udp", "op": "sendto", "addr": "127.0.0.2", "port": 51820],  // the VPN server
                ["addr": "127.8.0.1", "port": Int(l.port)],  // through the tunnel
                ["addr": "127.0.0.1", "port": Int(l.port)],  // loopback
                ["addr": "127.0.0.3", "port": Int(l.port)],  // anything else
                ["type": "udp", "op": "sendto", "addr": "127.0.0.2", "port": 53],  // the server, another port
            ])
        #expect(got == [0, 0, 0, EPERM, EPERM], "\(got)")
    }

    @Test("per-application firewall: python reaches its port only (ECONNREFUSED otherwise); a copy of it is another application")
    func appFirewall() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let https = try Listener(), other = try Listener()
        try Self.load(fx, try Self.policy("app-firewall", replacing: [("uint16: 443", "uint16: \(https.port)")]))
        let w = try fx.workload("myapp")
        let dir = NSTemporaryDirectory() + "lfp-guide-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/python3"
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: KernelFixture.python).resolvingSymlinksInPath().path, toPath: copy)
        let steps: [[String: Any]] = [["addr": "127.0.0.1", "port": Int(https.port)], ["addr": "127.0.0.1", "port": Int(other.port)]]
        #expect(try Self.errnos(fx, w, steps) == [0, ECONNREFUSED])
        #expect(try Self.errnos(fx, w, steps, python: copy) == [0, 0], "another application is not affected")
        let explain = try CLITests.run(
            [
                "classify", "--layer", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "--field", "FWPM_CONDITION_ALE_APP_ID=/usr/bin/python3",
                "--field", "FWPM_CONDITION_IP_REMOTE_PORT=80",
            ], env: CLITests.env(fx))
        #expect(explain.stdout.contains("FWP_ACTION_BLOCK by filter") && explain.stdout.contains("IP_REMOTE_PORT FWP_MATCH_EQUAL"), "\(explain)")
        #expect(explain.stdout.contains("failed: incoming 80"), "\(explain.stdout)")
    }

    @Test("per-container policy: the container reaches its database only; other workloads are not affected")
    func container() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let db = try Listener(), other = try Listener()
        let id = (UUID().uuidString + UUID().uuidString).replacingOccurrences(of: "-", with: "").lowercased()
        try Self.load(
            fx,
            try Self.policy(
                "container", replacing: [("0123456789ab", String(id.prefix(12))), ("10.0.0.5", "127.0.0.1"), ("uint16: 5432", "uint16: \(db.port)")]))
        let cgroup = try CgroupLookupTests.make(fx, "system.slice/docker-\(id).scope")
        let r = try CLITests.run(["attach", "--container", String(id.prefix(12))], env: CLITests.env(fx))
        try #require(r.status == 0 && r.stdout.contains("attached workload container-\(id.prefix(12)) to \(cgroup) "), "\(r)")
        let web = try #require(fx.engine.workload(named: "container-\(id.prefix(12))"))
        let neighbour = try fx.workload("neighbour")
        let steps: [[String: Any]] = [["addr": "127.0.0.1", "port": Int(db.port)], ["addr": "127.0.0.1", "port": Int(other.port)]]
        #expect(try Self.errnos(fx, web, steps) == [0, EPERM])
        #expect(try Self.errnos(fx, neighbour, steps) == [0, 0])
    }
}
