// The base filtering engine: object store, sessions, transactions, enumeration and classify.

import Foundation
import HashTreeCollections

/// A session handle (FwpmEngineOpen0).
public struct SessionHandle: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt64
    public var description: String { "session#\(id)" }
}

/// FWPM_SESSION_FLAG_*.
public struct SessionFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// FWPM_SESSION_FLAG_DYNAMIC: objects die with the session (R8.2).
    public static let dynamic = SessionFlags(rawValue: 0x1)
}

/// How long an object lives (R8.3).
public enum ObjectLifetime: Hashable, Sendable, CustomStringConvertible {
    case builtIn
    case persistent
    case staticObject
    case dynamic(SessionHandle)

    var rank: Int {
        switch self {
        case .dynamic: return 0
        case .staticObject: return 1
        case .persistent: return 2
        case .builtIn: return 3
        }
    }

    public var description: String {
        switch self {
        case .builtIn: return "built-in"
        case .persistent: return "persistent"
        case .staticObject: return "static"
        case .dynamic(let s): return "dynamic (\(s))"
        }
    }
}

/// FWPM_FILTER_ENUM_TEMPLATE0 (R8.15).
public struct FilterEnumTemplate: Sendable {
    public enum EnumType: UInt32, Sendable {
        /// FWP_FILTER_ENUM_FULLY_CONTAINED
        case fullyContained = 0
        /// FWP_FILTER_ENUM_OVERLAPPING
        case overlapping = 1
    }

    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let bestTerminatingMatch = Flags(rawValue: 0x1)
        public static let sorted = Flags(rawValue: 0x2)
        public static let bootTimeOnly = Flags(rawValue: 0x4)
        public static let includeBootTime = Flags(rawValue: 0x8)
        public static let includeDisabled = Flags(rawValue: 0x10)
    }

    public var providerKey: UUID?
    public var layerKey: Layer?
    public var enumType: EnumType
    public var flags: Flags
    public var conditions: [FilterCondition]
    public var actionMask: UInt32
    public var calloutKey: UUID?

    public init(
        providerKey: UUID? = nil, layerKey: Layer? = nil, enumType: EnumType = .overlapping,
        flags: Flags = [], conditions: [FilterCondition] = [], actionMask: UInt32 = 0xFFFF_FFFF,
        calloutKey: UUID? = nil
    ) {
        self.providerKey = providerKey
        self.layerKey = layerKey
        self.enumType = enumType
        self.flags = flags
        self.conditions = conditions
        self.actionMask = actionMask
        self.calloutKey = calloutKey
    }
}

struct Stored<T> {
    var object: T
    var lifetime: ObjectLifetime
    /// Creation order (tie-break for equal sublayer weights).
    var seq: UInt64
}

/// One consistent set of management objects (committed, or a transaction's working copy).
struct Store {
    var providers: [UUID: Stored<Provider>] = [:]
    var sublayers: [UUID: Stored<Sublayer>] = [:]
    var callouts: [UUID: Stored<CalloutObject>] = [:]
    var contexts: [UUID: Stored<ProviderContext>] = [:]
    /// A persistent hash trie, not a Dictionary: a write copies the store (the transaction's
    /// working copy beside the committed one), and copying a Dictionary of 100,000 filters took
    /// tens of milliseconds per one-filter change; the trie shares all but the changed path.
    var filters: TreeDictionary<UUID, Stored<Filter>> = [:]
    var nextFilterId: UInt64 = 1
    var nextCalloutId: UInt32 = 1
    var nextContextId: UInt64 = 1
    var nextSeq: UInt64 = 1
    /// Filters added to this working copy whose callout got ADD_FILTER, by seq: what a commit
    /// owes ADD_FILTER_POST_COMMIT and an abort DELETE_FILTER (R5.8). Empty once committed.
    var notifiedAdds: [UInt64: Filter] = [:]

    init() {
        sublayers[Sublayer.universalKey] = Stored(object: Sublayer.universal, lifetime: .builtIn, seq: 0)
    }

    mutating func seq() -> UInt64 {
        defer { nextSeq += 1 }
        return nextSeq
    }

    func filter(id: UInt64) -> Stored<Filter>? { filters.values.first { $0.object.filterId == id } }
}

public final class BaseFilteringEngine: @unchecked Sendable {
    struct SessionState {
        var flags: SessionFlags
        var name: String?
        var txn: Txn?
    }

    struct Txn {
        var readOnly: Bool
        var working: Store
    }

    let lock = NSRecursiveLock()
    var committed = Store() { didSet { classifyOrder = [:] } }
    /// classify()'s arbitration order per layer, for the committed store (reset on every change):
    /// sorting every filter on every classify made the model O(n log n) per call.
    var classifyOrder: [Layer: [(sublayer: Sublayer, filters: [Filter])]] = [:]
    var sessions: [SessionHandle: SessionState] = [:]
    var nextSession: UInt64 = 1
    var writeOwner: SessionHandle?
    var registry: [UUID: any Callout] = [:]
    /// Runtime ids and flow contexts of the registered callouts (BaseFilteringEngine+Callouts).
    var runtime = CalloutRuntime()
    var nextSubscription: UInt64 = 0
    /// The static session used when a call names none (an implicit, non-dynamic session).
    public let defaultSession: SessionHandle
    /// How classify tells that two ALE_APP_ID paths name the same executable (the kernel's
    /// rule: file identity); `AppId.pathsOnly` compares paths only.
    public let appIdentity: AppId.IdentityLookup

    /// Called with the engine as it would be after a write, before that write commits (an
    /// implicit transaction, FwpmTransactionCommit0, or a dynamic session's end). If it throws,
    /// nothing changes and the call fails with its error. `lfp daemon` publishes the candidate to
    /// the kernel here, so the committed objects and the kernel change together or not at all.
    public var commitGate: ((BaseFilteringEngine) throws -> Void)?

    public init(appIdentity: @escaping AppId.IdentityLookup = AppId.statIdentity) {
        self.appIdentity = appIdentity
        defaultSession = SessionHandle(id: 0)
        sessions[defaultSession] = SessionState(flags: [], name: "default")
    }

    /// A read-only view of `store` (what commitGate inspects).
    init(view store: Store, of engine: BaseFilteringEngine) {
        self.appIdentity = engine.appIdentity
        defaultSession = SessionHandle(id: 0)
        sessions[defaultSession] = SessionState(flags: [], name: "default")
        self.registry = engine.registry
        self.runtime.ids = engine.runtime.ids
        self.runtime.keys = engine.runtime.keys
        committed = store
    }

    /// Runs the gate on `candidate` (under the lock).
    func gate(_ candidate: Store) throws {
        guard let g = commitGate else { return }
        try g(BaseFilteringEngine(view: candidate, of: self))
    }

    /// The same objects without the filters `drop` selects (e.g. boot-time filters, which the
    /// kernel enforces only until the engine starts, R8.3). Lifetimes and ids are kept.
    public func copy(droppingFilters drop: (Filter) -> Bool) -> BaseFilteringEngine {
        locked {
            var s = committed
            s.filters = s.filters.filter { !drop($0.value.object) }
            return BaseFilteringEngine(view: s, of: self)
        }
    }

    /// The next filterId will be at least `next` (ids are never reused within a boot, so an
    /// engine that restarts continues where the previous one stopped).
    public func reserveFilterIds(from next: UInt64) {
        locked { committed.nextFilterId = max(committed.nextFilterId, next) }
    }

    /// The next filterId this engine would assign.
    public var nextFilterId: UInt64 { locked { committed.nextFilterId } }

    /// Whether the session has a transaction open.
    public func inTransaction(_ s: SessionHandle) -> Bool { locked { sessions[s]?.txn != nil } }

    func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Sessions

    /// FwpmEngineOpen0.
    public func openSession(flags: SessionFlags = [], name: String? = nil) -> SessionHandle {
        locked {
            let h = SessionHandle(id: nextSession)
            nextSession += 1
            sessions[h] = SessionState(flags: flags, name: name)
            return h
        }
    }

    /// Convenience: a dynamic session (FWPM_SESSION_FLAG_DYNAMIC).
    public func openDynamicSession(name: String? = nil) -> SessionHandle { openSession(flags: .dynamic, name: name) }

    /// FwpmEngineClose0: aborts the session's transaction, then deletes its dynamic objects (R8.1, R8.2).
    public func closeSession(_ s: SessionHandle) throws {
        var notices: [PendingNotify] = []
        defer { deliver(notices) }  // after the lock is released
        try locked {
            guard let st = sessions[s] else { throw FWPError(.invalidParameter, "\(s) is not open") }
            guard s != defaultSession else { throw FWPError(.invalidParameter, "the default session cannot be closed") }
            if let txn = st.txn {
                if writeOwner == s { writeOwner = nil }
                notices = abandonNotices(txn.working, base: committed)
            }
            sessions[s] = nil
            if st.flags.contains(.dynamic) {
                var work = committed
                removeDynamicObjects(of: s, in: &work)
                let changed =
                    work.filters.count != committed.filters.count || work.providers.count != committed.providers.count
                    || work.sublayers.count != committed.sublayers.count || work.callouts.count != committed.callouts.count
                    || work.contexts.count != committed.contexts.count
                // The session is gone either way; its objects stay only if the gate refuses.
                if changed { try gate(work) }
                notices += install(work)
            }
        }
    }

    func removeDynamicObjects(of s: SessionHandle, in work: inout Store) {
        for (k, f) in work.filters where f.lifetime == .dynamic(s) { work.filters[k] = nil }
        for (k, o) in work.contexts where o.lifetime == .dynamic(s) { work.contexts[k] = nil }
        for (k, o) in work.callouts where o.lifetime == .dynamic(s) { work.callouts[k] = nil }
        for (k, o) in work.sublayers where o.lifetime == .dynamic(s) { work.sublayers[k] = nil }
        for (k, o) in work.providers where o.lifetime == .dynamic(s) { work.providers[k] = nil }
    }

    /// Simulates a BFE/daemon restart: every session ends, only persistent (and built-in) objects
    /// survive (R8.3). Persistent filters whose provider names a service that is not in
    /// `autoStartServices` come back DISABLED, and so does that provider (R8.8, Object
    /// Management reading). Registered callouts stay registered (they live in the kernel, not
    /// in BFE) and get DELETE_FILTER for the filters that are gone.
    public func restart(autoStartServices: Set<String> = []) {
        var notices: [PendingNotify] = []
        defer { deliver(notices) }
        locked {
            for st in sessions.values { if let txn = st.txn { notices += abandonNotices(txn.working, base: committed) } }
            sessions = [defaultSession: SessionState(flags: [], name: "default")]
            writeOwner = nil
            var w = committed
            w.filters = w.filters.filter { $0.value.lifetime == .persistent }
            w.contexts = w.contexts.filter { $0.value.lifetime == .persistent }
            w.callouts = w.callouts.filter { $0.value.lifetime == .persistent }
            w.sublayers = w.sublayers.filter { $0.value.lifetime == .persistent || $0.value.lifetime == .builtIn }
            w.providers = w.providers.filter { $0.value.lifetime == .persistent }
            var disabledProviders = Set<UUID>()
            for (k, p) in w.providers {
                if let svc = p.object.serviceName, !svc.isEmpty, !autoStartServices.contains(svc) {
                    disabledProviders.insert(k)
                    w.providers[k]!.object.flags.insert(.disabled)
                } else {
                    w.providers[k]!.object.flags.remove(.disabled)
                }
            }
            for (k, f) in w.filters {
                if let pk = f.object.providerKey, disabledProviders.contains(pk) {
                    w.filters[k]!.object.flags.insert(.disabled)
                } else {
                    w.filters[k]!.object.flags.remove(.disabled)
                }
            }
            notices += install(w)
        }
    }

    func lifetime(for flagsPersistent: Bool, session h: SessionHandle, _ st: SessionState) -> ObjectLifetime {
        if st.flags.contains(.dynamic) { return .dynamic(h) }
        return flagsPersistent ? .persistent : .staticObject
    }

    /// R4.14: may an object of lifetime `a` (owned by provider `aProvider`) reference `b`?
    func checkReference(_ a: ObjectLifetime, _ aProvider: UUID?, to b: ObjectLifetime, _ bProvider: UUID?, what: String) throws {
        if b == .builtIn { return }
        let ok: Bool
        switch (a, b) {
        case (.dynamic(let x), .dynamic(let y)): ok = x == y
        case (.persistent, .persistent): ok = bProvider == nil || bProvider == aProvider
        default: ok = b.rank >= a.rank
        }
        if !ok {
            throw FWPError(.lifetimeMismatch, "a \(a) object cannot reference the \(b) \(what)")
        }
    }

    /// The lifetime a new object gets from its session and flags, with the rules every add
    /// shares: no persistent object from a dynamic session, an existing provider, and a provider
    /// that lives at least as long (R4.14).
    func admit(persistent: Bool, providerKey: UUID?, _ w: Store, _ h: SessionHandle, _ st: SessionState) throws -> ObjectLifetime {
        if st.flags.contains(.dynamic) && persistent {
            throw FWPError(.dynamicSessionInProgress, "a dynamic session cannot add persistent objects", unconfirmedCode: true)
        }
        let lt = lifetime(for: persistent, session: h, st)
        if let pk = providerKey {
            guard let p = w.providers[pk] else { throw FWPError(.providerNotFound, "provider \(pk.lowerString) does not exist") }
            try checkReference(lt, pk, to: p.lifetime, nil, what: "provider")
        }
        return lt
    }

    func checkName(_ d: DisplayData, _ what: String) throws {
        guard let n = d.name, !n.isEmpty else {
            throw FWPError(.nullDisplayName, "displayData.name is required")
        }
    }
}
