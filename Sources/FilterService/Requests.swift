// One request at a time, on the engine queue: the FWPM call it names, in the client's session.

import FilterEngine
import FilterModel
import Foundation
import PolicyCompiler
import ServiceProtocol

extension FilterService {
    /// A new connection (its peer already checked).
    func connect(peer: Peer, send: @escaping @Sendable (Reply) -> Void, writable: @escaping @Sendable () -> Bool) -> UInt64 {
        queue.sync {
            let id = nextClient
            nextClient += 1
            clients[id] = ClientState(id: id, peer: peer, send: send, writable: writable)
            audit.info("connected", metadata: ["client": "\(id)", "peer": "\(peer)"])
            return id
        }
    }

    /// The connection closed, however: FwpmEngineClose0 (its transaction aborts, a dynamic
    /// session's objects go, R8.1, R8.2).
    func disconnect(_ id: UInt64) {
        queue.async { [self] in
            guard let c = clients.removeValue(forKey: id) else { return }
            if c.netEvents { pump.withLockedValue { $0.subscribers -= 1 } }
            parked.removeAll { $0.client == id }
            calloutHostGone(id)
            if let s = c.session {
                do {
                    try bfe.closeSession(s)
                } catch {
                    logger.error("closing a session failed", metadata: ["client": "\(id)", "error": "\(error)"])
                }
            }
            audit.info("disconnected", metadata: ["client": "\(id)", "peer": "\(c.peer)"])
            retryParked()
        }
    }

    /// A frame that is not a request: an error reply, and the connection stays.
    func malformed(_ id: UInt64, _ why: String) {
        queue.async { [self] in
            guard let c = clients[id] else { return }
            audit.warning("malformed request", metadata: ["client": "\(id)", "peer": "\(c.peer)", "error": "\(why)"])
            var r = Reply(id: 0)
            r.error = WireError(code: "LFP_E_PROTOCOL", message: "malformed request: \(why)")
            c.send(r)
        }
    }

    func receive(_ id: UInt64, _ request: Request) {
        // A callout's answer goes straight to the classification waiting for it, which holds
        // the engine's lock: never through the engine queue.
        if request.op == .calloutAnswer {
            if let inv = request.invocation, let a = request.answer { hosting.withLockedValue { $0.remotes[id] }?.answer(inv, a) }
            return
        }
        queue.async { [self] in
            guard let c = clients[id] else { return }
            switch request.op {
            case .completeOperation, .completeClassify, .answerPrompt, .heldOperations:
                runAsync(c, request)
            default:
                run(c, request, deadline: nil)
            }
        }
    }

    /// Requests answered from the callout dispatcher's queue (a completion classifies again,
    /// which may wait for a callout host): the reply is sent when it is done.
    private func runAsync(_ c: ClientState, _ r: Request) {
        let id = r.id, send = c.send, peer = c.peer, audit = audit
        let done: @Sendable (WireError?) -> Void = { error in
            var reply = Reply(id: id)
            reply.error = error
            send(reply)
            audit.info("\(r.op.rawValue)", metadata: ["client": "\(c.id)", "peer": "\(peer)", "result": "\(error?.code ?? "ok")"])
        }
        switch r.op {
        case .completeOperation:
            guard let cid = r.completionId else { return done(WireError(FWPError(.nullPointer, "completeOperation names no completionId"))) }
            dispatcher.completeOperation(cid, by: c.id, reinject: r.reinject ?? true, answer: r.answer, reply: done)
        case .completeClassify:
            guard let h = r.classifyHandle else { return done(WireError(FWPError(.nullPointer, "completeClassify names no classifyHandle"))) }
            dispatcher.completeClassify(h, answer: r.answer, by: c.id, reply: done)
        case .answerPrompt:
            guard let cid = r.completionId, let a = r.answer?.actionType.flatMap(ActionType.init(name:)), a == .permit || a == .block else {
                return done(WireError(FWPError(.statusInvalidParameter, "answerPrompt needs a completionId and FWP_ACTION_PERMIT or FWP_ACTION_BLOCK")))
            }
            prompt.answer(cid, a, remember: r.remember ?? false, reply: done)
        default:
            dispatcher.summary { held in
                var reply = Reply(id: id)
                reply.held = held
                send(reply)
            }
        }
    }

    /// Runs `request`; a write that meets another session's transaction waits (parked) until
    /// that transaction ends or the session's txnWaitTimeoutInMSec passes (R8.13).
    private func run(_ c: ClientState, _ request: Request, deadline: DispatchTime?) {
        var reply = Reply(id: request.id)
        do {
            try handle(c, request, &reply)
        } catch let e as FWPError where e.code == .timeout && c.waitMs > 0 {
            let due = deadline ?? .now() + .milliseconds(Int(c.waitMs))
            if due > .now() {
                parked.append((c.id, request, due))
                queue.asyncAfter(deadline: due) { [self] in expire(c.id, request.id, due) }
                return
            }
            reply.error = WireError(e)
        } catch {
            reply.error = Self.wireError(error)
        }
        if ![.get, .enumerate, .status, .netEvents, .counters].contains(request.op) {
            audit.info(
                "\(request.op.rawValue)",
                metadata: [
                    "client": "\(c.id)", "peer": "\(c.peer)", "session": "\(c.session.map { "\($0.id)" } ?? "-")",
                    "result": "\(reply.error?.code ?? "ok")",
                ])
        }
        c.send(reply)
        if [.commitTransaction, .abortTransaction].contains(request.op) { retryParked() }
    }

    private func expire(_ client: UInt64, _ requestId: UInt64, _ due: DispatchTime) {
        guard let i = parked.firstIndex(where: { $0.client == client && $0.request.id == requestId && $0.deadline == due }) else { return }
        let p = parked.remove(at: i)
        guard let c = clients[client] else { return }
        var r = Reply(id: p.request.id)
        r.error = WireError(FWPError(.timeout, "another session held the transaction lock for longer than txnWaitTimeoutInMSec (\(c.waitMs) ms)"))
        c.send(r)
    }

    /// After a transaction ends: the parked writes run again, oldest first.
    func retryParked() {
        let waiting = parked
        parked.removeAll()
        for p in waiting {
            guard let c = clients[p.client] else { continue }
            run(c, p.request, deadline: p.deadline)
        }
        policyDirectory?.retryIfWaiting()
    }

    static func wireError(_ error: Error) -> WireError {
        switch error {
        case let e as FWPError: return WireError(e)
        case let e as CompileError: return WireError(code: e.code.name, hresult: e.code.hresult, message: e.message)
        case let e as EngineError: return WireError(code: e.code, message: e.description)
        case let e as WireError: return e
        default: return WireError(code: "LFP_E_KERNEL", message: "\(error)")
        }
    }

    private func session(_ c: ClientState) throws -> SessionHandle {
        guard let s = c.session else { throw WireError(code: "LFP_E_PROTOCOL", message: "open a session first (the open request)") }
        return s
    }

    private func document(_ r: Request) throws -> Policy {
        guard let text = r.objects else { throw FWPError(.nullPointer, "the request has no objects (a policy document)") }
        return try Policy.parse(text, sourceName: r.sourceName ?? "request")
    }

    private func handle(_ c: ClientState, _ r: Request, _ reply: inout Reply) throws {
        switch r.op {
        case .open:
            guard r.protocolVersion == WireProtocol.version else {
                throw WireError(
                    code: "LFP_E_PROTOCOL_VERSION",
                    message: "the client speaks protocol \(r.protocolVersion.map(String.init) ?? "?"), this daemon \(WireProtocol.version)")
            }
            guard c.session == nil else { throw FWPError(.alreadyExists, "this connection already has a session") }
            let flags = SessionFlags(rawValue: r.sessionFlags ?? 0)
            c.session = bfe.openSession(flags: flags, name: r.sessionName ?? "pid \(c.peer.pid)")
            if let w = r.txnWaitTimeoutMs { c.waitMs = w == 0 ? 15_000 : w }
            reply.session = c.session!.id
            reply.protocolVersion = WireProtocol.version
        case .beginTransaction:
            try bfe.beginTransaction(try session(c), readOnly: r.readOnly ?? false)
        case .commitTransaction:
            try bfe.commitTransaction(try session(c))
            reply.generation = generation
        case .abortTransaction:
            try bfe.abortTransaction(try session(c))
        case .add:
            reply.filterIds = try bfe.load(try document(r), session: try session(c))
            reply.generation = generation
        case .delete:
            try delete(r, try session(c))
            reply.generation = generation
        case .get:
            reply.objects = try get(r, try session(c)).exportJSON()
        case .enumerate:
            reply.objects = try enumerate(r, try session(c)).exportJSON()
        case .replace:
            let s = try session(c)
            guard !bfe.inTransaction(s) else { throw FWPError(.txnInProgress, "replace runs its own transaction") }
            let doc = try document(r)
            if r.allowEmpty != true { try doc.requireObjects(sourceName: r.sourceName ?? "request") }
            reply.filterIds = try replaceInTransaction(doc, session: s)
            reply.generation = generation
            retryParked()
        case .check:
            let scratch = try candidate(after: try document(r), session: try session(c))
            _ = try engine.check(scratch.copy(droppingFilters: { $0.flags.contains(.bootTime) }))
        case .diff:
            let s = try session(c)
            let scratch = try candidate(after: try document(r), session: s)
            reply.diff = Self.diff(from: bfe.snapshot(session: s), to: scratch.snapshot())
        case .subscribeNetEvents:
            _ = try bfe.netEventSubscribe(session: try session(c))
            if !c.netEvents { pump.withLockedValue { $0.subscribers += 1 } }
            c.netEvents = true
        case .subscribeChanges:
            _ = try session(c)
            if !clients.values.contains(where: { $0.changes }) { published = Self.changeIndex(bfe.snapshot()) }
            c.changes = true
        case .netEvents:
            (reply.netEvents, reply.netEventText) = history.since(Date(timeIntervalSince1970: r.since ?? 0))
        case .counters:
            reply.counters = pump.withLockedValue { $0.counters }
        case .checkPins:
            reply.repinned = try pins.check()
        case .registerCallout, .unregisterCallout, .flowAssociateContext, .flowRemoveContext, .subscribePrompts:
            try handleCallout(c, r, &reply)
        case .calloutAnswer, .completeOperation, .completeClassify, .answerPrompt, .heldOperations:
            break  // routed before the engine queue (receive)
        case .status:
            let snapshot = bfe.snapshot()
            reply.status = DaemonStatus(
                pid: getpid(), generation: generation, sessions: clients.values.filter { $0.session != nil }.count,
                filters: snapshot.filters.count,
                persistentFilters: snapshot.filters.filter { bfe.lifetime(ofObject: $0.filterKey) == .persistent }.count,
                historyEvents: history.count, database: options.databasePath)
        }
    }
}
