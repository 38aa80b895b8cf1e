// The Base Filtering Engine as a service: one BaseFilteringEngine for the machine, sessions per
// connection, and the kernel published inside every commit (the engine's commitGate).
//
// Threading: every request runs on one serial queue, the engine queue. The daemon is the one
// writer of the kernel maps, and a commit at 100k filters takes about two seconds, so requests
// take turns; nothing else blocks on the kernel.

import FilterEngine
import FilterModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import PolicyCompiler
import ServiceProtocol

/// Settings of `lfp daemon`.
public struct DaemonOptions: Sendable {
    public var socketPath: String
    /// The SQLite file of persistent objects (FWPM_*_FLAG_PERSISTENT and boot-time filters).
    public var databasePath: String
    /// How many net events the history keeps (FwpmNetEventEnum0), drops only unless
    /// `historyAllows`.
    public var historyEvents: Int = 10_000
    public var historyAllows = false
    /// HOST:PORT to serve Prometheus metrics on (GET /metrics); nil = none.
    public var metricsAddress: String?
    /// A directory of policy files to load and to load again when they change (a ConfigMap).
    public var policyDirectory: String?
    /// How long an operation may stay pended (FwpsPendOperation0) before it completes with the
    /// default verdict (WFP documents no limit, R6.10; lfp bounds it), and whether that verdict
    /// permits (`--pend-default permit`); it blocks unless so configured.
    public var pendTimeoutSeconds: Double = 60
    public var pendTimeoutPermits = false
    /// How long a classification waits for a callout host's answer before it treats the callout
    /// as unregistered for that classification (R5.6).
    public var calloutAnswerSeconds: Double = 5

    public init(socketPath: String, databasePath: String) {
        self.socketPath = socketPath
        self.databasePath = databasePath
    }

    /// LFP_DB overrides the database; the default is /var/lib/lfp/lfp.db.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> DaemonOptions {
        DaemonOptions(socketPath: WireProtocol.socketPath(env), databasePath: env["LFP_DB"] ?? "/var/lib/lfp/lfp.db")
    }
}

/// A connected client: its credentials, session and subscriptions.
final class ClientState {
    let id: UInt64
    let peer: Peer
    let send: @Sendable (Reply) -> Void
    /// False while the client's socket buffer is full (it reads slower than events come).
    let writable: @Sendable () -> Bool
    var session: SessionHandle?
    var eventsLost: UInt64 = 0
    var waitMs: UInt32 = 15_000
    var netEvents = false
    var changes = false
    init(id: UInt64, peer: Peer, send: @escaping @Sendable (Reply) -> Void, writable: @escaping @Sendable () -> Bool) {
        self.id = id
        self.peer = peer
        self.send = send
        self.writable = writable
    }
}

/// Who is on the other end of the socket (SO_PEERCRED), for the access check and the audit log.
public struct Peer: Sendable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Read when the peer connects (it may be gone by the time the audit log names it).
    public var executable: String
    init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"
    }
    public var description: String { "pid=\(pid) uid=\(uid) exe=\(executable)" }
}

public final class FilterService: @unchecked Sendable {
    let engine: Engine
    let options: DaemonOptions
    let bfe: BaseFilteringEngine
    let store: PersistentStore
    let logger: Logger
    let audit: Logger
    let queue = DispatchQueue(label: "lfp.daemon.engine")
    var clients: [UInt64: ClientState] = [:]
    var nextClient: UInt64 = 1
    /// Writes waiting for another session's transaction (R8.13), in arrival order.
    var parked: [(client: UInt64, request: Request, deadline: DispatchTime)] = []
    /// The generation the kernel enforces (the last publish).
    private(set) var generation: UInt64 = 0
    /// Objects as last published, for change notifications.
    var published: [UUID: ObjectChange] = [:]
    let history: EventHistory
    let records = RecordCache()
    var policyDirectory: PolicyDirectory?
    /// Keeps every pinned map and workload link referenced, and pins them again if lost.
    let pins: PinKeeper
    let metrics = DaemonMetrics()
    /// Hits per filter, events read and lost, net-event subscribers (the event pump's state).
    let pump = NIOLockedValueBox(PumpState())
    /// Hosted callouts and prompt clients (CalloutRequests.swift); the held operations'
    /// dispatcher (CalloutDispatcher.swift); the built-in callouts.
    let hosting = NIOLockedValueBox(HostingState())
    private(set) var dispatcher: CalloutDispatcher!
    private(set) var prompt: PromptCallout!
    private(set) var auditCallout: AuditCallout!
    /// The daemon's own session, for the filters `lfp prompt --remember` adds.
    private(set) var ownSession: SessionHandle!

    public init(engine: Engine, options: DaemonOptions, logger: Logger) throws {
        self.engine = engine
        self.options = options
        self.logger = logger
        var audit = Logger(label: "lfp.audit")
        audit.logLevel = .info
        self.audit = audit
        bfe = BaseFilteringEngine()
        pins = PinKeeper(engine: engine)
        store = try PersistentStore(path: options.databasePath)
        history = EventHistory(capacity: options.historyEvents, keepAllows: options.historyAllows)
        bfe.commitGate = { [unowned self] candidate in try self.publish(candidate) }
        dispatcher = CalloutDispatcher(service: self, logger: logger)
        prompt = PromptCallout(service: self)
        auditCallout = AuditCallout(service: self)
    }

    // MARK: publishing

    /// The gate of every commit: the persistent objects to SQLite and the enforced ones to the
    /// kernel, in one SQLite transaction, so a refusal (or a crash) leaves both as they were.
    /// Boot-time filters are stored but not enforced: the kernel holds them only until the
    /// daemon starts (R8.3).
    func publish(_ candidate: BaseFilteringEngine) throws {
        let enforced = candidate.copy(droppingFilters: { $0.flags.contains(.bootTime) })
        let next = candidate.nextFilterId
        let all = candidate.snapshot()
        let started = DispatchTime.now()
        defer { metrics.commits.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds)) }
        try store.sync(candidate, snapshot: all) {
            let commit = try engine.publish(enforced) { [records] generation in
                // `enforced` is `all` without boot-time filters: derived, not snapshotted (and
                // sorted) again.
                var snapshot = all
                snapshot.filters.removeAll { $0.flags.contains(.bootTime) }
                var dynamic: [String] = []
                for k in Self.keys(snapshot) {
                    if case .dynamic = enforced.lifetime(ofObject: k) { dynamic.append("\"\(k.lowerString)\"") }
                }
                return CommittedPolicy.record(
                    generation: generation, policyJSON: records.document(snapshot), filterCount: snapshot.filters.count,
                    extra: [("daemon", "true"), ("nextFilterId", "\(next)"), ("dynamicObjects", "[" + dynamic.joined(separator: ",") + "]")])
            }
            generation = commit.generation
        }
        // Layers where events feed registered inspection callouts.
        let inspected = Set(
            all.filters.filter {
                $0.action.type == .calloutInspection && !$0.flags.contains(.disabled) && $0.action.calloutKey.map(candidate.isRegistered) == true
                    && PolicyCompiler.enforcingKinds.contains($0.layerKey.kind)
            }
            .map(\.layerKey))
        dispatcher.inspected.withLockedValue { $0 = inspected }
        let notifying: Set<Layer.Kind> = [.flowEstablished, .endpointClosure, .resourceRelease]
        let notified = Set(
            all.filters.filter { f in
                f.action.type.isCallout && !f.flags.contains(.disabled) && notifying.contains(f.layerKey.kind)
                    && f.action.calloutKey.map(candidate.isRegistered) == true
            }.map(\.layerKey))
        dispatcher.notified.withLockedValue { $0 = notified }
        notifyChanges(all)
    }

    static func keys(_ p: Policy) -> [UUID] {
        p.providers.map(\.providerKey) + p.sublayers.map(\.subLayerKey) + p.callouts.map(\.calloutKey)
            + p.providerContexts.map(\.providerContextKey) + p.filters.map(\.filterKey)
    }

    /// Change notifications cost a pass over every object: only while someone listens (the
    /// index is taken afresh when the first listener subscribes).
    private func notifyChanges(_ now: Policy) {
        guard clients.values.contains(where: { $0.changes }) else { return }
        let current = Self.changeIndex(now)
        var changes: [ObjectChange] = []
        for (k, c) in published where current[k] == nil {
            var d = c
            d.change = .delete
            changes.append(d)
        }
        for (k, c) in current where published[k] == nil { changes.append(c) }
        published = current
        guard !changes.isEmpty else { return }
        var reply = Reply(id: 0)
        reply.changes = changes
        for c in clients.values where c.changes { c.send(reply) }
    }

    static func changeIndex(_ now: Policy) -> [UUID: ObjectChange] {
        var current: [UUID: ObjectChange] = [:]
        for p in now.providers { current[p.providerKey] = ObjectChange(change: .add, kind: .provider, key: p.providerKey.lowerString) }
        for s in now.sublayers {
            current[s.subLayerKey] = ObjectChange(change: .add, kind: .sublayer, key: s.subLayerKey.lowerString, providerKey: s.providerKey?.lowerString)
        }
        for c in now.callouts {
            current[c.calloutKey] = ObjectChange(
                change: .add, kind: .callout, key: c.calloutKey.lowerString, objectId: UInt64(c.calloutId), providerKey: c.providerKey?.lowerString)
        }
        for c in now.providerContexts {
            current[c.providerContextKey] = ObjectChange(
                change: .add, kind: .providerContext, key: c.providerContextKey.lowerString, providerKey: c.providerKey?.lowerString)
        }
        for f in now.filters {
            current[f.filterKey] = ObjectChange(
                change: .add, kind: .filter, key: f.filterKey.lowerString, objectId: f.filterId, providerKey: f.providerKey?.lowerString)
        }
        return current
    }

    // MARK: start

    /// Restores the engine (persistent objects from the database; static ones and the filterId
    /// counter from the run-state record, which a reboot clears) and publishes it, which also
    /// replaces the boot-time filters the boot unit enforced.
    public func start() throws {
        try queue.sync {
            // Built-in callouts first: the first publish already holds for them.
            try registerBuiltIn(BuiltInCallouts.prompt, prompt)
            try registerBuiltIn(BuiltInCallouts.audit, auditCallout)
            ownSession = bfe.openSession(flags: [], name: "lfp daemon")
            let stored = try store.load()
            var restore = Policy()
            var ids: [UUID: UInt64] = [:]
            var next: UInt64 = 1
            if let record = try engine.committedRecord() {
                let dynamic = Set(record.dynamicObjects)
                let persistentKeys = Set(Self.keys(stored))
                next = record.nextFilterId ?? 1
                for f in record.policy.filters where f.filterId != 0 { ids[f.filterKey] = f.filterId }
                // Static objects: in the record, neither dynamic nor in the database.
                func keep(_ k: UUID) -> Bool { !dynamic.contains(k) && !persistentKeys.contains(k) }
                let r = record.policy
                restore.providers = r.providers.filter { keep($0.providerKey) && !$0.flags.contains(.persistent) }
                restore.sublayers = r.sublayers.filter { keep($0.subLayerKey) && !$0.flags.contains(.persistent) }
                restore.callouts = r.callouts.filter { keep($0.calloutKey) && !$0.flags.contains(.persistent) }
                restore.providerContexts = r.providerContexts.filter { keep($0.providerContextKey) && !$0.flags.contains(.persistent) }
                restore.filters = r.filters.filter { keep($0.filterKey) && !$0.flags.contains(.persistent) && !$0.flags.contains(.bootTime) }
                next = max(next, (r.filters.map(\.filterId).max() ?? 0) + 1)
            }
            // Persistent objects first within each kind: static ones may reference them.
            restore.providers = stored.providers + restore.providers
            restore.sublayers = stored.sublayers + restore.sublayers
            restore.callouts = stored.callouts + restore.callouts
            restore.providerContexts = stored.providerContexts + restore.providerContexts
            var filters = stored.filters + restore.filters
            for i in filters.indices { filters[i].filterId = ids[filters[i].filterKey] ?? 0 }
            // Filters that keep their id first, in id order; new ids follow the counter.
            filters.sort { ($0.filterId == 0 ? UInt64.max : $0.filterId) < ($1.filterId == 0 ? UInt64.max : $1.filterId) }
            restore.filters = filters
            bfe.reserveFilterIds(from: next)
            // One commit through the gate, even of nothing: the kernel then enforces exactly the
            // restored engine, the daemon's record is the one in force, and boot-time filters
            // give way.
            try bfe.load(restore, keepingFilterIds: true)
            logger.notice(
                "engine restored",
                metadata: [
                    "generation": "\(generation)", "persistent": "\(store.count)", "filters": "\(restore.filters.count)",
                    "database": "\(options.databasePath)",
                ])
        }
        dispatcher.start()
    }
}

/// What the event pump counts, and whether anyone listens: one lock for the pump's per-event
/// work (NIOLockedValueBox).
struct PumpState {
    /// filterId -> classifications it decided, from the event stream (no kernel cost).
    var hits: [UInt64: UInt64] = [:]
    /// Events read from the kernel, and pushes dropped for tails that did not read.
    var read: UInt64 = 0
    var lost: UInt64 = 0
    /// Clients subscribed to net events: with none, an event is neither encoded nor rendered
    /// unless the history keeps it.
    var subscribers = 0

    var counters: [FilterCounter] {
        hits.map { FilterCounter(filterId: $0.key, hits: $0.value) }.sorted { $0.filterId < $1.filterId }
    }
}

/// The daemon's bounded history of net events (FwpmNetEventEnum0), newest last.
final class EventHistory: @unchecked Sendable {
    let capacity: Int
    let keepAllows: Bool
    private let lock = NSLock()
    private var ring: [(at: Date, json: String, text: String)] = []
    private var head = 0

    init(capacity: Int, keepAllows: Bool) {
        self.capacity = max(0, capacity)
        self.keepAllows = keepAllows
    }

    func append(_ json: String, text: String, at: Date = Date()) {
        guard capacity > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        if ring.count < capacity {
            ring.append((at, json, text))
        } else {
            ring[head] = (at, json, text)
            head = (head + 1) % capacity
        }
    }

    func since(_ t: Date) -> (json: [String], text: [String]) {
        lock.lock(); defer { lock.unlock() }
        let ordered = ring.count < capacity ? ring : Array(ring[head...] + ring[..<head])
        let kept = ordered.filter { $0.at >= t }
        return (kept.map(\.json), kept.map(\.text))
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return ring.count
    }
}
