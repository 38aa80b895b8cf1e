import Foundation

/// Why a workload could not be attached or started, as cases a caller can match on. The text
/// starts with the code (`LFP_E_WORKLOAD_EXISTS: ...`), as the FWP_E_* errors do.
public enum WorkloadError: Error, Equatable, CustomStringConvertible {
    /// The name is taken: a workload of that name is attached (or being attached, or its attach
    /// was interrupted), or `lfp run` found its cgroup already there (another `lfp run` of the
    /// same name is running). Two `lfp run --workload NAME` at once: one runs, the other gets this.
    case exists(name: String, cgroupPath: String)
    /// `lfp run --user` / `--group` names no user or group of this machine.
    case unknownUser(String)
    case unknownGroup(String)
    /// `lfp run`'s command is not in PATH (or its path does not exist): nothing was made.
    case commandNotFound(String)
    /// `lfp run`'s command could not be started (execve's errno).
    case cannotExecute(path: String, errno: Int32)

    public var code: String {
        switch self {
        case .exists: return "LFP_E_WORKLOAD_EXISTS"
        case .unknownUser: return "LFP_E_UNKNOWN_USER"
        case .unknownGroup: return "LFP_E_UNKNOWN_GROUP"
        case .commandNotFound: return "LFP_E_COMMAND_NOT_FOUND"
        case .cannotExecute: return "LFP_E_CANNOT_EXECUTE"
        }
    }

    public var description: String {
        switch self {
        case .exists(let name, let cgroup):
            return
                "\(code): workload '\(name)' already exists (cgroup \(cgroup)): another `lfp attach` or `lfp run` uses that name; pick another name, or `lfp detach --workload \(name)` if it is a leftover"
        case .unknownUser(let u): return "\(code): no user '\(u)' on this machine (a name from the user database or a numeric uid)"
        case .unknownGroup(let g): return "\(code): no group '\(g)' on this machine (a name from the group database or a numeric gid)"
        case .commandNotFound(let c): return "\(code): command not found: '\(c)' (not an existing path, and not in PATH)"
        case .cannotExecute(let path, let e): return "\(code): cannot execute \(path): \(String(cString: strerror(e)))"
        }
    }
}

extension WorkloadError: LocalizedError {
    public var errorDescription: String? { description }
}

/// A process, named so that a recycled pid is not mistaken for it: its pid and its start time
/// (field 22 of /proc/PID/stat, in clock ticks since boot).
public struct ProcessStamp: Codable, Sendable, Equatable {
    public var pid: Int32
    public var startTime: UInt64

    public static var current: ProcessStamp {
        let pid = getpid()
        return ProcessStamp(pid: pid, startTime: startTime(of: pid) ?? 0)
    }

    /// True while that very process exists (a zombie counts until it is reaped).
    public var isRunning: Bool {
        guard let t = ProcessStamp.startTime(of: pid) else { return false }
        return t == startTime
    }

    static func startTime(of pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm) ": field 3 (state) onwards; starttime is field 22.
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
