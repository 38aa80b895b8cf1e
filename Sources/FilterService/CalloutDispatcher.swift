// Held operations, from the kernel's pend event to the verdict (docs/callouts.md):
//
//   1. The kernel classifies to a registered callout's filter, holds the operation and reports
//      it (an event with FWP_ACTION_CALLOUT_TERMINATING).
//   2. The dispatcher runs WFP's arbitration in the engine with the event's incoming values; the
//      callouts answer where WFP would call their classifyFn, with a completion handle.
//   3. A callout that answers at once decides; one that pends (FwpsPendOperation0) keeps the
//      operation held until it calls completeOperation, which runs the classification again as a
//      reauthorization (IS_REAUTHORIZE) that the callout answers from its own state (R6.5).
//   4. The verdict goes to the kernel (HeldOperations.complete) and to the event stream, as the
//      reauthorization's classify event.
//
// Nothing is left hanging: a pend that is not completed within the pend timeout, one whose
// callout host dies, and one the daemon never saw (a lost event, a daemon restart) complete with
// the default verdict, block unless configured otherwise. All of it runs on one serial queue.

import FilterEngine
import FilterModel
import Foundation
import KernelABI
import Logging
import NIOConcurrencyHelpers
import ServiceProtocol

/// An ENDPOINT_CLOSURE indication a callout pended (FwpsPendClassify0): the endpoint's teardown
/// (its RESOURCE_RELEASE and flowDeleteFn calls) waits in `deferred` until completeClassify.
struct ClosureRecord {
    let handle: UInt64
    let cookie: UInt64
    let layer: Layer
    let values: IncomingValues
    let json: String
    let deadline: DispatchTime
    let pendedBy: UUID
    var deferred: [ALEEvent] = []
}

/// One operation the kernel holds and the dispatcher knows.
struct PendRecord {
    let completionId: UInt64
    let key: HeldFlowKey
    let layer: Layer
    let values: IncomingValues
    /// The kernel's event (names filled in), raw and as JSON.
    let event: ALEEvent
    let json: String
    let deadline: DispatchTime
    /// The callout that pended it, once one did.
    var pendedBy: UUID?
}

final class CalloutDispatcher: @unchecked Sendable {
    unowned let service: FilterService
    let queue = DispatchQueue(label: "lfp.daemon.callouts")
    let logger: Logger
    /// Opened at start; nil when the kernel state is not there (then nothing is ever held).
    var held: HeldOperations?
    private let names: EventNames
    /// Queue-owned state.
    private var pends: [UInt64: PendRecord] = [:]
    private var nextCompletion: UInt64 = 1
    private var timer: DispatchSourceTimer?
    private var lastKernelSweep = DispatchTime.now()
    /// Layers whose filters name a registered inspection callout (set at each publish).
    let inspected = NIOLockedValueBox<Set<Layer>>([])
    /// Notification layers (FLOW_ESTABLISHED, ENDPOINT_CLOSURE, RESOURCE_RELEASE) whose filters
    /// name a registered callout: their events go through the callouts.
    let notified = NIOLockedValueBox<Set<Layer>>([])
    /// Pended closure indications by classify handle (queue-owned), and the endpoints whose
    /// teardown waits (read by the event pump).
    private var closures: [UInt64: ClosureRecord] = [:]
    private let heldTeardown = NIOLockedValueBox<Set<UInt64>>([])
    /// Figures for `lfp status` and the benchmark.
    let counts = NIOLockedValueBox<(held: UInt64, completed: UInt64, timedOut: UInt64)>((0, 0, 0))

    init(service: FilterService, logger: Logger) {
        self.service = service
        self.logger = logger
        names = EventNames(engine: service.engine)
    }

    var pendTimeout: DispatchTimeInterval { .milliseconds(Int(service.options.pendTimeoutSeconds * 1000)) }
    var defaultVerdict: ActionType { service.options.pendTimeoutPermits ? .permit : .block }

    /// Open the kernel's held operations, complete the ones a previous daemon left (their
    /// callouts are gone with it), and check deadlines from now on.
    func start() {
        held = try? service.engine.heldOperations()
        queue.sync { sweepKernel(olderThan: nil) }
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100))
        t.setEventHandler { [weak self] in self?.expire() }
        t.resume()
        timer = t
    }

    func stop() { timer?.cancel() }

    /// An event as the callouts see it: its names filled in, its JSON (`lfp events --json`), and
    /// the incoming values it carries at its layer, read back as `lfp classify --from-event`
    /// reads them (one reading for every path into the callouts). Queue-only (EventNames).
    private struct ReadBack {
        let event: ALEEvent
        let layer: Layer
        let json: String
        var values: IncomingValues
    }

    private func readBack(_ raw: ALEEvent) -> ReadBack? {
        let e = names.annotate(raw)
        guard let layer = e.layer, let data = try? FilterService.eventEncoder.encode(e),
            let recorded = try? JSONDecoder().decode(RecordedEvent.self, from: data),
            let values = try? IncomingValues.parse(layer: layer, assignments: recorded.assignments(at: layer))
        else { return nil }
        return ReadBack(event: e, layer: layer, json: String(decoding: data, as: UTF8.self), values: values)
    }

    // MARK: from the kernel

    /// A pend event: classify with the callouts, decide or wait for the callout's completion.
    func kernelHeld(_ raw: ALEEvent) {
        if raw.conditionFlags & UInt32(LFP_FLAG_IS_REAUTHORIZE) != 0 {
            reauthorizeLive(raw)
            return
        }
        queue.async { [self] in
            counts.withLockedValue { $0.held += 1 }
            let key = HeldFlowKey(event: raw)
            guard let rb = readBack(raw) else {
                logger.error("a held operation could not be classified: completing it with the default verdict", metadata: ["flow": "\(key)"])
                complete(key, defaultVerdict, errno: EPERM, filterId: raw.filterId)
                return
            }
            // A held flow classified again (a commit changed the generation meanwhile) is still
            // the same hold: one record, one decision.
            if pends.values.contains(where: { $0.key == key }) { return }
            let id = nextCompletion
            nextCompletion += 1
            var record = PendRecord(
                completionId: id, key: key, layer: rb.layer, values: rb.values, event: rb.event, json: rb.json, deadline: .now() + pendTimeout)
            let (result, pendedBy) = classify(record, reauthorize: false)
            if let pendedBy {
                record.pendedBy = pendedBy
                pends[id] = record
                return
            }
            finish(record, result, reauthorized: false)
        }
    }

    /// A live connection a commit reauthorized whose classification reached a registered
    /// callout (R7.8): the callouts answer at once (pending fails, R6.4; the reason is
    /// POLICY_CHANGE), and a block ends the connection.
    private func reauthorizeLive(_ raw: ALEEvent) {
        queue.async { [self] in
            guard var rb = readBack(raw) else { return }
            let (e, layer) = (rb.event, rb.layer)
            if ConditionField.reauthorizeReason.isAvailable(at: layer) {
                rb.values.values[.reauthorizeReason] = .uint32(0x1)  // FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE
            }
            let ctx = Classification(completionId: nil, event: rb.json)
            let result = Classification.$current.withValue(ctx) {
                service.bfe.classify(layer: layer, values: rb.values, metadata: ClassifyMetadata(endpointHandle: e.transportEndpointHandle))
            }
            guard result.actionType == .block else { return }
            let ended = (try? held?.end(cookie: e.transportEndpointHandle)) ?? false
            logger.info("a callout ended a live connection at its reauthorization", metadata: ["handle": "\(e.transportEndpointHandle)", "ended": "\(ended)"])
            service.deliverDecision(e, action: .block, filterId: result.filterId, errno: ECONNABORTED, reauthorized: true)
        }
    }

    /// An event the kernel decided at a layer with registered inspection callouts: they see it,
    /// they cannot change it (issue 9: inspection callouts are fed from the event stream).
    func inspect(_ raw: ALEEvent) {
        queue.async { [self] in
            guard let rb = readBack(raw) else {
                logger.debug("an event for inspection callouts could not be read back", metadata: ["sequence": "\(raw.sequence)"])
                return
            }
            let (e, layer, json, values) = (rb.event, rb.layer, rb.json, rb.values)
            logger.debug("inspection", metadata: ["sequence": "\(raw.sequence)", "values": "\(values)"])
            let ctx = Classification(completionId: nil, event: json, replay: true)
            _ = Classification.$current.withValue(ctx) {
                service.bfe.classify(layer: layer, values: values, metadata: ClassifyMetadata(endpointHandle: e.transportEndpointHandle))
            }
        }
    }

    /// A notification (flow established, endpoint closure, resource release) at a layer with
    /// callout filters: the callouts see it and cannot change it, except that one may pend a
    /// closure (FwpsPendClassify0, R6.8, R6.9), which holds back the endpoint's teardown.
    /// Synchronous: the release that follows in the event stream must know.
    func notification(_ raw: ALEEvent) {
        queue.sync {
            guard let rb = readBack(raw) else { return }
            let (e, layer, json, values) = (rb.event, rb.layer, rb.json, rb.values)
            var handle: UInt64?
            if layer.canPendClassify {
                handle = nextCompletion
                nextCompletion += 1
            }
            let ctx = Classification(completionId: nil, event: json, classifyHandle: handle)
            _ = Classification.$current.withValue(ctx) {
                service.bfe.classify(layer: layer, values: values, metadata: ClassifyMetadata(endpointHandle: e.transportEndpointHandle))
            }
            if let handle, let by = ctx.pendedClassifyBy {
                closures[handle] = ClosureRecord(
                    handle: handle, cookie: e.transportEndpointHandle, layer: layer, values: values, json: json,
                    deadline: .now() + pendTimeout, pendedBy: by)
                heldTeardown.withLockedValue { _ = $0.insert(e.transportEndpointHandle) }
            }
        }
    }

    /// The event pump, for a RESOURCE_RELEASE: true when its endpoint's closure is pended, and
    /// the release (with its flowDeleteFn calls) then waits for completeClassify.
    func deferTeardown(_ e: ALEEvent) -> Bool {
        let cookie = e.transportEndpointHandle
        guard heldTeardown.withLockedValue({ $0.contains(cookie) }) else { return false }
        queue.async { [self] in
            if let h = closures.first(where: { $0.value.cookie == cookie })?.key {
                closures[h]?.deferred.append(e)
            } else {
                service.finishTeardown(e)  // completed meanwhile
            }
        }
        return true
    }

    /// FwpsCompleteClassify0: `answer` is the final classifyOut (nothing is classified again),
    /// or nil: the indication is classified again, inline (R6.8). Then the teardown goes on.
    func completeClassify(_ handle: UInt64, answer: CalloutAnswer?, by client: UInt64?, reply: @escaping @Sendable (WireError?) -> Void) {
        queue.async { [self] in
            guard let r = closures[handle] else {
                reply(WireError(FWPError(.notFound, "no pended classification has handle \(handle) (completed, timed out or never pended)")))
                return
            }
            if let client, service.hostedCallout(r.pendedBy)?.owner != client {
                reply(WireError(FWPError(.wrongSession, "classify handle \(handle) belongs to another callout host")))
                return
            }
            closures[handle] = nil
            if answer == nil {
                let ctx = Classification(completionId: nil, event: r.json)
                _ = Classification.$current.withValue(ctx) {
                    service.bfe.classify(layer: r.layer, values: r.values, metadata: ClassifyMetadata(endpointHandle: r.cookie))
                }
            }
            releaseTeardown(r)
            reply(nil)
        }
    }

    private func releaseTeardown(_ r: ClosureRecord) {
        heldTeardown.withLockedValue { _ = $0.remove(r.cookie) }
        for e in r.deferred { service.finishTeardown(e) }
    }

    // MARK: from callouts

    /// FwpsCompleteOperation0: classify again as a reauthorization and finish. `by`: the client
    /// connection asking (nil: a built-in callout); only the host of the callout that pended may.
    ///
    /// At AUTH_RECV_ACCEPT a completion is not a reauthorization (R6.7): the held SYN is
    /// re-injected and classified as the callout's own injection (`reinject`), or discarded and
    /// the connection refused (`reinject: false`).
    func completeOperation(
        _ completionId: UInt64, by client: UInt64?, reinject: Bool = true, answer: CalloutAnswer? = nil,
        reply: @escaping @Sendable (WireError?) -> Void
    ) {
        queue.async { [self] in
            guard let record = pends[completionId], let by = record.pendedBy else {
                reply(WireError(FWPError(.notFound, "no pended operation has completion handle \(completionId) (completed, timed out or never pended)")))
                return
            }
            if let client, service.hostedCallout(by)?.owner != client {
                reply(WireError(FWPError(.wrongSession, "completion handle \(completionId) belongs to another callout host")))
                return
            }
            pends[completionId] = nil
            if record.layer.kind == .authRecvAccept {
                if reinject {
                    let (result, _) = classify(record, reauthorize: false, injectedBySelf: true, answer: answer.map { (by, $0) })
                    finish(record, result, reauthorized: false)
                } else {
                    complete(record.key, .block, errno: ECONNREFUSED, filterId: record.event.filterId)  // the clone discarded
                    service.deliverDecision(record.event, action: .block, filterId: record.event.filterId, errno: ECONNREFUSED, reauthorized: false)
                }
            } else {
                let (result, _) = classify(record, reauthorize: true, answer: answer.map { (by, $0) })
                finish(record, result, reauthorized: true)
            }
            reply(nil)
        }
    }

    /// A callout host is gone (or unregistered): what its callouts pended completes with the
    /// default verdict, never silently permitted unless so configured.
    func hostGone(callouts keys: Set<UUID>) {
        queue.async { [self] in
            for (id, r) in pends where r.pendedBy.map(keys.contains) == true {
                pends[id] = nil
                logger.warning("callout host gone: completing its pended operation with the default verdict", metadata: ["flow": "\(r.key)"])
                completeDefault(r)
            }
            for (h, r) in closures where keys.contains(r.pendedBy) {
                closures[h] = nil
                releaseTeardown(r)
            }
        }
    }

    /// What is held now, for `heldOperations`.
    func summary(reply: @escaping @Sendable ([HeldSummary]) -> Void) {
        queue.async { [self] in
            let byKey = Dictionary(pends.values.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
            let ops = (try? held?.all()) ?? []
            reply(
                ops.filter(\.waiting).map { op in
                    let r = byKey[op.key]
                    return HeldSummary(
                        completionId: r?.completionId, endpointHandle: op.key.cookie,
                        layer: Layer(kernelID: op.layerID)?.name ?? "\(op.layerID)", filterId: op.filterId,
                        calloutKey: r?.pendedBy?.lowerString, heldMilliseconds: Double(HeldOperations.monotonicNs() &- op.startNs) / 1e6,
                        remote: "\(op.key)")
                })
        }
    }

    // MARK: classification and completion

    private func classify(
        _ r: PendRecord, reauthorize: Bool, injectedBySelf: Bool = false, answer: (callout: UUID, answer: CalloutAnswer)? = nil
    ) -> (ClassifyResult, UUID?) {
        var values = r.values
        if reauthorize {
            var flags: UInt32 = 0
            if case .uint32(let f)? = values[.flags] { flags = f }
            values.values[.flags] = .uint32(flags | UInt32(LFP_FLAG_IS_REAUTHORIZE))
            if ConditionField.reauthorizeReason.isAvailable(at: r.layer) {
                values.values[.reauthorizeReason] = .uint32(0x10)  // FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION
            }
        }
        let first = !reauthorize && !injectedBySelf
        let ctx = Classification(completionId: first ? r.completionId : nil, event: r.json, injectedBySelf: injectedBySelf, preAnswer: answer)
        let result = Classification.$current.withValue(ctx) {
            service.bfe.classify(
                layer: r.layer, values: values, metadata: ClassifyMetadata(endpointHandle: r.key.cookie, canPend: first))
        }
        return (result, ctx.pendedBy)
    }

    private func finish(_ r: PendRecord, _ result: ClassifyResult, reauthorized: Bool) {
        let block = result.actionType == .block
        let errno = block ? blockErrno(result) : 0
        complete(r.key, block ? .block : .permit, errno: errno, filterId: result.filterId)
        service.deliverDecision(r.event, action: block ? ActionType.block : .permit, filterId: result.filterId, errno: errno, reauthorized: reauthorized)
    }

    private func completeDefault(_ r: PendRecord) {
        counts.withLockedValue { $0.timedOut += 1 }
        let block = defaultVerdict == .block
        complete(r.key, defaultVerdict, errno: EPERM, filterId: r.event.filterId)
        service.deliverDecision(r.event, action: defaultVerdict, filterId: r.event.filterId, errno: block ? EPERM : Int32(0), reauthorized: true)
    }

    private func complete(_ key: HeldFlowKey, _ action: ActionType, errno: Int32, filterId: UInt64) {
        counts.withLockedValue { $0.completed += 1 }
        logger.debug("completing a held operation", metadata: ["flow": "\(key)", "action": "\(action.name)", "errno": "\(errno)"])
        do {
            try held?.complete(key, action == .block ? .block(errno: errno) : .permit, filterId: filterId)
        } catch {
            logger.error("completing a held operation failed", metadata: ["flow": "\(key)", "error": "\(error)"])
        }
    }

    private func blockErrno(_ result: ClassifyResult) -> Int32 {
        guard let k = result.filterKey, let f = try? service.bfe.filter(key: k) else { return EPERM }
        return f.action.blockErrno ?? EPERM
    }

    // MARK: deadlines

    private func expire() {
        let now = DispatchTime.now()
        for (id, r) in pends where r.deadline <= now {
            pends[id] = nil
            logger.warning("pend timeout: completing with the default verdict", metadata: ["flow": "\(r.key)"])
            completeDefault(r)
        }
        for (h, r) in closures where r.deadline <= now {
            closures[h] = nil
            logger.warning("pended closure timed out: the endpoint's teardown goes on", metadata: ["handle": "\(r.cookie)"])
            releaseTeardown(r)
        }
        if now.uptimeNanoseconds - lastKernelSweep.uptimeNanoseconds > 1_000_000_000 {
            lastKernelSweep = now
            sweepKernel(olderThan: UInt64(service.options.pendTimeoutSeconds * 1e9))
        }
    }

    /// Held operations the dispatcher has no record of (their event was lost, or a previous
    /// daemon held them): completed with the default verdict once older than `age` (nil: all).
    private func sweepKernel(olderThan age: UInt64?) {
        guard let held, let ops = try? held.all() else { return }
        let known = Set(pends.values.map(\.key))
        let now = HeldOperations.monotonicNs()
        for op in ops where op.waiting && !known.contains(op.key) {
            if let age, now &- op.startNs < age { continue }
            logger.warning("a held operation nobody is deciding: completing it with the default verdict", metadata: ["flow": "\(op.key)"])
            counts.withLockedValue { $0.timedOut += 1 }
            complete(op.key, defaultVerdict, errno: EPERM, filterId: op.filterId)
        }
    }
}
