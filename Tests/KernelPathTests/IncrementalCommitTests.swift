import BPFKit
import FilterEngine
import FilterModel
import Foundation
import KernelABI
import KernelVocabulary
import Testing

/// Incremental commits (LivePolicy, docs/incremental-commits.md) against the model: a generated
/// policy is committed in full, then changed a few filters at a time; after every change the
/// kernel's verdicts (the real classify.h over the base and the delta, through the test-runnable
/// program) must equal `BaseFilteringEngine.classify` on the committed record (replayed from
/// the journal).
@Suite("Incremental commits", .serialized)
struct IncrementalCommitTests {
    static let seed: UInt64 = 0x6C66_7000_0DE1

    /// `steps` random changes (deletes of live filters, adds from a second generated policy on
    /// the same sublayers); returns how many were incremental.
    func churn(filters: Int, sublayers: Int, steps: Int, seed: UInt64, inputsPerStep: Int = 600) throws -> Int {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        var rng = DiffRNG(seed: seed)
        var spec = ScalePolicy.generate(&rng, filters: filters, sublayers: sublayers)
        let poolSpec = ScalePolicy.generate(&rng, filters: steps * 3, sublayers: sublayers)
        var pool = poolSpec.policy.filters
        // The additions' edges are inputs too.
        for (layer, byField) in poolSpec.edges { for (f, e) in byField { spec.edges[layer, default: [:]][f, default: []] += e } }

        let live = try LivePolicy(engine: fx.engine, policy: spec.policy)
        let tc = try TestClassifier(fx)
        var incremental = 0
        for step in 0..<steps {
            let ids = live.bfe.snapshot().filters.map(\.filterId)
            var deletes: [UInt64] = []
            for _ in 0..<rng.int(0...2) { if let id = ids.randomElement(using: &rng), !deletes.contains(id) { deletes.append(id) } }
            var adds: [Filter] = []
            for _ in 0..<rng.int(0...2) where !pool.isEmpty { adds.append(pool.removeLast()) }
            let layersOfDeletes = deletes.compactMap { id in try? live.bfe.filter(id: id).layerKey }
            let commit = try live.change(adding: adds, deleting: deletes).commit
            if commit.incremental { incremental += 1 }
            #expect(commit.generation == live.generation)
            // Half the inputs at the layers the change touched (the model is the slow side).
            let touched = adds.map(\.layerKey) + layersOfDeletes
            var batch: [(Layer, lfp_event)] = []
            for i in 0..<inputsPerStep {
                let layer = i % 2 == 0 && !touched.isEmpty ? rng.pick(touched) : rng.pick(ScalePolicy.layers)
                batch.append((layer, spec.input(&rng, layer: layer)))
            }
            let mismatches = try ClassifierScaleTests.compare(fx, tc, batch)
            if let first = mismatches.first {
                Issue.record(
                    "step \(step) (\(commit.incremental ? "delta" : "full: \(commit.fullBuildReason ?? "")"), +\(adds.count) -\(deletes.count)): \(mismatches.count) of \(batch.count) inputs disagree. First: \(first)"
                )
                return incremental
            }
        }
        // The record replays to the live model: the same filters, ids and weights.
        let recorded = try #require(try fx.engine.committedPolicy())
        #expect(recorded.generation == live.generation)
        let mine = live.bfe.snapshot().filters.map { "\($0.filterId)/\($0.effectiveWeight)" }.sorted()
        #expect(try fx.engine.committedEngine().snapshot().filters.map { "\($0.filterId)/\($0.effectiveWeight)" }.sorted() == mine)
        return incremental
    }

    @Test("big sublayers (their own diagrams): 30 changes, each agrees with the model")
    func tagged() throws {
        let n = try churn(filters: 2400, sublayers: 3, steps: 30, seed: Self.seed)
        #expect(n >= 25, "\(n) of 30 changes were incremental")
    }

    @Test("small sublayers (merged diagrams): 30 changes, each agrees with the model")
    func merged() throws {
        let n = try churn(filters: 500, sublayers: 8, steps: 30, seed: Self.seed &+ 1)
        #expect(n >= 25, "\(n) of 30 changes were incremental")
    }
}
