import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

struct ClassifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Explain a verdict: evaluate incoming values against a policy and print the arbitration trace.",
        discussion: """
            Example: lfp classify --layer FWPM_LAYER_ALE_AUTH_CONNECT_V4 \\
                       --field FWPM_CONDITION_IP_REMOTE_ADDRESS=10.1.2.3 --field FWPM_CONDITION_IP_REMOTE_PORT=22
            Without --policy, the committed policy is used.
            """)
    @Option(help: "Policy file to evaluate instead of the committed policy.") var policy: String?
    @Option(help: "Layer (FWPM_LAYER_* name or GUID).") var layer: String
    @Option(name: .customLong("field"), help: "NAME=VALUE, NAME an FWPM_CONDITION_* constant; repeatable.")
    var fields: [String] = []
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Exit 1 when the verdict is BLOCK (0 when PERMIT), for scripts.") var exitCode = false

    func validate() throws {
        if Layer(name: layer) == nil {
            throw ValidationError("FWP_E_LAYER_NOT_FOUND: unknown layer '\(layer)'")
        }
    }

    func run() throws {
        let l = Layer(name: layer)!
        let bfe: BaseFilteringEngine
        if let policy {
            bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.load(contentsOf: policy))
        } else {
            bfe = try Engine().committedEngine()
        }
        let values = try IncomingValues.parse(layer: l, assignments: fields)
        let result = bfe.classify(layer: l, values: values)
        if json { try printJSON(result) } else { print(result.render()) }
        if exitCode && result.actionType == .block { throw ExitCode(ExitStatus.blocked) }
    }
}
