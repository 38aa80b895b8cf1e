import BPFKit
import Foundation

/// A workload's cgroup as operators name it: a systemd unit, a container, or a running process,
/// found in the layouts the tools make (no tool is asked). The result is a cgroup v2 path, which
/// `lfp attach` records and `lfp status` shows.
///
/// * `unit`: systemd puts unit U at `…/U` (`system.slice/nginx.service`, a user's
///   `user.slice/user-1000.slice/user@1000.service/app.slice/U`); a name without a suffix is a
///   `.service`.
/// * `container`: an id of at least 12 hex digits, matched against the names the runtimes give a
///   container's cgroup: `docker-ID.scope` (Docker, systemd driver), `docker/ID` (cgroupfs
///   driver), `libpod-ID.scope` or `libpod-ID` (Podman; `libpod-conmon-ID.scope` is its monitor,
///   not the container), `cri-containerd-ID.scope` and `k8s.io/ID` (containerd), `crio-ID.scope`.
/// * `pid`: the process's own cgroup, `0::PATH` of /proc/PID/cgroup.
///
/// Units and containers are searched breadth first from the cgroup2 root, to a bounded depth;
/// more than one match is refused rather than guessed.
public enum CgroupLookup {
    public enum Target: Equatable, Sendable {
        case unit(String)
        case container(String)
        case pid(Int32)
    }

    static let maxDepth = 12
    static let runtimePrefixes = ["docker-", "libpod-", "cri-containerd-", "crio-", "containerd-"]

    /// The cgroup path of `target`, under `root` (the cgroup2 mount unless given).
    public static func resolve(_ target: Target, root: String? = nil) throws -> String {
        let root = try root ?? CgroupV2.mountPoint()
        switch target {
        case .pid(let pid):
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else {
                throw CgroupLookupError.noSuchProcess(pid)
            }
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else {
                throw CgroupLookupError.notFound(what: "process \(pid)", looked: "/proc/\(pid)/cgroup has no cgroup v2 line")
            }
            let path = String(line.dropFirst(3))
            guard path != "/" else { throw CgroupLookupError.rootCgroup(what: "process \(pid)") }
            return root + path
        case .unit(let name):
            let unit = name.contains(".") ? name : name + ".service"
            guard !unit.contains("/") else { throw CgroupLookupError.invalid("'\(name)' is not a systemd unit name") }
            return try unique("unit \(unit)", in: root) { $0 == unit }
        case .container(let id):
            let want = id.lowercased()
            guard want.count >= 12, want.allSatisfy(\.isHexDigit) else {
                throw CgroupLookupError.invalid("'\(id)' is not a container id (at least 12 hex digits)")
            }
            return try unique("container \(id)", in: root) { containerID(of: $0)?.hasPrefix(want) == true }
        }
    }

    /// The 64-hex container id a runtime put in a cgroup's directory name, if any.
    static func containerID(of name: String) -> String? {
        var n = Substring(name)
        if n.hasPrefix("libpod-conmon-") { return nil }
        if n.hasSuffix(".scope") { n = n.dropLast(".scope".count) }
        for p in runtimePrefixes where n.hasPrefix(p) {
            n = n.dropFirst(p.count)
            break
        }
        return n.count == 64 && n.allSatisfy(\.isHexDigit) ? String(n) : nil
    }

    /// The one directory under `root` whose name `matches`; a match is not searched further
    /// (a container's own sub-cgroups repeat nothing of its name that could match again).
    static func unique(_ what: String, in root: String, _ matches: (String) -> Bool) throws -> String {
        var found: [String] = []
        var level = [root]
        for _ in 0..<maxDepth where !level.isEmpty {
            var next: [String] = []
            for dir in level {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                    let path = dir + "/" + name
                    var isDir: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { continue }
                    if matches(name) { found.append(path) } else { next.append(path) }
                }
            }
            level = next
        }
        switch found.count {
        case 1: return found[0]
        case 0: throw CgroupLookupError.notFound(what: what, looked: "no such cgroup under \(root)")
        default: throw CgroupLookupError.ambiguous(what: what, paths: found.sorted())
        }
    }
}

/// Why `--unit`, `--container` or `--pid` names no cgroup lfp can use.
public enum CgroupLookupError: Error, Equatable, CustomStringConvertible {
    case notFound(what: String, looked: String)
    case ambiguous(what: String, paths: [String])
    case noSuchProcess(Int32)
    case rootCgroup(what: String)
    case invalid(String)

    public var code: String { "LFP_E_CGROUP" }

    public var description: String {
        switch self {
        case .notFound(let what, let looked): return "\(code): \(what) has no cgroup: \(looked)"
        case .ambiguous(let what, let paths):
            return "\(code): \(what) names \(paths.count) cgroups (\(paths.joined(separator: ", "))): give --cgroup PATH"
        case .noSuchProcess(let pid): return "\(code): no process \(pid)"
        case .rootCgroup(let what): return "\(code): \(what) is in the root cgroup, which lfp does not attach to (every process would be a workload)"
        case .invalid(let why): return "\(code): \(why)"
        }
    }
}

extension CgroupLookupError: LocalizedError {
    public var errorDescription: String? { description }
}
