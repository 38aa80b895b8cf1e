import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Load, show and export the committed policy.",
        subcommands: [Load.self, Show.self, Export.self, Check.self, Diff.self, Import.self])

    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a policy file and commit it (all or nothing).")
        @Argument(help: "Policy file (YAML or JSON, at most 64 MiB, or 1 KiB per filter of LFP_MAX_FILTERS).") var file: String
        @Flag(help: "Print the result as JSON.") var json = false
        @Flag(help: "Commit even a policy without objects (which removes every filter).") var allowEmpty = false

        func run() throws {
            // With a daemon: one transaction that replaces only this document's providers'
            // objects; the daemon parses and checks the text (parsing it here too cost seconds).
            if let session = try DaemonRoute.session(name: "lfp policy load") {
                let text = try PolicyLimits.readText(file, maxBytes: PolicyLimits.maxBytes)
                let r = try session.replace(document: text, sourceName: file, allowEmpty: allowEmpty)
                if json {
                    try printJSON(DaemonLoad(generation: r.generation, filterIds: r.filterIds))
                } else {
                    print("committed through lfp daemon: generation \(r.generation), \(r.filterIds.count) filters from \(file)")
                }
                return
            }
            let started = DispatchTime.now()
            let (policy, text) = try Policy.loadWithText(contentsOf: file)
            let parsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            if !allowEmpty { try policy.requireObjects(sourceName: file) }
            let commit = try Engine().commit(policy, source: text)
            if json {
                struct Out: Encodable {
                    var generation: UInt64
                    var filterIds: [UInt64]
                    var kernelRules: Int
                    var classifierBytes: Int
                    var diagrams: Int
                    var seconds: [String: Double]
                    var notes: [String]
                    var reauthorization: Reauthorization
                }
                var seconds = ["parse": parsed]
                for p in commit.phases { seconds[p.name] = p.seconds }
                try printJSON(
                    Out(
                        generation: commit.generation, filterIds: commit.filterIds, kernelRules: commit.kernelRules,
                        classifierBytes: commit.classifierBytes, diagrams: commit.diagrams, seconds: seconds,
                        notes: commit.notes.map(\.description), reauthorization: commit.reauthorization))
            } else {
                print(
                    "committed policy generation \(commit.generation): \(commit.filterIds.count) filters, \(commit.kernelRules) kernel rules, classifier \(commit.classifierBytes / 1024) KiB in \(commit.diagrams) diagrams"
                )
                for n in commit.notes { print("note: \(n)") }
                if commit.reauthorization.endedConnections > 0 {
                    print("reauthorization ended \(commit.reauthorization.endedConnections) connection(s) the policy blocks")
                }
            }
            if let error = commit.reauthorization.error {
                FileHandle.standardError.write(
                    Data("warning: the policy is committed, but reauthorizing live connections failed: \(error)\n".utf8))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the committed policy.")
        @Flag(help: "Print JSON instead of YAML.") var json = false

        func run() throws {
            guard let (generation, policy) = try Engine().committedPolicy() else { throw EngineError.noPolicyCommitted }
            if json {
                print(policy.exportJSON())
            } else {
                print("# generation \(generation)")
                print(policy.exportYAML(), terminator: "")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the committed policy (or --policy FILE, normalised) as a loadable file.")
        @Option(help: "Export this file's objects instead of the committed policy.") var policy: String?
        @Option(name: .shortAndLong, help: "Write to this file instead of standard output.") var output: String?
        @Flag(help: "JSON instead of YAML.") var json = false

        func run() throws {
            let bfe = BaseFilteringEngine()
            // Nothing committed fails as `show` does, rather than exporting an empty document.
            guard let source = try policy.map({ try Policy.load(contentsOf: $0) }) ?? Engine().committedPolicy()?.policy else {
                throw EngineError.noPolicyCommitted
            }
            _ = try bfe.load(source)
            var snapshot = bfe.snapshot()
            snapshot.lfpReauthorize = source.lfpReauthorize  // a document setting: not in the BFE
            let text = json ? snapshot.exportJSON() : snapshot.exportYAML()
            if let output {
                try text.write(toFile: output, atomically: true, encoding: .utf8)
            } else {
                print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
            }
        }
    }
}
