import FilterModel
import Foundation
import Testing
import Yams

/// The Kubernetes manifests (deploy/kubernetes), checked offline: no cluster runs here. Their
/// fields that the daemon depends on must agree with each other and with lfp's own flags.
@Suite("Deploy manifests")
struct DeployManifestTests {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/kubernetes")

    static func documents(_ file: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: deploy.appendingPathComponent(file), encoding: .utf8)
        return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
    }

    static func at(_ o: Any?, _ path: String...) -> Any? {
        var cur = o
        for k in path { cur = (cur as? [String: Any])?[k] }
        return cur
    }

    @Test("the DaemonSet runs lfp daemon privileged with the host's bpffs and cgroups, the ConfigMap's policies and metrics")
    func daemonSet() throws {
        let docs = try Self.documents("daemonset.yaml")
        let ds = try #require(docs.first { $0["kind"] as? String == "DaemonSet" })
        #expect(ds["apiVersion"] as? String == "apps/v1")
        let selector = try #require(Self.at(ds, "spec", "selector", "matchLabels") as? [String: String])
        let labels = try #require(Self.at(ds, "spec", "template", "metadata", "labels") as? [String: String])
        #expect(selector.allSatisfy { labels[$0.key] == $0.value }, "the selector must match the pod template")
        let pod = try #require(Self.at(ds, "spec", "template", "spec") as? [String: Any])
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        #expect(Self.at(container, "securityContext", "privileged") as? Bool == true)
        let args = try #require(container["args"] as? [String])
        #expect(args.first == "daemon")
        let volumes = try #require(pod["volumes"] as? [[String: Any]])
        let mounts = try #require(container["volumeMounts"] as? [[String: Any]])
        func volume(mountedAt path: String) -> [String: Any]? {
            guard let name = mounts.first(where: { $0["mountPath"] as? String == path })?["name"] as? String else { return nil }
            return volumes.first { $0["name"] as? String == name }
        }
        #expect(Self.at(volume(mountedAt: "/sys/fs/bpf"), "hostPath", "path") as? String == "/sys/fs/bpf")
        #expect(Self.at(volume(mountedAt: "/sys/fs/cgroup"), "hostPath", "path") as? String == "/sys/fs/cgroup")
        let dir = try #require(args.firstIndex(of: "--policy-dir").map { args[$0 + 1] })
        #expect(Self.at(volume(mountedAt: dir), "configMap", "name") as? String == "lfp-policies")
        let metrics = try #require(args.firstIndex(of: "--metrics").map { args[$0 + 1] })
        let port = try #require(Int(metrics.split(separator: ":").last!))
        #expect((container["ports"] as? [[String: Any]])?.contains { $0["containerPort"] as? Int == port } == true)
        #expect(Self.at(ds, "spec", "template", "metadata", "annotations", "prometheus.io/port") as? String == "\(port)")
        // The flags the manifests use exist.
        let help = try CLITests.run(["daemon", "--help"], env: [:])
        #expect(help.stdout.contains("--policy-dir") && help.stdout.contains("--metrics"))
        #expect(try CLITests.run(["attach", "--help"], env: [:]).stdout.contains("--machine"))
    }

    @Test("every policy of the ConfigMap is a valid policy file")
    func configMap() throws {
        let cm = try #require(try Self.documents("configmap.yaml").first { $0["kind"] as? String == "ConfigMap" })
        #expect(Self.at(cm, "metadata", "name") as? String == "lfp-policies")
        let data = try #require(cm["data"] as? [String: String])
        #expect(!data.isEmpty)
        for (name, text) in data {
            let bfe = BaseFilteringEngine()
            #expect(throws: Never.self, "\(name)") { try bfe.load(try Policy.parse(text, sourceName: name)) }
        }
    }
}
