import ArgumentParser
import FilterModel
import Foundation
import NetshImport

extension PolicyCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a Windows WFP dump (netsh wfp show filters / show state) into a policy file.",
            discussion: """
                Every provider, sublayer and filter lfp can enforce is written with its key, weight and
                flags; everything else is listed on standard error with the reason lfp refused it (the
                reason `lfp policy load` would give). Nothing is committed: load the result with
                `lfp policy load`.
                """)
        @Option(name: .customLong("netsh"), help: "The XML file netsh wrote (filters.xml or wfpstate.xml).") var netsh: String
        @Option(name: .shortAndLong, help: "Write the policy to this file instead of standard output.") var output: String?
        @Flag(help: "JSON policy instead of YAML.") var json = false
        @Option(help: "Write the report as JSON to this file (the text report still goes to standard error).")
        var report: String?

        func run() throws {
            let result = try NetshImporter().importFile(netsh)
            let text = json ? result.policy.exportJSON() : result.policy.exportYAML()
            if let output {
                try text.write(toFile: output, atomically: true, encoding: .utf8)
            } else {
                print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
            }
            if let report {
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                try e.encode(result).write(to: URL(fileURLWithPath: report))
            }
            FileHandle.standardError.write(Data(result.render().utf8))
        }
    }
}
