import BPFKit
import FilterModel
import Foundation
import KernelABI
import PolicyCompiler

/// The engine's incremental API: a committed policy held in this process, changed a few filters
/// at a time. A change is validated by the BFE like any write, then reaches the kernel as a small
/// delta map on the full build this object made (ClassifierBase, docs/incremental-commits.md),
/// with one journal line for the record (CommitJournal.swift). A change the delta cannot express
/// is committed in full, which makes a new base. All or nothing, like `Engine.commit`: an error
/// leaves the policy, its record and the kernel as they were.
public final class LivePolicy {
    public let engine: Engine
    /// The policy as last committed: its objects with their filterIds.
    public let bfe: BaseFilteringEngine
    private var base: ClassifierBase
    private var baseGeneration: UInt64
    /// The generation this object last committed; a change refuses to build on another.
    public private(set) var generation: UInt64
    private var delta = ClassifierDelta()
    private var reauthorizes: Bool
    /// The iterators, loaded once for the changes (a full commit loads its own).
    private var iterators: ReauthorizationIterators?
    private var keyOf: [UInt64: UUID] = [:]
    /// The base's map, mapped into this process, and its first spare cell no reader can be
    /// using: the spare cells are append-only (a full commit makes a new map).
    private var area: BPFMapMemory
    private var areaNext: UInt32
    private var areaEnd: UInt32
    /// The journal's size after this object's last line (0: cleared by the full commit).
    private var journalBytes = 0
    /// Base leaves already marked deleted.
    private var tombstoned = Set<UInt32>()

    /// Commits `policy` in full, and keeps what later changes build on. `source`: the document
    /// it was parsed from, recorded as it is (see `Engine.commit`).
    public init(engine: Engine, policy: Policy, source: String? = nil) throws {
        guard policy.filters.count <= engine.config.maxFilters else {
            throw CompileError(
                code: .outOfBounds,
                message: "the policy has \(policy.filters.count) filters; this engine holds at most \(engine.config.maxFilters) (LFP_MAX_FILTERS)")
        }
        if let socket = DaemonLock.holder(engine.config) { throw EngineError.daemonOwnsPolicy(socket: socket) }
        self.engine = engine
        var clock = PhaseClock()
        bfe = BaseFilteringEngine()
        let ids = try bfe.load(policy)
        clock.mark("validate")
        reauthorizes = policy.lfpReauthorize
        let commit = try engine.publish(
            bfe, filterIds: ids, reauthorize: reauthorizes, clock: clock, retainBase: true,
            record: Engine.record(of: bfe, ids: ids, reauthorize: reauthorizes, source: source))
        guard let base = commit.base, let memory = commit.memory else { throw NeedsFullBuild(reason: "the full build kept no base") }
        self.base = base
        area = memory
        areaNext = UInt32(commit.baseCells)
        areaEnd = areaNext + UInt32(LFP_DELTA_CELLS)
        baseGeneration = commit.generation
        generation = commit.generation
        lastCommit = commit
        for f in bfe.snapshot().filters { keyOf[f.filterId] = f.filterKey }
        // Loaded on another core now, so the first change does not pay for the verifier.
        if reauthorizes && !engine.workloads().isEmpty { iterators = ReauthorizationIterators(engine) }
    }

    /// The full commit `init` made.
    public private(set) var lastCommit: Engine.Commit

    /// Adds `filter`; returns its filterId and the commit.
    @discardableResult
    public func add(_ filter: Filter) throws -> (filterId: UInt64, commit: Engine.Commit) {
        let r = try change(adding: [filter])
        return (r.filterIds[0], r.commit)
    }

    /// Deletes filter `id` (FWP_E_FILTER_NOT_FOUND when there is none).
    @discardableResult
    public func delete(filterId id: UInt64) throws -> Engine.Commit {
        try change(deleting: [id]).commit
    }

    /// Adds `filters` and deletes `ids` in one transaction and one commit.
    @discardableResult
    public func change(adding filters: [Filter] = [], deleting ids: [UInt64] = []) throws -> (filterIds: [UInt64], commit: Engine.Commit) {
        var clock = PhaseClock()
        let config = engine.config
        if let socket = DaemonLock.holder(config) { throw EngineError.daemonOwnsPolicy(socket: socket) }
        try engine.requireRoot("lfp policy change")
        let lock = try engine.stateLock()
        defer { withExtendedLifetime(lock) {} }
        let maps = try KernelMaps.open(config, create: false)
        try engine.reconcile(maps)
        let heads = try maps.policyHeads()
        let found = heads?.generation ?? 0
        guard found == generation, heads?.base.generation == baseGeneration else {
            throw EngineError.policyChangedElsewhere(expected: generation, found: found)
        }
        guard keyOf.count - ids.count + filters.count <= config.maxFilters else {
            throw CompileError(
                code: .outOfBounds,
                message:
                    "the change would make \(keyOf.count - ids.count + filters.count) filters; this engine holds at most \(config.maxFilters) (LFP_MAX_FILTERS)"
            )
        }

        // The model: one transaction, committed once the kernel enforces the change (or, for a
        // full commit, which compiles the committed model, before it and undone on failure).
        let session = bfe.defaultSession
        try bfe.beginTransaction(session)
        var added: [Filter] = []
        var removed: [Filter] = []
        var next = delta
        var notes: [PolicyImage.Note] = []
        var fullReason: String?
        var image: ClassifierImage?
        let g = max(try maps.readConfig().generation, generation) + 1
        do {
            for var f in filters {
                if f.filterKey.isZero { f.filterKey = UUID() }  // as the BFE would, but known here
                try bfe.addFilter(f, session: session)
                added.append(try bfe.filter(key: f.filterKey, session: session))
            }
            for id in ids {
                guard let key = keyOf[id] ?? added.first(where: { $0.filterId == id })?.filterKey else {
                    throw FWPError(.filterNotFound, "no filter has id \(id)")
                }
                if keyOf[id] != nil { removed.append(try bfe.filter(key: key, session: session)) }
                try bfe.deleteFilter(key: key, session: session)
            }
            clock.mark("validate")
            do {
                for f in added { try base.add(f, engine: bfe, to: &next, notes: &notes) }
                for id in ids { base.delete(filterId: id, from: &next) }
                let built = try base.buildDelta(&next, generation: g, baseGeneration: baseGeneration, origin: areaNext)
                guard Int(areaNext) + built.cells.count <= Int(areaEnd) else {
                    throw NeedsFullBuild(reason: "the spare cells are used up (\(LFP_DELTA_CELLS) since the last full commit)")
                }
                image = built
                clock.mark("classifier")
            } catch let e as NeedsFullBuild {
                fullReason = e.reason
            }
        } catch {
            try? bfe.abortTransaction(session)
            throw error
        }
        let kept = added.filter { f in !ids.contains(f.filterId) }
        func settle() {
            for f in kept { keyOf[f.filterId] = f.filterKey }
            for f in removed { keyOf[f.filterId] = nil }
        }
        guard let image else {
            // A full commit, which makes a new base.
            var commit: Engine.Commit
            do {
                try bfe.commitTransaction(session)
                commit = try engine.publish(
                    bfe, reauthorize: reauthorizes, clock: clock, retainBase: true,
                    record: Engine.record(of: bfe, ids: [], reauthorize: reauthorizes, source: nil))
            } catch {
                if bfe.inTransaction(session) { try? bfe.abortTransaction(session) } else { try? undo(added: kept, removed: removed) }
                throw error
            }
            settle()
            base = commit.base!
            baseGeneration = commit.generation
            generation = commit.generation
            delta = ClassifierDelta()
            area = commit.memory!
            tombstoned = []
            areaNext = UInt32(commit.baseCells)
            areaEnd = areaNext + UInt32(LFP_DELTA_CELLS)
            journalBytes = 0
            commit.fullBuildReason = fullReason
            commit.filterIds = added.map(\.filterId)
            return (added.map(\.filterId), commit)
        }

        // The record first (a journal line), then the kernel: the line counts once the kernel
        // enforces its generation (CommitJournal.swift).
        do {
            // Lines the kernel never saw (a change killed before its publication) are dropped
            // first. Only a journal that is not as this object left it can hold one: reading every
            // line at each change made the change slower with every line.
            if CommitJournal.size(config) != journalBytes {
                try CommitJournal.reconcile(config, base: baseGeneration, kernel: found)
            }
            journalBytes = try CommitJournal.append(
                JournalEntry(generation: g, base: baseGeneration, added: kept, deleted: removed.map(\.filterId)), config: config)
            clock.mark("record")
        } catch {
            // The line, if written, must not count: dropped now, or before the next line.
            try? CommitJournal.reconcile(config, base: baseGeneration, kernel: found)
            journalBytes = -1
            try? bfe.abortTransaction(session)
            throw error
        }
        // Nothing below can fail. The deleted filters' base leaves are marked with this delta (a
        // reader of an earlier one ignores the mark: classify.h), its cells go where no reader
        // can reach yet, then the head's pointer to them: one 4-byte store each.
        let cell = MemoryLayout<lfp_cell>.stride, mark = MemoryLayout<lfp_leaf>.offset(of: \lfp_leaf.deleted)!
        for leaf in image.tombstones where !tombstoned.contains(leaf) {
            area.publish(areaNext, atByte: Int(leaf) * cell + mark)
        }
        area.write(image.cells, at: Int(areaNext))
        area.publish(areaNext, atByte: MemoryLayout<lfp_head>.offset(of: \lfp_head.delta)!)
        tombstoned.formUnion(image.tombstones)
        areaNext += UInt32(image.cells.count)
        let counter = lfp_config(abi_version: UInt32(LFP_ABI_VERSION), pad: 0, generation: g)
        try? maps.config.update(key: UInt32(0), value: counter)
        clock.mark("publish")
        try? bfe.commitTransaction(session)  // the kernel enforces it: the model follows
        settle()
        delta = next
        generation = g
        var reauthorization = Reauthorization.skipped
        if reauthorizes && !engine.workloads().isEmpty {
            if iterators == nil { iterators = ReauthorizationIterators(engine) }
            reauthorization = engine.reauthorize(iterators)
            clock.mark("reauthorize")
        }
        var commit = Engine.Commit(
            generation: g, filterIds: added.map(\.filterId), kernelRules: 0, notes: notes, classifierBytes: image.bytes,
            diagrams: image.groupsPerLayer.reduce(0, +), phases: clock.phases, reauthorization: reauthorization)
        commit.incremental = true
        commit.deltaCells = Int(areaNext) - Int(areaEnd - UInt32(LFP_DELTA_CELLS))
        return (added.map(\.filterId), commit)
    }

    /// Takes a committed model change back after its full commit failed.
    private func undo(added: [Filter], removed: [Filter]) throws {
        let session = bfe.defaultSession
        try bfe.beginTransaction(session)
        do {
            for f in added { try bfe.deleteFilter(key: f.filterKey, session: session) }
            var restore = Policy()
            restore.filters = removed
            if !removed.isEmpty { _ = try bfe.load(restore, session: session, keepingFilterIds: true) }
            try bfe.commitTransaction(session)
        } catch {
            try? bfe.abortTransaction(session)
            throw error
        }
    }
}
