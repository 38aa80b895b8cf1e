// The base filtering engine: object store, sessions, transactions, enumeration and classify.

import Foundation

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
    var filters: [UUID: Stored<Filter>] = [:]
    var nextFilterId: UInt64 = 1
    var nextCalloutId: UInt32 = 1
    var nextContextId: UInt64 = 1
    var nextSeq: UInt64 = 1

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
    private struct SessionState {
        var flags: SessionFlags
        var name: String?
        var txn: Txn?
    }

    private struct Txn {
        var readOnly: Bool
        var working: Store
    }

    private let lock = NSRecursiveLock()
    private var committed = Store() { didSet { classifyOrder = [:] } }
    /// classify()'s arbitration order per layer, for the committed store (reset on every change):
    /// sorting every filter on every classify made the model O(n log n) per call.
    private var classifyOrder: [Layer: [(sublayer: Sublayer, filters: [Filter])]] = [:]
    private var sessions: [SessionHandle: SessionState] = [:]
    private var nextSession: UInt64 = 1
    private var writeOwner: SessionHandle?
    private var registry: [UUID: any Callout] = [:]
    private var nextSubscription: UInt64 = 0
    /// The static session used when a call names none (an implicit, non-dynamic session).
    public let defaultSession: SessionHandle
    /// How classify tells that two ALE_APP_ID paths name the same executable (the kernel's
    /// rule: file identity); `AppId.pathsOnly` compares paths only.
    public let appIdentity: AppId.IdentityLookup

    public init(appIdentity: @escaping AppId.IdentityLookup = AppId.statIdentity) {
        self.appIdentity = appIdentity
        defaultSession = SessionHandle(id: 0)
        sessions[defaultSession] = SessionState(flags: [], name: "default")
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
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
        try locked {
            guard let st = sessions[s] else { throw FWPError(.invalidParameter, "\(s) is not open") }
            guard s != defaultSession else { throw FWPError(.invalidParameter, "the default session cannot be closed") }
            if st.txn != nil, writeOwner == s { writeOwner = nil }
            sessions[s] = nil
            if st.flags.contains(.dynamic) {
                var work = committed
                removeDynamicObjects(of: s, in: &work)
                committed = work
            }
        }
    }

    private func removeDynamicObjects(of s: SessionHandle, in work: inout Store) {
        for (k, f) in work.filters where f.lifetime == .dynamic(s) {
            notifyDelete(f.object)
            work.filters[k] = nil
        }
        for (k, o) in work.contexts where o.lifetime == .dynamic(s) { work.contexts[k] = nil }
        for (k, o) in work.callouts where o.lifetime == .dynamic(s) { work.callouts[k] = nil }
        for (k, o) in work.sublayers where o.lifetime == .dynamic(s) { work.sublayers[k] = nil }
        for (k, o) in work.providers where o.lifetime == .dynamic(s) { work.providers[k] = nil }
    }

    /// Simulates a BFE/daemon restart: every session ends, only persistent (and built-in) objects
    /// survive (R8.3). Persistent filters whose provider names a service that is not in
    /// `autoStartServices` come back DISABLED, and so does that provider (R8.8, Object
    /// Management reading).
    public func restart(autoStartServices: Set<String> = []) {
        locked {
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
            committed = w
        }
    }

    // MARK: Transactions

    /// FwpmTransactionBegin0 (R8.11). lfp never waits for the transaction lock: when another
    /// session holds a read/write transaction, Begin fails at once with FWP_E_TIMEOUT.
    public func beginTransaction(_ s: SessionHandle? = nil, readOnly: Bool = false) throws {
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            if st.txn != nil { throw FWPError(.txnInProgress, "\(h) already has a transaction in progress") }
            if !readOnly {
                if let o = writeOwner, o != h { throw FWPError(.timeout, "another session (\(o)) holds the transaction lock") }
                writeOwner = h
            }
            st.txn = Txn(readOnly: readOnly, working: committed)
            sessions[h] = st
        }
    }

    /// FwpmTransactionCommit0.
    public func commitTransaction(_ s: SessionHandle? = nil) throws {
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            guard let txn = st.txn else { throw FWPError(.noTxnInProgress, "\(h) has no transaction to commit") }
            if !txn.readOnly {
                committed = txn.working
                writeOwner = nil
            }
            st.txn = nil
            sessions[h] = st
        }
    }

    /// FwpmTransactionAbort0.
    public func abortTransaction(_ s: SessionHandle? = nil) throws {
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            guard let txn = st.txn else { throw FWPError(.noTxnInProgress, "\(h) has no transaction to abort") }
            if !txn.readOnly { writeOwner = nil }
            st.txn = nil
            sessions[h] = st
        }
    }

    /// Runs a write in the session's transaction (explicit or implicit). The store is only
    /// replaced when `body` succeeds, so a failing call changes nothing and does not poison an
    /// explicit transaction (R4.17, R8.12).
    private func write<R>(_ s: SessionHandle?, _ body: (inout Store, SessionHandle, SessionState) throws -> R) throws -> R {
        try locked {
            let h = s ?? defaultSession
            guard let st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            if let txn = st.txn {
                if txn.readOnly { throw FWPError(.incompatibleTxn, "write inside a read-only transaction (FWPM_TXN_READ_ONLY)") }
                var work = txn.working
                let r = try body(&work, h, st)
                sessions[h]!.txn!.working = work
                return r
            }
            if let o = writeOwner, o != h { throw FWPError(.timeout, "another session (\(o)) holds the transaction lock") }
            var work = committed
            let r = try body(&work, h, st)
            committed = work
            return r
        }
    }

    /// The store a read in session `s` sees (its transaction's working copy, else committed).
    private func view(_ s: SessionHandle?) -> Store {
        locked {
            if let h = s, let txn = sessions[h]?.txn { return txn.working }
            return committed
        }
    }

    private func lifetime(for flagsPersistent: Bool, session h: SessionHandle, _ st: SessionState) -> ObjectLifetime {
        if st.flags.contains(.dynamic) { return .dynamic(h) }
        return flagsPersistent ? .persistent : .staticObject
    }

    /// R4.14: may an object of lifetime `a` (owned by provider `aProvider`) reference `b`?
    private func checkReference(_ a: ObjectLifetime, _ aProvider: UUID?, to b: ObjectLifetime, _ bProvider: UUID?, what: String) throws {
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
    private func admit(persistent: Bool, providerKey: UUID?, _ w: Store, _ h: SessionHandle, _ st: SessionState) throws -> ObjectLifetime {
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

    private func checkName(_ d: DisplayData, _ what: String) throws {
        guard let n = d.name, !n.isEmpty else {
            throw FWPError(.nullDisplayName, "displayData.name is required")
        }
    }

    // MARK: Adds

    /// FwpmProviderAdd0.
    @discardableResult
    public func addProvider(_ p: Provider, session: SessionHandle? = nil) throws -> UUID {
        try write(session) { w, h, st in try addProvider(p, &w, h, st) }
    }

    private func addProvider(_ p0: Provider, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UUID {
        var p = p0
        try checkName(p.displayData, "provider")
        let known: UInt32 = ObjectFlags.persistent.rawValue | ObjectFlags.disabled.rawValue
        if p.flags.rawValue & ~known != 0 { throw FWPError(.invalidFlags, "unknown provider flags 0x\(String(p.flags.rawValue, radix: 16))") }
        if p.flags.contains(.disabled) { throw FWPError(.invalidFlags, "FWPM_PROVIDER_FLAG_DISABLED is output only", unconfirmedCode: true) }
        if p.providerKey.isZero { p.providerKey = UUID() }
        if w.providers[p.providerKey] != nil { throw FWPError(.alreadyExists, "provider \(p.providerKey.lowerString) already exists") }
        let lt = try admit(persistent: p.flags.contains(.persistent), providerKey: nil, w, h, st)
        w.providers[p.providerKey] = Stored(object: p, lifetime: lt, seq: w.seq())
        return p.providerKey
    }

    /// FwpmSubLayerAdd0.
    @discardableResult
    public func addSublayer(_ s: Sublayer, session: SessionHandle? = nil) throws -> UUID {
        try write(session) { w, h, st in try addSublayer(s, &w, h, st) }
    }

    private func addSublayer(_ s0: Sublayer, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UUID {
        var s = s0
        try checkName(s.displayData, "sublayer")
        if s.flags.rawValue & ~ObjectFlags.persistent.rawValue != 0 {
            throw FWPError(.invalidFlags, "unknown sublayer flags 0x\(String(s.flags.rawValue, radix: 16))")
        }
        if s.subLayerKey.isZero { s.subLayerKey = UUID() }
        if w.sublayers[s.subLayerKey]?.lifetime == .builtIn {
            throw FWPError(.builtinObject, "\(s.subLayerKey.lowerString) is a built-in sublayer")
        }
        if w.sublayers[s.subLayerKey] != nil { throw FWPError(.alreadyExists, "sublayer \(s.subLayerKey.lowerString) already exists") }
        let lt = try admit(persistent: s.flags.contains(.persistent), providerKey: s.providerKey, w, h, st)
        if w.sublayers.count >= 65536 { throw FWPError(.tooManySublayers, "too many sublayers", unconfirmedCode: true) }
        w.sublayers[s.subLayerKey] = Stored(object: s, lifetime: lt, seq: w.seq())
        return s.subLayerKey
    }

    /// FwpmCalloutAdd0; returns the runtime calloutId.
    @discardableResult
    public func addCallout(_ c: CalloutObject, session: SessionHandle? = nil) throws -> UInt32 {
        try write(session) { w, h, st in try addCallout(c, &w, h, st) }
    }

    private func addCallout(_ c0: CalloutObject, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UInt32 {
        var c = c0
        try checkName(c.displayData, "callout")
        let known = CalloutFlags.persistent.rawValue | CalloutFlags.usesProviderContext.rawValue
        if c.flags.contains(.registered) { throw FWPError(.invalidFlags, "FWPM_CALLOUT_FLAG_REGISTERED is output only") }
        if c.flags.rawValue & ~known != 0 { throw FWPError(.invalidFlags, "unknown callout flags 0x\(String(c.flags.rawValue, radix: 16))") }
        if c.calloutKey.isZero { c.calloutKey = UUID() }
        if w.callouts[c.calloutKey] != nil { throw FWPError(.alreadyExists, "callout \(c.calloutKey.lowerString) already exists") }
        let lt = try admit(persistent: c.flags.contains(.persistent), providerKey: c.providerKey, w, h, st)
        c.calloutId = w.nextCalloutId
        w.nextCalloutId += 1
        w.callouts[c.calloutKey] = Stored(object: c, lifetime: lt, seq: w.seq())
        return c.calloutId
    }

    /// FwpmProviderContextAdd0; returns the runtime id.
    @discardableResult
    public func addProviderContext(_ c: ProviderContext, session: SessionHandle? = nil) throws -> UInt64 {
        try write(session) { w, h, st in try addProviderContext(c, &w, h, st) }
    }

    private func addProviderContext(_ c0: ProviderContext, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UInt64 {
        var c = c0
        try checkName(c.displayData, "provider context")
        if c.flags.rawValue & ~ObjectFlags.persistent.rawValue != 0 {
            throw FWPError(.invalidFlags, "unknown provider context flags 0x\(String(c.flags.rawValue, radix: 16))")
        }
        if c.providerContextKey.isZero { c.providerContextKey = UUID() }
        if w.contexts[c.providerContextKey] != nil {
            throw FWPError(.alreadyExists, "provider context \(c.providerContextKey.lowerString) already exists")
        }
        let lt = try admit(persistent: c.flags.contains(.persistent), providerKey: c.providerKey, w, h, st)
        c.providerContextId = w.nextContextId
        w.nextContextId += 1
        w.contexts[c.providerContextKey] = Stored(object: c, lifetime: lt, seq: w.seq())
        return c.providerContextId
    }

    /// FwpmFilterAdd0; returns the new filterId. Validation order (first failure wins): name,
    /// flags, key, action, sublayer, provider, callout, provider context, weight, conditions,
    /// lifetimes, the callout's notifyFn.
    @discardableResult
    public func addFilter(_ f: Filter, session: SessionHandle? = nil) throws -> UInt64 {
        try write(session) { w, h, st in try addFilter(f, &w, h, st).filterId }
    }

    private func addFilter(_ f0: Filter, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> Filter {
        var f = f0
        try checkName(f.displayData, "filter")
        // Flags (R4.4-R4.7).
        let known: UInt32 = 0x7F
        if f.flags.rawValue & ~known != 0 {
            throw FWPError(.invalidFlags, "unknown filter flags 0x\(String(f.flags.rawValue & ~known, radix: 16))")
        }
        if f.flags.contains(.disabled) {
            throw FWPError(.invalidFlags, "FWPM_FILTER_FLAG_DISABLED cannot be set on add (BFE reports it)", unconfirmedCode: true)
        }
        if f.flags.contains(.persistent) && f.flags.contains(.bootTime) {
            throw FWPError(.invalidFlags, "FWPM_FILTER_FLAG_PERSISTENT and FWPM_FILTER_FLAG_BOOTTIME cannot be combined", unconfirmedCode: true)
        }
        if f.flags.contains(.permitIfCalloutUnregistered)
            && f.action.type != .calloutTerminating && f.action.type != .calloutUnknown
        {
            throw FWPError(
                .invalidFlags,
                "FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED needs FWP_ACTION_CALLOUT_TERMINATING or FWP_ACTION_CALLOUT_UNKNOWN, not \(f.action.type.name)",
                unconfirmedCode: true)
        }
        if st.flags.contains(.dynamic) && (f.flags.contains(.persistent) || f.flags.contains(.bootTime)) {
            throw FWPError(.dynamicSessionInProgress, "a dynamic session cannot add persistent or boot-time filters", unconfirmedCode: true)
        }
        // Key (R4.2).
        if f.filterKey.isZero { f.filterKey = UUID() }
        if w.filters[f.filterKey] != nil { throw FWPError(.alreadyExists, "filter \(f.filterKey.lowerString) already exists") }
        // Action (R1.8, R4.16).
        guard f.action.type.isFilterAction else {
            throw FWPError(.invalidActionType, "\(f.action.type.name) is not a filter action")
        }
        // Sublayer (R4.9, R4.10).
        if f.subLayerKey.isZero { f.subLayerKey = f.layerKey.defaultSubLayerKey }
        guard let sl = w.sublayers[f.subLayerKey] else {
            throw FWPError(.sublayerNotFound, "sublayer \(f.subLayerKey.lowerString) does not exist")
        }
        let lt: ObjectLifetime =
            st.flags.contains(.dynamic)
            ? .dynamic(h)
            : ((f.flags.contains(.persistent) || f.flags.contains(.bootTime)) ? .persistent : .staticObject)
        var provider: Stored<Provider>?
        if let pk = f.providerKey {
            guard let p = w.providers[pk] else { throw FWPError(.providerNotFound, "provider \(pk.lowerString) does not exist") }
            provider = p
        }
        // Callout (R4.10-R4.12).
        var callout: Stored<CalloutObject>?
        if f.action.type.isCallout {
            guard let ck = f.action.calloutKey else {
                throw FWPError(.nullPointer, "\(f.action.type.name) needs action.calloutKey")
            }
            guard let c = w.callouts[ck] else {
                throw FWPError(.calloutNotFound, "callout \(ck.lowerString) has no FWPM_CALLOUT0 object (FwpmCalloutAdd0)")
            }
            guard c.object.applicableLayer == f.layerKey else {
                throw FWPError(
                    .incompatibleLayer, "callout \(ck.lowerString) applies to \(c.object.applicableLayer.name), the filter is at \(f.layerKey.name)",
                    unconfirmedCode: true)
            }
            callout = c
        } else {
            f.action.calloutKey = nil
        }
        // Provider context (R8.10).
        var context: Stored<ProviderContext>?
        if f.flags.contains(.hasProviderContext) {
            guard let ck = f.providerContextKey else {
                throw FWPError(.nullPointer, "FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT needs providerContextKey")
            }
            guard let c = w.contexts[ck] else {
                throw FWPError(.providerContextNotFound, "provider context \(ck.lowerString) does not exist")
            }
            context = c
            f.rawContext = 0
        } else if f.providerContextKey != nil {
            throw FWPError(.invalidFlags, "providerContextKey needs FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT", unconfirmedCode: true)
        }
        // Weight (R2.2, R2.6) and conditions (R3.*).
        let ew = try FilterWeight.effectiveWeight(f.weight, conditions: f.filterCondition, layer: f.layerKey)
        for (i, c) in f.filterCondition.enumerated() {
            do { try c.validate(at: f.layerKey) } catch let e as FWPError { throw e.prefixed("filterCondition[\(i)]: ") }
        }
        // Lifetimes (R4.8, R4.14).
        try checkReference(lt, f.providerKey, to: sl.lifetime, sl.object.providerKey, what: "sublayer")
        if let p = provider { try checkReference(lt, f.providerKey, to: p.lifetime, nil, what: "provider") }
        if let c = callout {
            if (f.flags.contains(.persistent) || f.flags.contains(.bootTime)) && !c.object.flags.contains(.persistent) {
                throw FWPError(.lifetimeMismatch, "a persistent or boot-time filter may only use a callout added with FWPM_CALLOUT_FLAG_PERSISTENT")
            }
            try checkReference(lt, f.providerKey, to: c.lifetime, c.object.providerKey, what: "callout")
        }
        if let c = context { try checkReference(lt, f.providerKey, to: c.lifetime, c.object.providerKey, what: "provider context") }
        f.effectiveWeight = ew
        f.filterId = w.nextFilterId
        // notifyFn of a registered callout may veto the add (R4.13, R5.9).
        if let ck = f.action.calloutKey, let impl = locked({ registry[ck] }) {
            if !impl.notify(.addFilter, filterKey: f.filterKey, filter: f) {
                throw FWPError(.calloutNotificationFailed, "callout \(ck.lowerString) refused FWPS_CALLOUT_NOTIFY_ADD_FILTER")
            }
        }
        w.nextFilterId += 1
        w.filters[f.filterKey] = Stored(object: f, lifetime: lt, seq: w.seq())
        return f
    }

    // MARK: Deletes

    private func checkDelete(_ lt: ObjectLifetime, _ h: SessionHandle, _ st: SessionState, what: String) throws {
        if lt == .builtIn { throw FWPError(.builtinObject, "\(what) is built in") }
        if st.flags.contains(.dynamic) {
            switch lt {
            case .dynamic(let o) where o == h: return
            case .dynamic: throw FWPError(.wrongSession, "\(what) belongs to another dynamic session")
            default: throw FWPError(.dynamicSessionInProgress, "a dynamic session can only delete its own objects; \(what) is \(lt)")
            }
        }
    }

    private func notifyDelete(_ f: Filter) {
        if let ck = f.action.calloutKey, let impl = registry[ck] {
            _ = impl.notify(.deleteFilter, filterKey: nil, filter: f)  // status ignored (R5.9)
        }
    }

    /// FwpmFilterDeleteByKey0.
    public func deleteFilter(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let f = w.filters[key] else { throw FWPError(.filterNotFound, "filter \(key.lowerString) does not exist") }
            try checkDelete(f.lifetime, h, st, what: "filter \(key.lowerString)")
            w.filters[key] = nil
            notifyDelete(f.object)
        }
    }

    /// FwpmFilterDeleteById0.
    public func deleteFilter(id: UInt64, session: SessionHandle? = nil) throws {
        let s = view(session)
        guard let f = s.filter(id: id) else { throw FWPError(.filterNotFound, "no filter has id \(id)") }
        try deleteFilter(key: f.object.filterKey, session: session)
    }

    /// FwpmSubLayerDeleteByKey0.
    public func deleteSublayer(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let s = w.sublayers[key] else { throw FWPError(.sublayerNotFound, "sublayer \(key.lowerString) does not exist") }
            try checkDelete(s.lifetime, h, st, what: "sublayer \(key.lowerString)")
            if w.filters.values.contains(where: { $0.object.subLayerKey == key }) {
                throw FWPError(.inUse, "sublayer \(key.lowerString) still holds filters")
            }
            w.sublayers[key] = nil
        }
    }

    /// FwpmProviderDeleteByKey0.
    public func deleteProvider(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let p = w.providers[key] else { throw FWPError(.providerNotFound, "provider \(key.lowerString) does not exist") }
            try checkDelete(p.lifetime, h, st, what: "provider \(key.lowerString)")
            let used =
                w.filters.values.contains { $0.object.providerKey == key }
                || w.sublayers.values.contains { $0.object.providerKey == key }
                || w.callouts.values.contains { $0.object.providerKey == key }
                || w.contexts.values.contains { $0.object.providerKey == key }
            if used { throw FWPError(.inUse, "provider \(key.lowerString) is still referenced") }
            w.providers[key] = nil
        }
    }

    /// FwpmCalloutDeleteByKey0 (R5.4).
    public func deleteCallout(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let c = w.callouts[key] else { throw FWPError(.calloutNotFound, "callout \(key.lowerString) does not exist") }
            try checkDelete(c.lifetime, h, st, what: "callout \(key.lowerString)")
            if w.filters.values.contains(where: { $0.object.action.calloutKey == key }) {
                throw FWPError(.inUse, "callout \(key.lowerString) is still used by filters")
            }
            w.callouts[key] = nil
        }
    }

    /// FwpmCalloutDeleteById0.
    public func deleteCallout(id: UInt32, session: SessionHandle? = nil) throws {
        guard let c = view(session).callouts.values.first(where: { $0.object.calloutId == id }) else {
            throw FWPError(.calloutNotFound, "no callout has id \(id)")
        }
        try deleteCallout(key: c.object.calloutKey, session: session)
    }

    /// FwpmProviderContextDeleteByKey0.
    public func deleteProviderContext(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let c = w.contexts[key] else {
                throw FWPError(.providerContextNotFound, "provider context \(key.lowerString) does not exist")
            }
            try checkDelete(c.lifetime, h, st, what: "provider context \(key.lowerString)")
            if w.filters.values.contains(where: { $0.object.providerContextKey == key }) {
                throw FWPError(.inUse, "provider context \(key.lowerString) is still used by filters")
            }
            w.contexts[key] = nil
        }
    }

    /// FwpmProviderContextDeleteById0.
    public func deleteProviderContext(id: UInt64, session: SessionHandle? = nil) throws {
        guard let c = view(session).contexts.values.first(where: { $0.object.providerContextId == id }) else {
            throw FWPError(.providerContextNotFound, "no provider context has id \(id)")
        }
        try deleteProviderContext(key: c.object.providerContextKey, session: session)
    }

    // MARK: Gets

    public func filter(key: UUID, session: SessionHandle? = nil) throws -> Filter {
        guard let f = view(session).filters[key] else { throw FWPError(.filterNotFound, "filter \(key.lowerString) does not exist") }
        return f.object
    }

    public func filter(id: UInt64, session: SessionHandle? = nil) throws -> Filter {
        guard let f = view(session).filter(id: id) else { throw FWPError(.filterNotFound, "no filter has id \(id)") }
        return f.object
    }

    public func sublayer(key: UUID, session: SessionHandle? = nil) throws -> Sublayer {
        guard let s = view(session).sublayers[key] else { throw FWPError(.sublayerNotFound, "sublayer \(key.lowerString) does not exist") }
        return s.object
    }

    public func provider(key: UUID, session: SessionHandle? = nil) throws -> Provider {
        guard let p = view(session).providers[key] else { throw FWPError(.providerNotFound, "provider \(key.lowerString) does not exist") }
        return p.object
    }

    /// FwpmCalloutGetByKey0; `flags` includes FWPM_CALLOUT_FLAG_REGISTERED when a runtime callout is registered.
    public func callout(key: UUID, session: SessionHandle? = nil) throws -> CalloutObject {
        guard var c = view(session).callouts[key]?.object else { throw FWPError(.calloutNotFound, "callout \(key.lowerString) does not exist") }
        if isRegistered(key) { c.flags.insert(.registered) }
        return c
    }

    public func callout(id: UInt32, session: SessionHandle? = nil) throws -> CalloutObject {
        guard let c = view(session).callouts.values.first(where: { $0.object.calloutId == id }) else {
            throw FWPError(.calloutNotFound, "no callout has id \(id)")
        }
        return try callout(key: c.object.calloutKey, session: session)
    }

    public func providerContext(key: UUID, session: SessionHandle? = nil) throws -> ProviderContext {
        guard let c = view(session).contexts[key] else {
            throw FWPError(.providerContextNotFound, "provider context \(key.lowerString) does not exist")
        }
        return c.object
    }

    /// FWPM_LAYER0-like description of a layer.
    public func layerDefaultSubLayerKey(_ layer: Layer) -> UUID { layer.defaultSubLayerKey }

    /// The lifetime BFE recorded for an object key (any type), nil when unknown.
    public func lifetime(ofObject key: UUID, session: SessionHandle? = nil) -> ObjectLifetime? {
        let s = view(session)
        return s.filters[key]?.lifetime ?? s.sublayers[key]?.lifetime ?? s.providers[key]?.lifetime
            ?? s.callouts[key]?.lifetime ?? s.contexts[key]?.lifetime
    }

    // MARK: Enumeration

    public func providers(session: SessionHandle? = nil) -> [Provider] {
        view(session).providers.values.sorted { $0.seq < $1.seq }.map(\.object)
    }

    /// Sublayers (built-in ones included), in creation order.
    public func sublayers(session: SessionHandle? = nil) -> [Sublayer] {
        view(session).sublayers.values.sorted { $0.seq < $1.seq }.map(\.object)
    }

    public func callouts(session: SessionHandle? = nil) -> [CalloutObject] {
        view(session).callouts.values.sorted { $0.seq < $1.seq }.map {
            var c = $0.object
            if isRegistered(c.calloutKey) { c.flags.insert(.registered) }
            return c
        }
    }

    public func providerContexts(session: SessionHandle? = nil) -> [ProviderContext] {
        view(session).contexts.values.sorted { $0.seq < $1.seq }.map(\.object)
    }

    /// FwpmFilterEnum0 with a template (R8.15, R8.16). Unsorted results come in filterId order;
    /// SORTED returns arbitration order (sublayer weight, then effectiveWeight, high to low).
    public func filters(matching t: FilterEnumTemplate = FilterEnumTemplate(), session: SessionHandle? = nil) throws -> [Filter] {
        let s = view(session)
        var seen = Set<ConditionField>()
        for c in t.conditions {
            if !seen.insert(c.fieldKey).inserted {
                throw FWPError(.duplicateCondition, "enumeration template conditions must be on distinct fields (\(c.fieldKey.name) repeats)")
            }
        }
        if t.actionMask == ActionType.flagCallout && t.calloutKey == nil {
            throw FWPError(.nullPointer, "actionMask FWP_ACTION_FLAG_CALLOUT needs calloutKey")
        }
        var out = s.filters.values.map(\.object).filter { f in
            if let l = t.layerKey, f.layerKey != l { return false }
            if let p = t.providerKey, f.providerKey != p { return false }
            if f.flags.contains(.disabled) && !t.flags.contains(.includeDisabled) && !t.flags.contains(.bootTimeOnly) { return false }
            if t.flags.contains(.bootTimeOnly) { if !f.flags.contains(.bootTime) { return false } }
            if t.actionMask != 0xFFFF_FFFF && f.action.type.rawValue & t.actionMask == 0 { return false }
            if let ck = t.calloutKey, f.action.calloutKey != ck { return false }
            return EnumMatcher.matches(f, t)
        }
        if t.flags.contains(.sorted) || t.flags.contains(.bestTerminatingMatch) {
            out.sort { a, b in
                let wa = s.sublayers[a.subLayerKey]?.object.weight ?? 0, wb = s.sublayers[b.subLayerKey]?.object.weight ?? 0
                if wa != wb { return wa > wb }
                if a.effectiveWeight != b.effectiveWeight { return a.effectiveWeight > b.effectiveWeight }
                return a.filterId < b.filterId
            }
        } else {
            out.sort { $0.filterId < $1.filterId }
        }
        if t.flags.contains(.bestTerminatingMatch) {
            out = Array(out.filter { $0.action.type.rawValue & ActionType.flagTerminating != 0 }.prefix(1))
        }
        return out
    }

    // MARK: Policy

    /// Adds every object of `policy` in one transaction (providers, sublayers, callouts,
    /// provider contexts, filters, each in document order). All or nothing: on the first error
    /// nothing changes and the error names the object ("filters[3]: ..."). Objects the document
    /// leaves without a key get one derived from their provider and name (DerivedKeys.swift).
    /// Returns the new filterIds in document order.
    @discardableResult
    public func load(_ policy: Policy, session: SessionHandle? = nil) throws -> [UInt64] {
        let policy = policy.withDerivedKeys()  // a keyless object gets the same key on every load
        return try write(session) { w, h, st in
            var ids: [UInt64] = []
            func at<T>(_ path: String, _ body: () throws -> T) throws -> T {
                do { return try body() } catch let e as FWPError {
                    if e.code == .policySyntax { throw e }
                    let members = ["displayData", "filterCondition", "flags", "weight", "action", "subLayerKey", "providerKey", "layerKey"]
                    let startsWithMember = members.contains {
                        e.message.hasPrefix($0 + ".") || e.message.hasPrefix($0 + "[") || e.message.hasPrefix($0 + ":") || e.message.hasPrefix($0 + " ")
                    }
                    throw e.prefixed(startsWithMember ? "\(path)." : "\(path): ")
                }
            }
            for (i, p) in policy.providers.enumerated() { _ = try at("providers[\(i)]") { try addProvider(p, &w, h, st) } }
            for (i, s) in policy.sublayers.enumerated() { _ = try at("sublayers[\(i)]") { try addSublayer(s, &w, h, st) } }
            for (i, c) in policy.callouts.enumerated() { _ = try at("callouts[\(i)]") { try addCallout(c, &w, h, st) } }
            for (i, c) in policy.providerContexts.enumerated() {
                _ = try at("providerContexts[\(i)]") { try addProviderContext(c, &w, h, st) }
            }
            for (i, f) in policy.filters.enumerated() {
                var f = f
                f.filterId = 0
                f.effectiveWeight = 0
                ids.append(try at("filters[\(i)]") { try addFilter(f, &w, h, st).filterId })
            }
            return ids
        }
    }

    /// The committed objects (built-in sublayers left out), including filterId,
    /// effectiveWeight and calloutId; exportable with `exportYAML()`/`exportJSON()`.
    public func snapshot(session: SessionHandle? = nil) -> Policy {
        let s = view(session)
        var p = Policy()
        p.providers = s.providers.values.sorted { $0.seq < $1.seq }.map(\.object)
        p.sublayers = s.sublayers.values.filter { $0.lifetime != .builtIn }.sorted { $0.seq < $1.seq }.map(\.object)
        p.callouts = s.callouts.values.sorted { $0.seq < $1.seq }.map(\.object)
        p.providerContexts = s.contexts.values.sorted { $0.seq < $1.seq }.map(\.object)
        p.filters = s.filters.values.sorted { $0.object.filterId < $1.object.filterId }.map(\.object)
        return p
    }

    // MARK: Net events

    /// FwpmNetEventSubscribe0's session rule (R8.14): refused inside a transaction. Delivering
    /// events is the FilterEngine's business; the model only hands out a subscription id.
    @discardableResult
    public func netEventSubscribe(session: SessionHandle? = nil) throws -> UInt64 {
        try locked {
            let h = session ?? defaultSession
            guard let st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            if st.txn != nil { throw FWPError(.txnInProgress, "FwpmNetEventSubscribe0 cannot run inside a transaction") }
            nextSubscription += 1
            return nextSubscription
        }
    }

    // MARK: Runtime callouts

    /// FwpsCalloutRegister: a second registration of the same key fails with
    /// STATUS_FWP_ALREADY_EXISTS (R5.5). No ADD_FILTER notifications are replayed (R5.10).
    public func registerCallout(_ c: any Callout) throws {
        try locked {
            if registry[c.calloutKey] != nil {
                throw FWPError(.statusAlreadyExists, "callout \(c.calloutKey.lowerString) is already registered")
            }
            registry[c.calloutKey] = c
        }
    }

    /// FwpsCalloutUnregisterByKey: succeeds even while filters reference the callout (R5.7).
    public func unregisterCallout(key: UUID) throws {
        try locked {
            guard registry[key] != nil else {
                throw FWPError(.statusCalloutNotFound, "callout \(key.lowerString) is not registered")
            }
            registry[key] = nil
        }
    }

    public func isRegistered(_ key: UUID) -> Bool { locked { registry[key] != nil } }

    // MARK: Arbitration

    /// What the kernel compiler walks: sublayers that hold at least one enabled filter at
    /// `layer`, highest weight first (ties: creation order, the built-in universal sublayer
    /// first), each with its enabled filters in evaluation order (effectiveWeight high to low,
    /// ties: lower filterId first).
    public func arbitrationOrder(layer: Layer) -> [(sublayer: Sublayer, filters: [Filter])] {
        arbitrationOrder(layer: layer, store: view(nil), includeDisabled: false).map { ($0.sublayer, $0.filters) }
    }

    /// `arbitrationOrder(layer:)` for every layer in one pass over the filters (the compiler
    /// walks them all; one pass per layer copied every filter fourteen times).
    public func arbitrationOrders() -> [Layer: [(sublayer: Sublayer, filters: [Filter])]] {
        let s = view(nil)
        var byLayer: [Layer: [UUID: [Filter]]] = [:]
        for stored in s.filters.values where !stored.object.flags.contains(.disabled) {
            byLayer[stored.object.layerKey, default: [:]][stored.object.subLayerKey, default: []].append(stored.object)
        }
        var out: [Layer: [(sublayer: Sublayer, filters: [Filter])]] = [:]
        for (layer, bySub) in byLayer {
            let subs = s.sublayers.values.filter { bySub[$0.object.subLayerKey] != nil }.sorted { a, b in
                if a.object.weight != b.object.weight { return a.object.weight > b.object.weight }
                return a.seq < b.seq
            }
            out[layer] = subs.map { sl in
                let fs = bySub[sl.object.subLayerKey]!.sorted { a, b in
                    if a.effectiveWeight != b.effectiveWeight { return a.effectiveWeight > b.effectiveWeight }
                    return a.filterId < b.filterId
                }
                return (sl.object, fs)
            }
        }
        return out
    }

    private func arbitrationOrder(layer: Layer, store s: Store, includeDisabled: Bool) -> [(sublayer: Sublayer, filters: [Filter])] {
        var bySub: [UUID: [Filter]] = [:]
        for f in s.filters.values.map(\.object) where f.layerKey == layer {
            if f.flags.contains(.disabled) && !includeDisabled { continue }
            bySub[f.subLayerKey, default: []].append(f)
        }
        let subs = s.sublayers.values.filter { bySub[$0.object.subLayerKey] != nil }.sorted { a, b in
            if a.object.weight != b.object.weight { return a.object.weight > b.object.weight }
            return a.seq < b.seq
        }
        return subs.map { sl in
            let fs = bySub[sl.object.subLayerKey]!.sorted { a, b in
                if a.effectiveWeight != b.effectiveWeight { return a.effectiveWeight > b.effectiveWeight }
                return a.filterId < b.filterId
            }
            return (sl.object, fs)
        }
    }

    /// Computes WFP's verdict for `values` at `layer` (rule book §1) with the full trace.
    public func classify(layer: Layer, values: IncomingValues) -> ClassifyResult {
        locked {
            let store = committed
            let vals = values.normalized(layer: layer)
            let apps = AppIdentityCache(appIdentity)
            var result = ClassifyResult(
                layer: layer, actionType: .permit, filterId: 0, filterKey: nil, filterName: nil,
                subLayerKey: nil, subLayerName: nil, hard: false, veto: false, absorb: false,
                calloutInvocations: [:], trace: [])
            var decided: ActionType? = nil
            var right = true  // FWPS_RIGHT_ACTION_WRITE held
            func decide(_ a: ActionType, _ f: Filter, _ sl: Sublayer, absorb: Bool) {
                decided = a
                result.filterId = f.filterId
                result.filterKey = f.filterKey
                result.filterName = f.displayData.name
                result.subLayerKey = sl.subLayerKey
                result.subLayerName = sl.displayData.name
                result.absorb = absorb && a == .block
            }
            let order = classifyOrder[layer] ?? arbitrationOrder(layer: layer, store: store, includeDisabled: true)
            classifyOrder[layer] = order
            for (sl, filters) in order {
                var st = SublayerTrace(
                    subLayerKey: sl.subLayerKey, subLayerName: sl.displayData.name ?? "",
                    weight: sl.weight, entries: [], result: nil)
                var terminated = false
                for f in filters {
                    var e = TraceEntry(
                        filterId: f.filterId, filterKey: f.filterKey, filterName: f.name,
                        effectiveWeight: f.effectiveWeight, action: f.action.type,
                        calloutKey: f.action.calloutKey, outcome: .skipped, calloutResult: nil,
                        effectiveAction: nil, rightBefore: right, rightAfter: right, note: "")
                    defer { e.rightAfter = right; st.entries.append(e) }
                    if case .uint8(let k) = f.weight { e.weightRange = k }
                    if terminated { e.note = "an earlier filter of this sublayer terminated it"; continue }
                    if f.flags.contains(.disabled) { e.outcome = .disabled; continue }
                    if let failed = ConditionMatcher.firstFailure(f.filterCondition, vals, apps: apps) {
                        e.outcome = .notMatched
                        e.failedCondition = failed
                        continue
                    }

                    // What this filter amounts to.
                    var act: ActionType
                    var clears = false
                    var absorb = false
                    var calloutWroteBlock = false
                    switch f.action.type {
                    case .permit:
                        act = .permit
                        clears = f.flags.contains(.clearActionRight)  // R1.14
                    case .block:
                        act = .block
                        clears = true  // static block is hard (R1.13)
                    default:
                        guard let ck = f.action.calloutKey, let impl = registry[ck] else {
                            // R5.6: callout not registered.
                            if f.action.type == .calloutInspection {
                                e.outcome = .calloutMissingSkipped
                                e.note = "callout not registered: inspection filter ignored"
                                continue
                            }
                            if f.flags.contains(.permitIfCalloutUnregistered) {
                                act = .permit
                                clears = f.flags.contains(.clearActionRight)  // soft unless CLEAR_ACTION_RIGHT (Q7)
                                e.note = "callout not registered: PERMIT_IF_CALLOUT_UNREGISTERED stands in a permit"
                            } else {
                                act = .block
                                clears = true  // hard, like a static block (Q7)
                                e.note = "callout not registered: stands in a block"
                            }
                            e.effectiveAction = act
                            break
                        }
                        let ctx = f.flags.contains(.hasProviderContext) ? f.providerContextKey.flatMap { store.contexts[$0]?.object } : nil
                        let req = CalloutClassifyRequest(
                            layer: layer, values: vals, filter: f, providerContext: ctx,
                            rights: right ? .actionWrite : [], currentAction: decided)
                        let out = impl.classify(req)
                        result.calloutInvocations[ck, default: 0] += 1
                        e.calloutResult = out.actionType
                        absorb = out.flags.contains(.absorb)
                        switch f.action.type {
                        case .calloutInspection:
                            act = .continue  // R1.9: always CONTINUE
                        case .calloutTerminating:
                            if right {
                                act = (out.actionType == .permit || out.actionType == .block) ? out.actionType! : .block
                            } else {
                                act = out.actionType == .block ? .block : .continue
                            }
                        default:  // CALLOUT_UNKNOWN
                            act = (out.actionType == .permit || out.actionType == .block) ? out.actionType! : .continue
                        }
                        calloutWroteBlock = out.actionType == .block
                        clears = right && !out.rights.contains(.actionWrite)
                        if !right && f.action.type == .calloutTerminating && act == .continue {
                            e.note = "invoked without the write right and wrote no BLOCK: nothing changes"
                        }
                    }
                    e.effectiveAction = act
                    if act == .continue {
                        e.outcome = .continued
                        continue
                    }
                    terminated = true
                    st.result = act
                    if right {
                        decide(act, f, sl, absorb: absorb)
                        if clears { right = false }
                        e.outcome = .decided
                    } else if act == .block && calloutWroteBlock && f.action.type.isCallout && decided != .block {
                        // R1.16: veto of a hard permit.
                        decide(.block, f, sl, absorb: absorb)
                        result.veto = true
                        e.outcome = .veto
                        e.note = "callout blocked without the write right: veto"
                    } else {
                        e.outcome = .ignored
                        if e.note.isEmpty { e.note = "the write right is gone: the decision cannot change (R1.15/R1.17)" }
                    }
                }
                result.trace.append(st)
            }
            result.actionType = decided ?? .permit
            if decided == nil {
                result.filterId = 0
            }
            result.hard = !right
            return result
        }
    }
}

// MARK: - Enumeration template matching

enum EnumMatcher {
    /// OVERLAPPING: for each template condition, the filter's conditions on that field (if any)
    /// can match some value the template allows. FULLY_CONTAINED: every value the template allows
    /// matches the filter (fields the template leaves open must be unconstrained in the filter).
    static func matches(_ f: Filter, _ t: FilterEnumTemplate) -> Bool {
        let groups = ConditionMatcher.groups(f.filterCondition)
        for tc in t.conditions {
            guard let g = groups.first(where: { $0.field == tc.fieldKey }) else { continue }
            let point = pointValue(tc)
            if let p = point {
                if !g.conditions.contains(where: { ConditionMatcher.matches($0, p) }) { return false }
            } else if t.enumType == .overlapping {
                continue  // intervals: assume overlap (documented approximation)
            } else {
                return false
            }
        }
        if t.enumType == .fullyContained {
            for g in groups where !t.conditions.contains(where: { $0.fieldKey == g.field }) { return false }
        }
        return true
    }

    /// The single incoming value an EQUAL template condition stands for.
    static func pointValue(_ c: FilterCondition) -> IncomingValue? {
        guard c.matchType == .equal else { return nil }
        switch c.conditionValue {
        case .uint8(let v): return .uint8(v)
        case .uint16(let v): return .uint16(v)
        case .uint32(let v): return .uint32(v)
        case .uint64(let v): return .uint64(v)
        case .byteArray16(let b): return .byteArray16(b)
        case .byteBlob(let b): return .byteBlob(b)
        case .v4AddrMask(let a, let m) where m == 0xFFFF_FFFF: return .uint32(a)
        case .v6AddrMask(let a, let p) where p == 128: return .byteArray16(a)
        default: return nil
        }
    }
}
