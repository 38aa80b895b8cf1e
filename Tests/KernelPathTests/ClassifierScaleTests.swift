import BPFKit
import FilterEngine
import FilterModel
import Foundation
import KernelABI
import KernelVocabulary
import Testing

/// The kernel classifier at scale, against the reference model: generated policies (many
/// sublayers, thousands of filters, every match type; Support/ScalePolicy.swift) are committed
/// to a private lfp, and generated inputs go through the real bpf/lib/classify.h (the
/// test-runnable program, Support/TestClassifier.swift). Every verdict and deciding filterId
/// must equal `BaseFilteringEngine.classify`. A mismatch is shrunk to a minimal policy and
/// printed with its input. LFP_SCALE_FILTERS / LFP_SCALE_INPUTS run it bigger.
@Suite("Classifier at scale (differential)", .serialized)
struct ClassifierScaleTests {
    static let env = ProcessInfo.processInfo.environment
    static let seed: UInt64 = 0x6C66_7000_5CA1

    struct Mismatch: CustomStringConvertible {
        var layer: Layer
        var event: lfp_event
        var kernel: lfp_verdict
        var model: ClassifyResult
        var description: String {
            "at \(layer.name) with \(ScalePolicy.incoming(event, layer: layer)): kernel \(kernel.action == 2 ? "BLOCK" : "PERMIT") filter \(kernel.filter_id), model \(model.actionType.name) filter \(model.filterId)"
        }
    }

    /// Kernel and model on every input; the mismatches.
    static func compare(_ fx: KernelFixture, _ tc: TestClassifier, _ inputs: [(Layer, lfp_event)]) throws -> [Mismatch] {
        let model = try fx.engine.committedEngine()
        let kernel = try tc.classify(inputs.map { (UInt32($0.0.kernelID), $0.1) })
        var out: [Mismatch] = []
        for (i, (layer, e)) in inputs.enumerated() {
            let m = model.classify(layer: layer, values: ScalePolicy.incoming(e, layer: layer))
            let k = kernel[i]
            let kAction: ActionType = k.action == UInt8(LFP_ACTION_BLOCK.rawValue) ? .block : .permit
            if kAction != m.actionType || k.filter_id != m.filterId {
                out.append(Mismatch(layer: layer, event: e, kernel: k, model: m))
            }
        }
        return out
    }

    /// Remove filters while the input still disagrees (delta debugging), so the report is short.
    static func shrink(_ fx: KernelFixture, _ tc: TestClassifier, _ policy: Policy, _ m: Mismatch) throws -> Policy {
        var filters = policy.filters
        var chunk = max(1, filters.count / 2)
        func fails(_ fs: [Filter]) throws -> Bool {
            var p = policy
            p.filters = fs
            guard (try? fx.engine.commit(p)) != nil else { return false }
            return try !compare(fx, tc, [(m.layer, m.event)]).isEmpty
        }
        while true {
            var i = 0
            var progressed = false
            while i < filters.count {
                var candidate = filters
                candidate.removeSubrange(i..<min(filters.count, i + chunk))
                if try fails(candidate) { filters = candidate; progressed = true } else { i += chunk }
            }
            if !progressed {
                if chunk == 1 { break }
                chunk = max(1, chunk / 2)
            }
        }
        var p = policy
        p.filters = filters
        return p
    }

    func run(filters: Int, inputs: Int, seed: UInt64) throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        var rng = DiffRNG(seed: seed)
        let spec = ScalePolicy.generate(&rng, filters: filters)
        try fx.engine.commit(spec.policy)
        let tc = try TestClassifier(fx)
        var batch: [(Layer, lfp_event)] = []
        var blocks = 0, decided = Set<UInt64>()
        for _ in 0..<inputs {
            let layer = rng.chance(50) ? Layer.authConnectV4 : rng.pick(ScalePolicy.layers)
            batch.append((layer, spec.input(&rng, layer: layer)))
        }
        let mismatches = try Self.compare(fx, tc, batch)
        if let first = mismatches.first {
            let minimal = try Self.shrink(fx, tc, spec.policy, first)
            let bfe = BaseFilteringEngine()
            _ = try? bfe.load(minimal)
            Issue.record(
                "\(mismatches.count) of \(inputs) inputs disagree (seed 0x\(String(seed, radix: 16)), \(filters) filters). First: \(first)\nminimal policy (\(minimal.filters.count) filters):\n\(bfe.snapshot().exportYAML())"
            )
            return
        }
        // The inputs must exercise the policy: both verdicts, many deciding filters.
        guard filters >= 500 else { return }
        let model = try fx.engine.committedEngine()
        for (layer, e) in batch.prefix(2000) {
            let m = model.classify(layer: layer, values: ScalePolicy.incoming(e, layer: layer))
            if m.actionType == .block { blocks += 1 }
            decided.insert(m.filterId)
        }
        #expect(blocks > 100 && blocks < 1900, "\(blocks) of 2000 inputs blocked")
        #expect(decided.count > min(50, filters / 40), "\(decided.count) distinct deciding filters")
    }

    @Test("2,000 filters, 8 sublayers, 4 layers, every match type: 10,000 inputs agree with the model")
    func thousands() throws {
        try run(
            filters: Int(Self.env["LFP_SCALE_FILTERS"] ?? "") ?? 2000, inputs: Int(Self.env["LFP_SCALE_INPUTS"] ?? "") ?? 10000,
            seed: Self.seed)
    }

    @Test("small policies (1 to 40 filters), many seeds: every input agrees with the model")
    func smallPolicies() throws {
        for i in 0..<30 {
            try run(filters: 1 + i * 4 / 3, inputs: 1000, seed: Self.seed &+ UInt64(i) &* 7919)
        }
    }
}
