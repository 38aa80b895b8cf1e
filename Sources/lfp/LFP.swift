import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

@main
struct LFP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lfp",
        abstract: "The Linux Filtering Platform: WFP's filtering model, enforced by eBPF at cgroup hooks.",
        discussion: """
            Policies are FWPM-shaped files (YAML or JSON). Programs attach per workload (a cgroup v2).
            State: pins under $LFP_BPFFS_ROOT (/sys/fs/bpf/lfp), runtime files under $LFP_STATE_DIR (/run/lfp).

            \(Reporting.exitStatusHelp)
            """,
        version: "lfp \(LFPVersion.version) (ABI \(LFPVersion.abi))",
        subcommands: [
            PolicyCommand.self, AttachCommand.self, DetachCommand.self, RunCommand.self,
            EventsCommand.self, StatusCommand.self, ClassifyCommand.self, DaemonCommand.self, FilterCommand.self,
            ProviderCommand.self, SublayerCommand.self, BootCommand.self, PromptCommand.self,
        ])

    /// ArgumentParser's entry point, after one setting every command shares: policy files are
    /// refused past the engine's capacity before they are read into objects.
    static func main() async {
        let capacity = EngineConfiguration.fromEnvironment().maxFilters
        Policy.maxFilters = capacity
        PolicyLimits.maxBytes = max(PolicyLimits.maxBytes, capacity << 10)
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)  // a wrong command line: the message, a Usage: line, 64
        }
        do {
            if var c = command as? AsyncParsableCommand { try await c.run() } else { try command.run() }
        } catch {
            Reporting.exit(for: error, command: command)
        }
    }
}

/// Print data as pretty JSON (objects) or one object per line (streams).
func printJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws {
    let e = JSONEncoder()
    e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    e.dateEncodingStrategy = .iso8601
    print(String(decoding: try e.encode(value), as: UTF8.self))
}
