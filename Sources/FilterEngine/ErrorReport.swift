import BPFKit
import FilterModel
import Foundation
import KernelABI
import PolicyCompiler

/// lfp's exit statuses, one per kind of outcome, so a script can tell a policy it must fix from
/// a machine it must fix (README, "Exit status"). 64 is swift-argument-parser's (sysexits'
/// EX_USAGE) and comes only from a wrong command line, with its `Usage:` line; the others follow
/// sysexits where it has a fitting code.
public enum ExitStatus {
    public static let success: Int32 = 0
    /// `lfp classify --exit-code`: the verdict is BLOCK (as grep exits 1 for "no match").
    public static let blocked: Int32 = 1
    /// `lfp status`: something is not as recorded.
    public static let degraded: Int32 = EngineStatus.degradedExitCode
    /// The command line is wrong (EX_USAGE).
    public static let usage: Int32 = 64
    /// Refused input: a policy or value WFP's rules or the kernel's limits refuse (FWP_E_*,
    /// LFP_E_POLICY_*), or a name that names nothing (EX_DATAERR).
    public static let refused: Int32 = 65
    /// A bug: an error lfp did not expect (EX_SOFTWARE).
    public static let `internal`: Int32 = 70
    /// The kernel refused or failed an operation (bpf(), libbpf, a cgroup syscall) (EX_OSERR).
    public static let kernel: Int32 = 71
    /// The environment: not root, capabilities missing, lfp's state unsafe or absent, nothing
    /// committed, no cgroup2 (EX_NOPERM).
    public static let environment: Int32 = 77
    /// `lfp run`: the command could not be executed, or was not found (as env(1) and shells).
    public static let cannotExecute: Int32 = 126
    public static let commandNotFound: Int32 = 127
}

/// One error as lfp reports it: its code (WFP's FWP_E_* name where WFP has one, LFP_E_*
/// otherwise), its sentence, where in the policy document it is (`filters[3].filterCondition[0]`)
/// when it is about the document, and the exit status of its kind.
public struct ErrorReport: Encodable, Equatable, Sendable {
    public var code: String
    public var message: String
    public var path: String?
    public var exitStatus: Int32

    enum CodingKeys: String, CodingKey { case code, message, path }

    public init(code: String, message: String, path: String? = nil, exitStatus: Int32) {
        self.code = code
        self.message = message
        self.path = path
        self.exitStatus = exitStatus
    }

    /// `Error: CODE: sentence` (the sentence alone when it already starts with the code or is a
    /// document syntax error, whose sentence starts with its path).
    public var text: String {
        message.hasPrefix(code) || code == FWPErrorCode.policySyntax.name ? message : "\(code): \(message)"
    }

    /// `{"error": {"code": …, "message": …, "path": …}}`
    public var json: String {
        struct Wrapper: Encodable { var error: ErrorReport }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: e.encode(Wrapper(error: self)), as: UTF8.self)) ?? "{\"error\": {}}"
    }

    public init(_ error: Error) {
        switch error {
        case let e as FWPError:
            self.init(code: e.code.name, message: e.message, path: ErrorReport.documentPath(e.message), exitStatus: ExitStatus.refused)
        case let e as CompileError:
            self.init(code: e.code.name, message: e.message, path: ErrorReport.documentPath(e.message), exitStatus: ExitStatus.refused)
        case let e as WorkloadError:
            let status: Int32
            switch e {
            case .commandNotFound: status = ExitStatus.commandNotFound
            case .cannotExecute(_, let code): status = code == ENOENT ? ExitStatus.commandNotFound : ExitStatus.cannotExecute
            default: status = ExitStatus.refused
            }
            self.init(code: e.code, message: e.description, exitStatus: status)
        case let e as EngineError:
            self.init(code: e.code, message: e.description, exitStatus: ErrorReport.status(of: e))
        case let e as CgroupLookupError:
            self.init(code: e.code, message: e.description, exitStatus: ExitStatus.refused)
        case let e as StateTreeError:
            self.init(code: "LFP_E_STATE", message: e.description, path: nil, exitStatus: ExitStatus.environment)
        case let e as CgroupV2.NotMounted:
            self.init(code: "LFP_E_CGROUP", message: e.description, exitStatus: ExitStatus.environment)
        case let e as BPFError:
            self.init(code: "LFP_E_KERNEL", message: e.description, exitStatus: ExitStatus.kernel)
        case let e as CocoaError:
            // Foundation's own text for these is "NSCocoaErrorDomain error 256"; say what failed.
            let path = e.filePath ?? e.url?.path ?? "a file"
            let underlying = (e.underlying as? POSIXError).map { String(cString: strerror($0.code.rawValue)) }
            let what = e.isFileError ? "cannot \(e.isReadError ? "read" : "write") \(path)" : "file operation failed on \(path)"
            self.init(
                code: "LFP_E_FILE", message: "\(what): \(underlying ?? e.localizedDescription)", exitStatus: ExitStatus.environment)
        default:
            self.init(code: "LFP_E_INTERNAL", message: "\(error)", exitStatus: ExitStatus.internal)
        }
    }

    static func status(of e: EngineError) -> Int32 {
        switch e {
        case .invalidWorkloadName, .cgroupNotFound, .cgroupsOverlap, .notCgroup2, .noSuchWorkload, .noCommand, .noSuchEvent:
            return ExitStatus.refused
        case .notRoot, .missingCapabilities, .intentNotRecorded, .recordNotRenamed, .reconcileFailed, .notARecord,
            .noKernelState, .notOnBPFFS, .subscriberSlotsFull, .noPolicyCommitted, .daemonOwnsPolicy, .daemonAlreadyRunning,
            .policyChangedElsewhere:
            return ExitStatus.environment
        }
    }

    /// The object path a document error starts with (`filters[3].filterCondition[0].matchType`),
    /// up to its colon or first space.
    public static func documentPath(_ message: String) -> String? {
        let roots = ["providers[", "sublayers[", "callouts[", "providerContexts[", "filters["]
        guard roots.contains(where: { message.hasPrefix($0) }) else { return nil }
        let end = message.firstIndex { $0 == ":" || $0 == " " } ?? message.endIndex
        return String(message[..<end])
    }
}

/// What `lfp --version` prints besides lfp's own version: the ABI its BPF object must match.
public enum LFPVersion {
    public static let version = "0.11.0"
    /// LFP_ABI_VERSION of lfp_abi.h: the layout of events, rules and maps shared with bpf/.
    public static let abi = UInt32(LFP_ABI_VERSION)
}

extension CocoaError {
    /// Foundation's file error codes: 256-511 reading, 512-767 writing.
    fileprivate var isReadError: Bool { (256..<512).contains(code.rawValue) }
    fileprivate var isFileError: Bool { (0..<768).contains(code.rawValue) }
}
