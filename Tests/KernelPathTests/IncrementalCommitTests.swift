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

    /// 3,000 generated inputs at each of `layers`.
    static func candidates(_ rng: inout DiffRNG, _ spec: ScalePolicy, layers: [Layer]) throws -> [(Layer, lfp_event)] {
        var out: [(Layer, lfp_event)] = []
        for layer in layers { for _ in 0..<3000 { out.append((layer, spec.input(&rng, layer: layer))) } }
        return out
    }

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
            // The inputs the deleted filters decided before the change (the kernel agreed with the
            // model at the last step), found among many candidates: uniform inputs rarely land
            // where one filter of hundreds is the first match.
            let doomed = Set(deletes)
            let before = try Self.candidates(&rng, spec, layers: layersOfDeletes)
            let decidedByDeleted = try zip(before, tc.classify(before.map { (UInt32($0.0.kernelID), $0.1) }))
                .filter { doomed.contains($0.1.filter_id) }.map(\.0)
            let commit = try live.change(adding: adds, deleting: deletes).commit
            if commit.incremental { incremental += 1 }
            #expect(commit.generation == live.generation)
            // Half the inputs at the layers the change touched (the model is the slow side), the
            // inputs the deleted filters decided, and those the added ones decide now.
            let touched = adds.map(\.layerKey) + layersOfDeletes
            var batch: [(Layer, lfp_event)] = Array(decidedByDeleted.prefix(40))
            for i in 0..<inputsPerStep {
                let layer = i % 2 == 0 && !touched.isEmpty ? rng.pick(touched) : rng.pick(ScalePolicy.layers)
                batch.append((layer, spec.input(&rng, layer: layer)))
            }
            let newIds = Set(commit.filterIds)
            let after = try Self.candidates(&rng, spec, layers: adds.map(\.layerKey))
            batch += try zip(after, tc.classify(after.map { (UInt32($0.0.kernelID), $0.1) }))
                .filter { newIds.contains($0.1.filter_id) }.map(\.0).prefix(40)
            let mismatches = try ClassifierScaleTests.compare(fx, tc, batch)
            if let first = mismatches.first {
                Issue.record(
                    "step \(step) (\(commit.incremental ? "delta" : "full: \(commit.fullBuildReason ?? "")"), +\(adds.count) -\(deletes.count)): \(mismatches.count) of \(batch.count) inputs disagree (\(decidedByDeleted.count) were the deleted filters'). First: \(first)"
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

/// LivePolicy on real sockets, and its refusals: each leaves the model, the record and the
/// kernel as they were.
@Suite("Incremental commits: sockets and refusals", .serialized)
struct IncrementalCommitEdgeTests {
    static let sublayer = UUID(uuidString: "1c4e0000-0000-4000-8000-000000000001")!

    /// A big sublayer (its own diagram) of filters on ports nothing listens on, and one permit.
    static func policy(filters n: Int) -> Policy {
        var p = Policy(sublayers: [Sublayer(subLayerKey: sublayer, displayData: DisplayData(name: "big"), weight: 0x100)])
        for i in 0..<n {
            p.filters.append(block(port: UInt16(2000 + i), name: "f\(i)", weight: UInt64(i)))
        }
        return p
    }

    static func block(port: UInt16, name: String, weight: UInt64) -> Filter {
        Filter(
            displayData: DisplayData(name: name), layerKey: .authConnectV4, subLayerKey: sublayer, weight: .uint64(weight),
            filterCondition: [FilterCondition(fieldKey: .ipRemotePort, matchType: .equal, conditionValue: .uint16(port))],
            action: .block)
    }

    func connect(_ fx: KernelFixture, _ w: Workload, _ port: UInt16) throws -> KernelFixture.StepResult {
        try fx.runClient(in: w, [["family": 4, "addr": "127.0.0.1", "port": Int(port)]])[0]
    }

    @Test("a block added to a 600-filter policy refuses the next connect; deleting it lets connects through")
    func realSockets() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let listener = try Listener()
        let live = try LivePolicy(engine: fx.engine, policy: Self.policy(filters: 600))
        let w = try fx.workload("client")
        #expect(try connect(fx, w, listener.port).ok == true)

        let (id, commit) = try live.add(Self.block(port: listener.port, name: "now", weight: 300))
        #expect(commit.incremental, "\(commit.fullBuildReason ?? "")")
        let refused = try connect(fx, w, listener.port)
        #expect(refused.errno == EPERM && refused.stage == "connect")
        #expect(try fx.engine.committedPolicy()?.policy.filters.contains { $0.filterId == id } == true)

        // Deleting the filter it shadows changes nothing for this port; deleting it reopens it.
        try live.delete(filterId: try #require(live.bfe.snapshot().filters.first { $0.displayData.name == "f5" }).filterId)
        #expect(try connect(fx, w, listener.port).errno == EPERM)
        let reopened = try live.delete(filterId: id)
        #expect(reopened.incremental && reopened.generation == live.generation)
        #expect(try connect(fx, w, listener.port).ok == true)
        #expect(try fx.engine.committedPolicy()?.generation == live.generation)
        #expect(try fx.engine.committedPolicy()?.policy.filters.count == 599)
    }

    @Test("deleting a filter of the full build that blocks a port lets connects to it through")
    func deleteBaseFilter() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let listener = try Listener()
        var policy = Self.policy(filters: 600)
        policy.filters.append(Self.block(port: listener.port, name: "base block", weight: 450))
        let live = try LivePolicy(engine: fx.engine, policy: policy)
        let w = try fx.workload("client")
        #expect(try connect(fx, w, listener.port).errno == EPERM)
        let id = try #require(live.bfe.snapshot().filters.first { $0.displayData.name == "base block" }).filterId
        let commit = try live.delete(filterId: id)
        #expect(commit.incremental, "\(commit.fullBuildReason ?? "")")
        #expect(try connect(fx, w, listener.port).ok == true)
    }

    @Test("refusals: an invalid filter, an unknown filterId, a commit by another process")
    func refusals() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let live = try LivePolicy(engine: fx.engine, policy: Self.policy(filters: 300))
        let before = try #require(try fx.engine.committedPolicy())

        var bad = Self.block(port: 9, name: "bad", weight: 1)
        bad.subLayerKey = UUID()
        #expect { try live.add(bad) } throws: { ($0 as? FWPError)?.code == .sublayerNotFound }
        #expect { try live.delete(filterId: 987_654) } throws: { ($0 as? FWPError)?.code == .filterNotFound }
        // A change with one bad part changes nothing, its good part included.
        let good = try #require(live.bfe.snapshot().filters.first).filterId
        #expect { try live.change(adding: [Self.block(port: 9, name: "ok", weight: 2)], deleting: [good, 987_654]) } throws: {
            ($0 as? FWPError)?.code == .filterNotFound
        }
        let after = try #require(try fx.engine.committedPolicy())
        #expect(after.generation == before.generation && after.policy.filters.count == 300)
        #expect(live.bfe.snapshot().filters.count == 300)

        // Another process commits: the live policy refuses to build on what it no longer holds.
        try fx.engine.commit(Self.policy(filters: 10))
        let other = try #require(try fx.engine.committedPolicy())
        #expect { try live.add(Self.block(port: 9, name: "late", weight: 3)) } throws: { error in
            if case .policyChangedElsewhere(let expected, let found) = error as? EngineError {
                return expected == before.generation && found == other.generation
            }
            return false
        }
        #expect(try fx.engine.committedPolicy()?.policy.filters.count == 10)
    }

    @Test("a journal line the kernel never saw (a change killed before its publication) is dropped")
    func killedChange() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let live = try LivePolicy(engine: fx.engine, policy: Self.policy(filters: 300))
        try live.add(Self.block(port: 9, name: "first", weight: 1))
        // What a writer killed between its journal line and its publication leaves behind.
        let journal = fx.config.stateDirectory + "/policy.journal"
        let orphan = "{\"generation\": \(live.generation + 1), \"base\": \(live.lastCommit.generation), \"deleted\": [], \"added\": {\"filters\": []}}\n"
        let handle = try #require(FileHandle(forWritingAtPath: journal))
        handle.seekToEndOfFile()
        handle.write(Data(orphan.utf8))
        try handle.close()
        #expect(try fx.engine.committedPolicy()?.generation == live.generation)  // not counted

        let (id, commit) = try live.add(Self.block(port: 10, name: "second", weight: 2))
        #expect(commit.generation == live.generation)
        let text = try String(contentsOfFile: journal, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 2, "the orphan is gone: \(text)")
        let recorded = try #require(try fx.engine.committedPolicy())
        #expect(recorded.generation == commit.generation && recorded.policy.filters.contains { $0.filterId == id })

        // A full commit retires the journal.
        try fx.engine.commit(Self.policy(filters: 5))
        #expect(!FileManager.default.fileExists(atPath: journal))
        #expect(try fx.engine.committedPolicy()?.policy.filters.count == 5)
    }
}
