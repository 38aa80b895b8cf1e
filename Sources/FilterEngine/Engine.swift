import BPFKit
import FilterModel
import Foundation
import KernelABI
import KernelVocabulary
import Logging
import PolicyCompiler

/// The lfp engine: the committed policy (validated by FilterModel's BFE, compiled by
/// PolicyCompiler, published atomically into the pinned maps), the workloads, and the event
/// subscriptions. Stateless between processes except for what is pinned in bpffs and written
/// under the state directory, so several lfp processes cooperate.
public final class Engine {
    public let config: EngineConfiguration
    let logger: Logger

    public init(config: EngineConfiguration = .fromEnvironment(), logger: Logger? = nil) {
        self.config = config
        self.logger = logger ?? Engine.defaultLogger()
    }

    /// Quiet by default (warnings); LFP_LOG=info|debug|trace shows more.
    static func defaultLogger() -> Logger {
        var l = Logger(label: "lfp.engine")
        l.logLevel = ProcessInfo.processInfo.environment["LFP_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return l
    }

    /// Root, and the capabilities lfp's kernel work needs: CAP_SYS_ADMIN, or CAP_BPF +
    /// CAP_PERFMON (programs that read task memory) + CAP_NET_ADMIN (cgroup socket hooks).
    func requireRoot(_ what: String) throws {
        if geteuid() != 0 { throw EngineError.notRoot(what) }
        let missing = Engine.missingCapabilities()
        if !missing.isEmpty {
            let names = missing.joined(separator: ", ")
            throw EngineError.missingCapabilities(what: what, names: names)
        }
    }

    static func missingCapabilities() -> [String] {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let eff = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }  // no way to tell: let the kernel answer
        func has(_ bit: UInt64) -> Bool { eff & (1 << bit) != 0 }
        let sysAdmin: UInt64 = 21, netAdmin: UInt64 = 12, perfmon: UInt64 = 38, bpf: UInt64 = 39
        if has(sysAdmin) && has(netAdmin) { return [] }
        var missing: [String] = []
        if !has(bpf) && !has(sysAdmin) { missing.append("CAP_BPF") }
        if !has(perfmon) && !has(sysAdmin) { missing.append("CAP_PERFMON") }
        if !has(netAdmin) { missing.append("CAP_NET_ADMIN") }
        return missing
    }

    func stateLock() throws -> StateLock {
        try StateTree.prepareStateDirectory(config)  // 0700, root's alone (StateTree.swift)
        return try StateLock(path: config.lockFile)
    }

    // MARK: policy

    /// The outcome of a commit.
    public struct Commit: Sendable {
        public var generation: UInt64
        public var filterIds: [UInt64]
        public var kernelRules: Int
        public var notes: [PolicyImage.Note]
        /// Kernel memory of the classifier map, and its decision diagrams (all layers).
        public var classifierBytes: Int
        public var diagrams: Int
        /// Seconds spent per phase (validate, compile, classifier, publish, record, and when it
        /// ran, reauthorize).
        public var phases: [(name: String, seconds: Double)]
        /// The reauthorization of live connections that followed the publication.
        public var reauthorization: Reauthorization
        /// Whether the commit published a delta on the full build in force (LivePolicy), and
        /// why a change asked of LivePolicy was committed in full instead.
        public var incremental = false
        public var fullBuildReason: String?
        /// Spare cells of the base map in use since the last full commit (of LFP_DELTA_CELLS).
        public var deltaCells = 0
        /// The full build's retained state, for incremental commits on it: the compiler's, its
        /// cell count, and the published map's memory (whose spare cells take the deltas).
        var base: ClassifierBase?
        var baseCells = 0
        var memory: BPFMapMemory?
    }

    /// Validate, compile and commit `policy`, replacing the committed one. All or nothing: any
    /// error (FWPError from validation, CompileError, BPFError) leaves the committed policy and
    /// the kernel state as they were. Once committed, the live connections of lfp's workloads
    /// are reauthorized unless the policy says `lfpReauthorize: false` (Reauthorization.swift);
    /// a failure there is reported in `Commit.reauthorization.error`, not thrown: the policy is
    /// in force by then.
    @discardableResult
    /// `source`: the document `policy` was parsed from; recorded as it is, which is much cheaper
    /// than exporting the objects (2 s at 100k filters), and read back through a BFE, which
    /// gives the same filterIds (they are assigned in document order).
    public func commit(_ policy: Policy, source: String? = nil) throws -> Commit {
        guard policy.filters.count <= config.maxFilters else {
            throw CompileError(
                code: .outOfBounds,
                message: "the policy has \(policy.filters.count) filters; this engine holds at most \(config.maxFilters) (LFP_MAX_FILTERS)")
        }
        // While `lfp daemon` runs it is the one writer of the policy (DaemonLock).
        if let socket = DaemonLock.holder(config) { throw EngineError.daemonOwnsPolicy(socket: socket) }
        var clock = PhaseClock()
        let bfe = BaseFilteringEngine()
        let ids = try bfe.load(policy)  // validation: FWP_E_* errors
        clock.mark("validate")
        return try publish(
            bfe, filterIds: ids, reauthorize: policy.lfpReauthorize, clock: clock,
            record: Engine.record(of: bfe, ids: ids, reauthorize: policy.lfpReauthorize, source: source))
    }

    /// The record of `bfe` as committed under a generation: from `source` (the document its
    /// filters `ids` were loaded from) when given, else the BFE's export.
    static func record(of bfe: BaseFilteringEngine, ids: [UInt64], reauthorize: Bool, source: String?) -> @Sendable (UInt64) throws -> Data {
        { generation in
            if let source {
                // The keys the BFE generated for filters the document left without one, in
                // document order, so the record reads back with the same keys (and ids).
                let keyOf = Dictionary(bfe.snapshot().filters.map { ($0.filterId, $0.filterKey) }, uniquingKeysWith: { a, _ in a })
                return CommittedPolicy.record(generation: generation, source: source, filterKeys: ids.map { keyOf[$0] ?? .zero })
            }
            var snapshot = bfe.snapshot()
            snapshot.lfpReauthorize = reauthorize  // a document setting, not a BFE object
            return CommittedPolicy.record(generation: generation, policyJSON: snapshot.exportJSON(), filterCount: snapshot.filters.count)
        }
    }

    /// Compiles the objects of `bfe` as they are (filterIds included) and publishes them: the
    /// path of `commit` after validation, and of `lfp daemon`, whose engine already validated
    /// them. `record` writes the record of the new generation (the intent, then the record).
    public func publish(
        _ bfe: BaseFilteringEngine, filterIds ids: [UInt64] = [], reauthorize wantsReauthorization: Bool = true,
        clock clock0: PhaseClock? = nil, retainBase: Bool = false, record makeRecord: @escaping @Sendable (UInt64) throws -> Data
    ) throws -> Commit {
        var clock = clock0 ?? PhaseClock()
        try requireRoot("lfp policy load")
        let lock = try stateLock()
        defer { withExtendedLifetime(lock) {} }
        let maps = try KernelMaps.open(config, create: true)
        try reconcile(maps)
        let previous = try maps.readConfig()
        // Generations are never reused: lfp_config counts them, and the map in force names its
        // own (they differ only after a crash between the publish and the count).
        let generation = max(previous.generation, try maps.policyGeneration() ?? 0) + 1
        // Crash safety: the intent (the policy under its new generation) is on disk before the
        // kernel sees the policy, and becomes the record by one rename after. A kill at any point
        // leaves either the old record and the old map, or an intent that `reconcile` turns into
        // the record exactly when the kernel enforces its generation. It is written on another
        // core while the policy compiles (at 100k filters each takes a few tenths of a second).
        let intent = Intent(path: config.pendingPolicyFile)
        DispatchQueue.global().async { intent.write { try makeRecord(generation) } }
        // Reauthorize live connections only with a workload attached: without one lfp has no
        // connection to end, and the pass would cost a program load for nothing. The programs
        // load meanwhile; the passes wait for the record (below).
        let iterators = wantsReauthorization && !workloads().isEmpty ? ReauthorizationIterators(self) : nil
        let image: PolicyImage
        var classifier: ClassifierImage
        let cells: BPFMap, memory: BPFMapMemory
        do {
            image = try PolicyCompiler.compile(bfe)  // kernel limits: CompileError
            clock.mark("compile")
            classifier = try PolicyCompiler.buildClassifier(image, retainBase: retainBase)
            clock.mark("classifier")
            classifier.setGeneration(generation)
            // Spare cells after the policy's take the incremental commits on it, for LivePolicy
            // alone: 4 MiB more per commit slowed a loop of small commits under load.
            (cells, memory) = try BPFMap.createMappedArray(
                name: "lfp_cells", values: classifier.cells, spare: retainBase ? Int(LFP_DELTA_CELLS) : 0)
            clock.mark("map")
        } catch {
            intent.abandon()
            throw error
        }
        if let error = intent.wait() {
            throw EngineError.intentNotRecorded(path: config.pendingPolicyFile, reason: "\(error)")
        }
        clock.mark("intent")
        // A fresh map per commit, published with one update of lfp_policy: a classification
        // holds the map it looked up until it ends and the kernel frees the old one after an RCU
        // grace period, so nothing is rewritten under a reader and nothing waits.
        do {
            try maps.policy.update(key: UInt32(0), mapFD: cells.fd)
        } catch {
            unlink(config.pendingPolicyFile)
            throw error
        }
        let next = lfp_config(abi_version: UInt32(LFP_ABI_VERSION), pad: 0, generation: generation)
        try? maps.config.update(key: UInt32(0), value: next)  // a counter: the map in force is the truth
        clock.mark("publish")
        guard rename(config.pendingPolicyFile, config.policyFile) == 0 else {
            // The kernel enforces the new policy and the intent names it: the next command's
            // reconcile() finishes the record.
            throw EngineError.recordNotRenamed(
                generation: generation, path: config.pendingPolicyFile, reason: String(cString: strerror(errno)))
        }
        CommitJournal.clear(config)  // its lines name the previous base
        clock.mark("record")
        logger.info("policy committed", metadata: ["generation": "\(generation)", "cells": "\(classifier.cells.count)"])
        // Reauthorize live connections against the classifier just published, once the record
        // names it: ending a connection cannot be undone, so it waits until the commit stands. A
        // commit killed before this point (finished later by reconcile) ends none.
        var reauthorization = Reauthorization.skipped
        if let iterators {
            reauthorization = reauthorize(iterators)
            clock.mark("reauthorize")
            logger.info(
                "connections reauthorized",
                metadata: ["generation": "\(generation)", "ended": "\(reauthorization.endedConnections)"])
        }
        return Commit(
            generation: generation, filterIds: ids, kernelRules: image.rules.count, notes: image.notes,
            classifierBytes: classifier.bytes, diagrams: classifier.groupsPerLayer.reduce(0, +), phases: clock.phases,
            reauthorization: reauthorization, base: classifier.base, baseCells: classifier.cells.count, memory: memory)
    }

    /// The committed policy as the engine recorded it (objects with their filterIds): the one the
    /// kernel enforces, also right after a commit was killed halfway (see `reconcile`).
    public func committedPolicy() throws -> (generation: UInt64, policy: Policy)? {
        guard let r = try recordInForce() else { return nil }
        let (generation, policy) = try CommittedPolicy.read(r.data, sourceName: r.path)
        let (g, p) = try CommitJournal.replay(config, base: generation, policy: policy, kernel: kernelGeneration())
        return (g, p)
    }

    /// The generation the kernel enforces, if lfp's maps are there.
    func kernelGeneration() -> UInt64? {
        guard let maps = try? KernelMaps.open(config, create: false) else { return nil }
        return (try? maps.policyGeneration()).flatMap { $0 }
    }

    /// The record of the policy the kernel enforces: the intent when the kernel enforces its
    /// generation (a commit killed between the publication and the rename), else the record.
    func recordInForce() throws -> (data: Data, path: String)? {
        if let pending = try StateTree.read(config.pendingPolicyFile, root: config.stateDirectory),
            let g = CommittedPolicy.generation(pending),
            let maps = try? KernelMaps.open(config, create: false), (try? maps.policyGeneration()) == g
        {
            return (pending, config.pendingPolicyFile)
        }
        return try StateTree.read(config.policyFile, root: config.stateDirectory).map { ($0, config.policyFile) }
    }

    /// The committed record with the members `lfp daemon` adds: the keys of dynamic objects
    /// (which die with the daemon) and its filterId counter.
    public func committedRecord() throws -> (generation: UInt64, policy: Policy, dynamicObjects: [UUID], nextFilterId: UInt64?)? {
        guard let r = try recordInForce() else { return nil }
        let (base, recorded) = try CommittedPolicy.read(r.data, sourceName: r.path)
        let (generation, policy) = try CommitJournal.replay(config, base: base, policy: recorded, kernel: kernelGeneration())
        guard let top = try? JSONSerialization.jsonObject(with: r.data) as? [String: Any] else { return (generation, policy, [], nil) }
        let dynamic = (top["dynamicObjects"] as? [String] ?? []).compactMap(UUID.init(uuidString:))
        return (generation, policy, dynamic, (top["nextFilterId"] as? NSNumber)?.uint64Value)
    }

    /// Compiles `bfe` for the kernel without publishing (`lfp policy check`): every kernel limit
    /// is checked. Needs no privileges.
    public func check(_ bfe: BaseFilteringEngine) throws -> (kernelRules: Int, classifierBytes: Int, diagrams: Int) {
        let image = try PolicyCompiler.compile(bfe)
        let classifier = try PolicyCompiler.buildClassifier(image)
        return (image.rules.count, classifier.bytes, classifier.groupsPerLayer.reduce(0, +))
    }

    /// How many filters the committed record holds: read from its head when it says, else by
    /// reading it.
    func committedFilterCount() -> Int {
        guard let r = (try? recordInForce()) ?? nil else { return 0 }
        if CommitJournal.size(config) == 0, let n = CommittedPolicy.filterCount(r.data) { return n }
        if let n = try? committedPolicy()?.policy.filters.count { return n }
        return (try? CommittedPolicy.read(r.data, sourceName: r.path).policy.filters.count) ?? 0
    }

    /// After a commit that was killed: an intent whose generation the kernel enforces becomes
    /// the record; any other intent is dropped (the kernel never saw it). Under the state lock.
    func reconcile(_ maps: KernelMaps) throws {
        guard let pending = try StateTree.read(config.pendingPolicyFile, root: config.stateDirectory) else { return }
        if let g = CommittedPolicy.generation(pending), try maps.policyGeneration() == g {
            guard rename(config.pendingPolicyFile, config.policyFile) == 0 else {
                throw EngineError.reconcileFailed(generation: g, reason: "rename: \(String(cString: strerror(errno)))")
            }
            logger.warning("finished the record of a commit that was interrupted", metadata: ["generation": "\(g)"])
        } else {
            unlink(config.pendingPolicyFile)
        }
    }

    /// A BFE holding the committed policy (empty when none), e.g. for `lfp classify`.
    public func committedEngine() throws -> BaseFilteringEngine {
        let bfe = BaseFilteringEngine()
        // The recorded filterIds are kept: after incremental commits they need not be dense.
        if let (_, policy) = try committedPolicy() { _ = try bfe.load(policy, keepingFilterIds: true) }
        return bfe
    }

    // MARK: events

    /// Subscribe to every ALE event from now on. Each subscription has its own ring.
    /// `bufferEvents`: how far the consumer may fall behind before this tail sheds events (counted
    /// in its `accounting().shed`); 262,144 events is about 50 MB.
    public func subscribe(ringBytes: UInt32 = LFP_RING_BYTES, pollTimeoutMs: Int32 = 50, bufferEvents: Int = 1 << 18) throws
        -> EventSubscription
    {
        try requireRoot("lfp events")
        try StateTree.prepareStateDirectory(config)
        let maps = try KernelMaps.open(config, create: true)
        let registry = WorkloadNames(engine: self)
        return try EventSubscription(
            config: config, maps: maps, ringBytes: ringBytes, pollTimeoutMs: pollTimeoutMs, bufferEvents: bufferEvents
        ) { batch in
            var names: [UInt32: String?] = [:]  // one registry lookup per workload per batch
            for i in batch.indices {
                let id = batch[i].workloadId
                guard id != 0 else { continue }
                if names[id] == nil { names[id] = .some(registry.name(for: id)) }
                batch[i].workload = names[id]!
            }
        }
    }
}

/// Workload id (in every event, computed by the kernel at emit time) -> name. Names come from
/// the registry and from the history of every name ever attached, so an event of a workload
/// that has already finished (a short `lfp run`) is still named.
final class WorkloadNames: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [UInt32: String] = [:]
    private var lastRefresh = Date.distantPast
    private let engine: Engine

    init(engine: Engine) {
        self.engine = engine
        refresh()
    }

    private func refresh() {
        lastRefresh = Date()
        var all = engine.workloads().map(\.name)
        if let text = try? String(contentsOfFile: engine.config.workloadNameHistory, encoding: .utf8) {
            all += text.split(separator: "\n").map(String.init)
        }
        for n in all { names[workloadID(n)] = n }
    }

    func name(for id: UInt32) -> String? {
        guard id != 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        if let n = names[id] { return n }
        if Date().timeIntervalSince(lastRefresh) > 0.05 { refresh() }
        return names[id]
    }
}
