// The FWPM management API over the daemon's socket, with Swift names:
//   FwpmEngineOpen0 -> LFPSession.open, FwpmEngineClose0 -> close,
//   FwpmTransactionBegin0/Commit0/Abort0 -> beginTransaction/commitTransaction/abortTransaction,
//   Fwpm{Provider,SubLayer,Callout,ProviderContext,Filter}Add0 -> add(_:),
//   ...DeleteByKey0/DeleteById0 -> delete*(key:)/(id:), ...GetByKey0/GetById0 -> filter(key:) etc.,
//   ...Enum0 -> filters(matching:), providers(), ...,
//   FwpmNetEventSubscribe0 -> subscribeNetEvents, Fwpm*SubscribeChanges0 -> subscribeChanges,
//   FwpmNetEventEnum0 -> netEvents(since:).
// Errors with a WFP code are thrown as FilterModel's FWPError, so callers match `e.code`.

import FilterModel
import Foundation
import ServiceProtocol

public final class LFPSession: @unchecked Sendable {
    let connection: Connection
    /// The daemon's id of this session.
    public let sessionId: UInt64

    /// FwpmEngineOpen0. `dynamic`: FWPM_SESSION_FLAG_DYNAMIC, whose objects the daemon deletes
    /// when the session ends, including when this process dies. `txnWaitTimeoutMs`: how long a
    /// write waits for another session's transaction (0: 15 s, as WFP).
    public static func open(
        socket: String = WireProtocol.socketPath(), dynamic: Bool = false, name: String? = nil, txnWaitTimeoutMs: UInt32 = 0,
        requestTimeoutSeconds: Int = 600
    ) throws -> LFPSession {
        let c = try Connection(socket: socket, requestTimeout: requestTimeoutSeconds)
        var r = Request(op: .open)
        r.protocolVersion = WireProtocol.version
        r.sessionFlags = dynamic ? SessionFlags.dynamic.rawValue : 0
        r.sessionName = name
        r.txnWaitTimeoutMs = txnWaitTimeoutMs
        do {
            let reply = try Self.check(try c.call(r))
            return LFPSession(connection: c, sessionId: reply.session ?? 0)
        } catch {
            c.close()
            throw error
        }
    }

    /// Callouts this process hosts (CalloutHosting.swift).
    let calloutLock = NSLock()
    var calloutFunctions: [UUID: CalloutFunctions] = [:]
    var calloutIds: [UInt32: UUID] = [:]
    var promptHandler: (@Sendable (PromptRequest?) -> Void)?
    let calloutQueue = DispatchQueue(label: "lfp.client.callouts", attributes: .concurrent)

    init(connection: Connection, sessionId: UInt64) {
        self.connection = connection
        self.sessionId = sessionId
    }

    /// FwpmEngineClose0: the daemon aborts an open transaction and deletes a dynamic session's
    /// objects.
    public func close() { connection.close() }

    deinit { connection.close() }

    static func check(_ reply: Reply) throws -> Reply {
        if let e = reply.error { throw e.fwpError ?? LFPClientError.remote(e) }
        return reply
    }

    @discardableResult
    func call(_ op: RequestOp, _ build: (inout Request) -> Void = { _ in }) throws -> Reply {
        var r = Request(op: op)
        build(&r)
        return try Self.check(try connection.call(r))
    }

    // MARK: transactions

    public func beginTransaction(readOnly: Bool = false) throws { try call(.beginTransaction) { $0.readOnly = readOnly } }
    /// Returns the kernel generation that now enforces the engine.
    @discardableResult
    public func commitTransaction() throws -> UInt64 { try call(.commitTransaction).generation ?? 0 }
    public func abortTransaction() throws { try call(.abortTransaction) }

    // MARK: adds

    /// Adds every object of `policy` (providers, sublayers, callouts, provider contexts, filters),
    /// all or nothing. Returns the new filterIds in document order.
    @discardableResult
    public func add(_ policy: Policy) throws -> [UInt64] {
        try call(.add) { $0.objects = policy.exportJSON() }.filterIds ?? []
    }
    @discardableResult
    public func add(_ f: Filter) throws -> UInt64 { try add(Policy(filters: [f])).first ?? 0 }
    public func add(_ p: Provider) throws { try add(Policy(providers: [p])) }
    public func add(_ s: Sublayer) throws { try add(Policy(sublayers: [s])) }
    public func add(_ c: CalloutObject) throws { try add(Policy(callouts: [c])) }
    public func add(_ c: ProviderContext) throws { try add(Policy(providerContexts: [c])) }

    // MARK: deletes

    func delete(_ kind: ObjectKind, key: UUID? = nil, id: UInt64? = nil) throws {
        try call(.delete) {
            $0.kind = kind
            $0.key = key?.uuidString
            $0.objectId = id
        }
    }
    public func deleteFilter(key: UUID) throws { try delete(.filter, key: key) }
    public func deleteFilter(id: UInt64) throws { try delete(.filter, id: id) }
    public func deleteProvider(key: UUID) throws { try delete(.provider, key: key) }
    public func deleteSublayer(key: UUID) throws { try delete(.sublayer, key: key) }
    public func deleteCallout(key: UUID) throws { try delete(.callout, key: key) }
    public func deleteCallout(id: UInt32) throws { try delete(.callout, id: UInt64(id)) }
    public func deleteProviderContext(key: UUID) throws { try delete(.providerContext, key: key) }
    public func deleteProviderContext(id: UInt64) throws { try delete(.providerContext, id: id) }

    // MARK: gets and enumeration

    func objects(_ reply: Reply) throws -> Policy {
        try Policy.parse(reply.objects ?? "{}", sourceName: "lfp daemon")
    }
    func get(_ kind: ObjectKind, key: UUID? = nil, id: UInt64? = nil) throws -> Policy {
        try objects(
            try call(.get) {
                $0.kind = kind
                $0.key = key?.uuidString
                $0.objectId = id
            })
    }
    public func filter(key: UUID) throws -> Filter { try get(.filter, key: key).filters[0] }
    public func filter(id: UInt64) throws -> Filter { try get(.filter, id: id).filters[0] }
    public func provider(key: UUID) throws -> Provider { try get(.provider, key: key).providers[0] }
    public func sublayer(key: UUID) throws -> Sublayer { try get(.sublayer, key: key).sublayers[0] }
    public func callout(key: UUID) throws -> CalloutObject { try get(.callout, key: key).callouts[0] }
    public func callout(id: UInt32) throws -> CalloutObject { try get(.callout, id: UInt64(id)).callouts[0] }
    public func providerContext(key: UUID) throws -> ProviderContext { try get(.providerContext, key: key).providerContexts[0] }
    public func providerContext(id: UInt64) throws -> ProviderContext { try get(.providerContext, id: id).providerContexts[0] }

    func enumerate(_ kind: ObjectKind, _ t: WireEnumTemplate) throws -> Policy {
        try objects(
            try call(.enumerate) {
                $0.kind = kind
                $0.template = t
            })
    }
    /// FwpmFilterEnum0 with FWPM_FILTER_ENUM_TEMPLATE0 (provider, layer, flags, enumType, callout).
    public func filters(matching t: WireEnumTemplate = WireEnumTemplate()) throws -> [Filter] { try enumerate(.filter, t).filters }
    public func providers() throws -> [Provider] { try enumerate(.provider, WireEnumTemplate()).providers }
    public func sublayers(provider: UUID? = nil) throws -> [Sublayer] {
        try enumerate(.sublayer, WireEnumTemplate(providerKey: provider?.uuidString)).sublayers
    }
    public func callouts(provider: UUID? = nil) throws -> [CalloutObject] {
        try enumerate(.callout, WireEnumTemplate(providerKey: provider?.uuidString)).callouts
    }
    public func providerContexts(provider: UUID? = nil) throws -> [ProviderContext] {
        try enumerate(.providerContext, WireEnumTemplate(providerKey: provider?.uuidString)).providerContexts
    }

    // MARK: documents

    /// `lfp policy load`: one transaction that replaces the objects of the document's providers
    /// (or the provider-less objects, when it has any) with the document's. Returns the new
    /// filterIds and the generation now enforced.
    public func replace(document: String, sourceName: String, allowEmpty: Bool = false) throws -> (filterIds: [UInt64], generation: UInt64) {
        let r = try call(.replace) {
            $0.objects = document
            $0.sourceName = sourceName
            $0.allowEmpty = allowEmpty
        }
        return (r.filterIds ?? [], r.generation ?? 0)
    }

    /// `lfp policy check`: validates and compiles the engine as `replace` would leave it.
    public func check(document: String, sourceName: String) throws {
        try call(.check) {
            $0.objects = document
            $0.sourceName = sourceName
        }
    }

    /// `lfp policy diff`: what `replace` would change.
    public func diff(document: String, sourceName: String) throws -> PolicyDiff {
        try call(.diff) {
            $0.objects = document
            $0.sourceName = sourceName
        }.diff ?? PolicyDiff()
    }

    // MARK: events and changes

    /// A net event as the daemon sends it: the `lfp events --json` object and the line for people.
    public struct NetEvent: Sendable {
        public var json: String
        public var text: String
    }

    /// FwpmNetEventSubscribe0: `handler` gets each event from now on, and nil when the
    /// connection ends.
    public func subscribeNetEvents(_ handler: @escaping @Sendable (NetEvent?) -> Void) throws {
        installPush(events: handler, changes: nil)
        try call(.subscribeNetEvents)
    }

    /// Fwpm*SubscribeChanges0 for every object kind: `handler` gets the adds and deletes of each
    /// commit, and nil when the connection ends.
    public func subscribeChanges(_ handler: @escaping @Sendable ([ObjectChange]?) -> Void) throws {
        installPush(events: nil, changes: handler)
        try call(.subscribeChanges)
    }

    private let pushLock = NSLock()
    private var eventHandler: (@Sendable (NetEvent?) -> Void)?
    private var changeHandler: (@Sendable ([ObjectChange]?) -> Void)?

    private func installPush(events: (@Sendable (NetEvent?) -> Void)?, changes: (@Sendable ([ObjectChange]?) -> Void)?) {
        pushLock.lock()
        if let events { eventHandler = events }
        if let changes { changeHandler = changes }
        pushLock.unlock()
        connection.handler.onPush = { [weak self] reply in
            guard let self else { return }
            self.pushLock.lock()
            let e = self.eventHandler, c = self.changeHandler
            self.pushLock.unlock()
            if reply.id == UInt64.max {
                e?(nil)
                c?(nil)
                return
            }
            let texts = reply.netEventText ?? []
            for (i, json) in (reply.netEvents ?? []).enumerated() { e?(NetEvent(json: json, text: i < texts.count ? texts[i] : json)) }
            if let changes = reply.changes { c?(changes) }
        }
    }

    /// FwpmNetEventEnum0: the daemon's history (drops, and allows when it keeps them), oldest
    /// first.
    public func netEvents(since: Date) throws -> [NetEvent] {
        let r = try call(.netEvents) { $0.since = since.timeIntervalSince1970 }
        let texts = r.netEventText ?? []
        return (r.netEvents ?? []).enumerated().map { NetEvent(json: $1, text: $0 < texts.count ? texts[$0] : $1) }
    }

    /// filterId -> classifications it decided since the daemon started.
    public func counters() throws -> [UInt64: UInt64] {
        Dictionary((try call(.counters).counters ?? []).map { ($0.filterId, $0.hits) }, uniquingKeysWith: +)
    }

    /// Checks lfp's pins now and pins again what went missing; returns those paths.
    @discardableResult
    public func checkPins() throws -> [String] { try call(.checkPins).repinned ?? [] }

    public func status() throws -> DaemonStatus {
        guard let s = try call(.status).status else { throw LFPClientError.connectionLost }
        return s
    }
}
