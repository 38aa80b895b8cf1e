import BPFKit
import Foundation
import KernelABI

/// Where lfp keeps its kernel objects and runtime state. Everything is overridable so tests
/// run isolated engines side by side (their own pins, state and cgroup parent).
public struct EngineConfiguration: Sendable {
    /// bpffs directory for lfp's pins: `maps/` (shared maps) and `workloads/NAME/` (links).
    public var bpffsRoot: String
    /// Runtime state: committed policy, workload registry, subscriber slot locks.
    public var stateDirectory: String
    /// Parent cgroup for workloads that `lfp run` creates; nil = `<cgroup2 mount>/lfp`.
    public var cgroupParent: String?
    /// The BPF object: the one embedded in the binary unless LFP_BPF_OBJECT names a file.
    public var object: BPFObjectImage
    /// The most filters a committed policy may hold (LFP_MAX_FILTERS; LFP_DEFAULT_MAX_FILTERS).
    public var maxFilters: Int = Int(LFP_DEFAULT_MAX_FILTERS)

    public init(bpffsRoot: String, stateDirectory: String, cgroupParent: String?, object: BPFObjectImage = .embeddedLFP) {
        self.bpffsRoot = bpffsRoot
        self.stateDirectory = stateDirectory
        self.cgroupParent = cgroupParent
        self.object = object
    }

    public init(bpffsRoot: String, stateDirectory: String, cgroupParent: String?, objectPath: String) {
        self.init(bpffsRoot: bpffsRoot, stateDirectory: stateDirectory, cgroupParent: cgroupParent, object: .file(objectPath))
    }

    /// Defaults, overridden by LFP_BPFFS_ROOT, LFP_STATE_DIR, LFP_CGROUP_PARENT, LFP_BPF_OBJECT
    /// (a developer's object file instead of the embedded one), LFP_MAX_FILTERS.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> EngineConfiguration {
        var c = EngineConfiguration(
            bpffsRoot: env["LFP_BPFFS_ROOT"] ?? "/sys/fs/bpf/lfp",
            stateDirectory: env["LFP_STATE_DIR"] ?? "/run/lfp",
            cgroupParent: env["LFP_CGROUP_PARENT"],
            object: env["LFP_BPF_OBJECT"].map { .file($0) } ?? .embeddedLFP)
        if let m = env["LFP_MAX_FILTERS"].flatMap(Int.init), m > 0 { c.maxFilters = m }
        return c
    }

    var mapsDirectory: String { bpffsRoot + "/maps" }
    var workloadsPinDirectory: String { bpffsRoot + "/workloads" }
    var policyFile: String { stateDirectory + "/policy.json" }
    /// A commit's intent: the policy under its new generation, written before the kernel sees it.
    var pendingPolicyFile: String { stateDirectory + "/policy.pending.json" }
    var workloadRegistry: String { stateDirectory + "/workloads" }
    var workloadNameHistory: String { stateDirectory + "/workload-names" }
    var subscriberLocks: String { stateDirectory + "/subscribers" }
    var lockFile: String { stateDirectory + "/lock" }
    /// Held (flock) by `lfp daemon` for as long as it runs; holds the daemon's socket path.
    var daemonLockFile: String { stateDirectory + "/daemon.lock" }

    public func resolvedCgroupParent() throws -> String {
        if let cgroupParent { return cgroupParent }
        return try CgroupV2.mountPoint() + "/lfp"
    }
}

/// Errors of the engine itself (FWP errors come from FilterModel, kernel errors from BPFKit,
/// the state tree's from StateTreeError, workloads' from WorkloadError). Tests match the case;
/// the message is for people.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    case notRoot(what: String)
    case missingCapabilities(what: String, names: String)
    /// The commit's intent could not be written: nothing changed.
    case intentNotRecorded(path: String, reason: String)
    /// The kernel enforces the new generation but the record's rename failed (the next command
    /// finishes it).
    case recordNotRenamed(generation: UInt64, path: String, reason: String)
    case reconcileFailed(generation: UInt64, reason: String)
    case notARecord(path: String)
    case noKernelState(directory: String)
    case notOnBPFFS(path: String)
    case invalidWorkloadName(String)
    case cgroupNotFound(path: String, mount: String)
    case cgroupsOverlap(path: String, workload: String, workloadPath: String)
    case notCgroup2(path: String, mount: String)
    case noSuchWorkload(String)
    case noCommand
    case subscriberSlotsFull(Int)
    /// `lfp daemon` runs and owns the policy: change it through the daemon (its socket).
    case daemonOwnsPolicy(socket: String)
    /// Another `lfp daemon` already runs on this state directory.
    case daemonAlreadyRunning(lock: String)
    /// `lfp classify --event SEQ`: the daemon's history has no such event.
    case noSuchEvent(UInt64)
    /// `lfp policy show` / `export` / `classify` with no policy committed yet.
    case noPolicyCommitted
    /// A LivePolicy's change found the kernel at another generation than its own last commit:
    /// another process committed meanwhile, and a delta on a policy it no longer holds would
    /// undo that commit. Nothing changed.
    case policyChangedElsewhere(expected: UInt64, found: UInt64)

    /// lfp's error name (`lfp --json` and scripts can match it).
    public var code: String {
        switch self {
        case .notRoot: return "LFP_E_NOT_ROOT"
        case .missingCapabilities: return "LFP_E_CAPABILITIES"
        case .intentNotRecorded, .recordNotRenamed, .reconcileFailed, .notARecord: return "LFP_E_RECORD"
        case .noKernelState: return "LFP_E_NO_KERNEL_STATE"
        case .notOnBPFFS: return "LFP_E_NOT_BPFFS"
        case .invalidWorkloadName: return "LFP_E_WORKLOAD_NAME"
        case .cgroupNotFound, .notCgroup2: return "LFP_E_CGROUP"
        case .cgroupsOverlap: return "LFP_E_WORKLOADS_NEST"
        case .noSuchWorkload: return "LFP_E_NO_SUCH_WORKLOAD"
        case .noCommand: return "LFP_E_NO_COMMAND"
        case .subscriberSlotsFull: return "LFP_E_SUBSCRIBERS_FULL"
        case .daemonOwnsPolicy: return "LFP_E_DAEMON_RUNNING"
        case .daemonAlreadyRunning: return "LFP_E_DAEMON_RUNNING"
        case .noSuchEvent: return "LFP_E_NO_SUCH_EVENT"
        case .noPolicyCommitted: return "LFP_E_NO_POLICY"
        case .policyChangedElsewhere: return "LFP_E_POLICY_CHANGED"
        }
    }

    public var description: String {
        switch self {
        case .notRoot(let what):
            return "\(what) needs root: lfp loads BPF programs and manages cgroups (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); run it with sudo"
        case .missingCapabilities(let what, let names):
            return "\(what) needs the capabilities \(names), which this process does not have (see CapEff in /proc/self/status)"
        case .intentNotRecorded(let path, let reason):
            return "could not record the policy to commit in \(path): \(reason); nothing changed"
        case .recordNotRenamed(let g, let path, let reason):
            return "the policy is committed (generation \(g)) but renaming \(path) failed: \(reason)"
        case .reconcileFailed(let g, let reason): return "cannot finish the record of generation \(g): \(reason)"
        case .notARecord(let path): return "\(path) is not a record of a committed policy"
        case .noKernelState(let dir):
            return "lfp has no kernel state yet (nothing pinned under \(dir)): load a policy or attach a workload first"
        case .notOnBPFFS(let path):
            return "\(path) is not on a bpf filesystem; set LFP_BPFFS_ROOT to a directory under a bpffs mount"
        case .invalidWorkloadName(let name): return "invalid workload name '\(name)': use 1-64 letters, digits, '-' or '_'"
        case .cgroupNotFound(let path, let mount): return "cgroup not found: \(path) (cgroup v2 is mounted at \(mount))"
        case .cgroupsOverlap(let path, let name, let wpath):
            return "\(path) overlaps workload '\(name)' (\(wpath)): a workload's programs cover its whole cgroup subtree, so workloads cannot nest"
        case .notCgroup2(let path, let mount): return "\(path) is not a cgroup v2 directory (cgroup v2 is mounted at \(mount))"
        case .noSuchWorkload(let name): return "no workload named '\(name)' is attached (see `lfp status`)"
        case .noCommand: return "lfp run: no command given after --"
        case .subscriberSlotsFull(let n): return "all \(n) event subscriber slots are in use (too many `lfp events` running)"
        case .daemonOwnsPolicy(let socket):
            return "lfp daemon runs and owns the policy; change it through the daemon (socket \(socket)), not directly"
        case .daemonAlreadyRunning(let lock): return "another lfp daemon already runs on this state directory (it holds \(lock))"
        case .policyChangedElsewhere(let expected, let found):
            return "the kernel enforces policy generation \(found), not \(expected) as this policy last committed: another process changed it; nothing changed"
        case .noSuchEvent(let seq):
            return "the daemon's event history has no event \(seq) (it keeps drops, and allows with --history-allows; see lfp events --since)"
        case .noPolicyCommitted: return "no policy is committed (use `lfp policy load FILE`)"
        }
    }

    static func notRoot(_ what: String) -> EngineError { .notRoot(what: what) }
}

extension EngineError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Serialises mutating lfp commands across processes (flock on the state directory's lock).
/// Re-entrant on one thread: `lfp detach --orphans` detaches interrupted workloads under it, and
/// `lfp run` holds it around its mkdirs and the attach inside, each of which takes it again (a
/// second flock of the same file from the same process would wait forever).
final class StateLock {
    private struct Held {
        var fd: Int32
        var thread: pthread_t
        var depth: Int
    }
    private static let table = NSLock()
    nonisolated(unsafe) private static var held: [String: Held] = [:]
    private let path: String

    init(path: String) throws {
        self.path = path
        let me = pthread_self()
        StateLock.table.lock()
        if var h = StateLock.held[path], pthread_equal(h.thread, me) != 0 {
            h.depth += 1
            StateLock.held[path] = h
            StateLock.table.unlock()
            return
        }
        StateLock.table.unlock()
        let fd = try StateTree.openFile(path)
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        StateLock.table.lock()
        StateLock.held[path] = Held(fd: fd, thread: me, depth: 1)
        StateLock.table.unlock()
    }

    deinit {
        StateLock.table.lock()
        guard var h = StateLock.held[path] else {
            StateLock.table.unlock()
            return
        }
        h.depth -= 1
        if h.depth > 0 {
            StateLock.held[path] = h
            StateLock.table.unlock()
            return
        }
        StateLock.held[path] = nil
        StateLock.table.unlock()
        flock(h.fd, LOCK_UN)
        close(h.fd)
    }
}
