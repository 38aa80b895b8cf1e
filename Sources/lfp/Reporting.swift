import ArgumentParser
import FilterEngine
import Foundation
import LFPClient
import NetshImport

/// A command whose output can be JSON: with `--json`, its errors are JSON too.
protocol JSONReporting {
    var json: Bool { get }
}

extension PolicyCommand.Load: JSONReporting {}
extension PolicyCommand.Show: JSONReporting {}
extension PolicyCommand.Export: JSONReporting {}
extension EventsCommand: JSONReporting {}
extension StatusCommand: JSONReporting {}
extension ClassifyCommand: JSONReporting {}
extension PolicyCommand.Diff: JSONReporting {}
extension FilterCommand.Add: JSONReporting {}
extension FilterCommand.List: JSONReporting {}
extension ProviderCommand.List: JSONReporting {}
extension SublayerCommand.List: JSONReporting {}

enum Reporting {
    /// End the process for an error a command threw while running (its command line was fine):
    /// one line on stderr, `Error: CODE: sentence` or with --json `{"error": {...}}`, and the
    /// exit status of its kind (ExitStatus). Never a `Usage:` line and never 64, which are
    /// swift-argument-parser's for a wrong command line.
    static func exit(for error: Error, command: ParsableCommand) -> Never {
        // Its own errors (ExitCode, ValidationError, CleanExit, and the help request a command
        // with subcommands throws when run) are swift-argument-parser's to print.
        if String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            LFP.exit(withError: error)
        }
        let report = Reporting.report(error)
        let json = (command as? JSONReporting)?.json ?? false
        let line = json ? report.json : "Error: \(report.text)"
        FileHandle.standardError.write(Data((line + "\n").utf8))
        Foundation.exit(report.exitStatus)
    }

    /// The daemon's errors as the CLI reports them (FilterEngine does not know the client).
    static func report(_ error: Error) -> ErrorReport {
        switch error {
        case let e as LFPClientError:
            switch e {
            case .remote(let w):
                let status: Int32 =
                    w.code == "LFP_E_KERNEL"
                    ? ExitStatus.kernel
                    : w.code.hasPrefix("LFP_E_POLICY") || w.code.hasPrefix("FWP_E") ? ExitStatus.refused : ExitStatus.environment
                return ErrorReport(code: w.code, message: w.message, path: ErrorReport.documentPath(w.message), exitStatus: status)
            default:
                return ErrorReport(code: e.code, message: e.description, exitStatus: ExitStatus.environment)
            }
        case let e as NetshImportError:
            if case .unreadable = e { return ErrorReport(code: "LFP_E_FILE", message: e.description, exitStatus: ExitStatus.environment) }
            return ErrorReport(code: "LFP_E_NOT_NETSH", message: e.description, exitStatus: ExitStatus.refused)
        default:
            return ErrorReport(error)
        }
    }

    /// The exit statuses, for `lfp --help` (the README has the same table).
    static let exitStatusHelp = """
        Exit status:
          0    success; lfp run: the command's status (128+N: signal N)
          1    lfp classify --exit-code: the verdict is BLOCK
          3    lfp status: degraded
          64   usage: a wrong command line (with a Usage: line)
          65   refused input: FWP_E_*, LFP_E_POLICY_*, a name naming nothing
          70   internal error (a bug)
          71   kernel error: bpf(), libbpf or a cgroup operation failed
          77   environment: not root, capabilities, lfp's state, nothing committed
          126  lfp run: the command cannot be executed (127: not found)
        With --json, errors are JSON on stderr:
          {"error": {"code": "FWP_E_...", "message": "...", "path": "filters[3]..."}}
        """
}
