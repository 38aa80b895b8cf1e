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
            Why was this blocked? lfp events --json --count 1 | lfp classify --from-event -
            (the event's layer and incoming values, replayed through the model; --field adds or overrides values).
            With lfp daemon running, --event SEQ replays an event from its history (drops; allows with --history-allows).
            """)
    @Option(help: "Policy file to evaluate instead of the committed policy.") var policy: String?
    @Option(help: "Layer (FWPM_LAYER_* name or GUID); with --from-event, the event's.") var layer: String?
    @Option(name: .customLong("field"), help: "NAME=VALUE, NAME an FWPM_CONDITION_* constant; repeatable.")
    var fields: [String] = []
    @Option(help: "Replay an event: one line of `lfp events --json` output, or - to read it from standard input.")
    var fromEvent: String?
    @Option(help: "Replay the event with this sequence number from lfp daemon's history.") var event: UInt64?
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Exit 1 when the verdict is BLOCK (0 when PERMIT), for scripts.") var exitCode = false

    func validate() throws {
        if let layer, Layer(name: layer) == nil {
            throw ValidationError("FWP_E_LAYER_NOT_FOUND: unknown layer '\(layer)'")
        }
        if layer == nil && fromEvent == nil && event == nil { throw ValidationError("give --layer LAYER, --from-event JSON or --event SEQ") }
        if fromEvent != nil && event != nil { throw ValidationError("give one of --from-event and --event") }
    }

    func run() throws {
        let bfe: BaseFilteringEngine
        var generation: UInt64? = nil
        if let policy {
            bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.load(contentsOf: policy))
        } else {
            let engine = Engine()
            bfe = try engine.committedEngine()
            generation = try engine.committedPolicy()?.generation
        }
        var event: RecordedEvent? = nil
        if let fromEvent {
            let text = fromEvent == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : fromEvent
            event = try RecordedEvent.parse(text)
        } else if let seq = self.event {
            event = try RecordedEvent.parse(try DaemonEvents.recorded(sequence: seq))
        }
        let l = try layer.map { Layer(name: $0)! } ?? event!.resolvedLayer()
        // The event's values first, so that a --field given on the command line overrides one.
        let values = try IncomingValues.parse(layer: l, assignments: (event?.assignments(at: l) ?? []) + fields)
        let result = bfe.classify(layer: l, values: values)
        if json {
            try printJSON(result)
        } else {
            if let event {
                print("replaying \(event.summary)")
                print("  incoming values: \(values)")
                if event.appId == nil && ConditionField.aleAppId.isAvailable(at: l) {
                    print("  note: the event names no executable (its process had gone when it was read): ALE_APP_ID is FWP_EMPTY here")
                }
                if let g = event.policyGeneration, let generation, g != generation {
                    print("  note: the committed policy is generation \(generation), not the event's \(g): the verdict may differ")
                }
            }
            print(result.render())
        }
        if exitCode && result.actionType == .block { throw ExitCode(ExitStatus.blocked) }
    }
}
