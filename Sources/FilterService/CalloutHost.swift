// Callouts hosted by the daemon (docs/callouts.md): built-in ones in this process, and callouts
// of client processes reached over their connection. Each is registered in the engine's
// BaseFilteringEngine as a `HostedCallout`, so WFP's arbitration calls it exactly where it would
// call a driver's classifyFn.

import FilterModel
import Foundation
import NIOConcurrencyHelpers
import ServiceProtocol

/// What one classification is for, bound around `BaseFilteringEngine.classify` (TaskLocal,
/// which works in the synchronous call too): the held operation it may pend, and what the
/// callouts did.
final class Classification: @unchecked Sendable {
    /// The completion handle a callout may pend with; nil: the operation cannot be pended
    /// (a reauthorization, R6.4).
    let completionId: UInt64?
    /// The kernel's event, as JSON, for the callouts that want process and user details.
    let event: String?
    /// An inspection replay of an event the kernel already decided: only inspection callouts
    /// are asked; the others write nothing.
    let replay: Bool
    /// The classify of a re-injected inbound SYN (FWPS_PACKET_INJECTED_BY_SELF, R6.7).
    let injectedBySelf: Bool
    /// A callout's answer to this (reauthorization) classify, given with its completion.
    let preAnswer: (callout: UUID, answer: CalloutAnswer)?
    /// The classify handle a callout may pend an indication with (FwpsPendClassify0, at
    /// ENDPOINT_CLOSURE); nil elsewhere.
    let classifyHandle: UInt64?
    /// The callout that pended the operation (R6.2) or the indication (R6.8), if one did.
    private(set) var pendedBy: UUID?
    private(set) var pendedClassifyBy: UUID?

    init(
        completionId: UInt64?, event: String?, replay: Bool = false, classifyHandle: UInt64? = nil, injectedBySelf: Bool = false,
        preAnswer: (callout: UUID, answer: CalloutAnswer)? = nil
    ) {
        self.injectedBySelf = injectedBySelf
        self.preAnswer = preAnswer
        self.completionId = completionId
        self.event = event
        self.replay = replay
        self.classifyHandle = classifyHandle
    }

    func pended(by key: UUID) { pendedBy = key }
    func pendedClassify(by key: UUID) { pendedClassifyBy = key }

    @TaskLocal static var current: Classification?
}

/// A callout's classifyFn and notifyFn, wherever they run.
protocol CalloutEndpoint: AnyObject, Sendable {
    /// Answer one invocation; nil when no answer came (the host died or timed out).
    func classify(_ invocation: CalloutInvocation, _ request: CalloutClassifyRequest) -> CalloutAnswer?
    func notify(_ notification: CalloutNotification)
    func flowDeleted(_ deletion: FlowDeletion)
}

/// A registered callout as the engine sees it (FilterModel's `Callout`).
final class HostedCallout: Callout, @unchecked Sendable {
    let calloutKey: UUID
    let endpoint: CalloutEndpoint
    /// The client connection that registered it; nil for a built-in callout.
    let owner: UInt64?
    let hasFlowDelete: Bool
    private let ids: NIOLockedValueBox<(calloutId: UInt32, nextInvocation: UInt64)>

    init(key: UUID, endpoint: CalloutEndpoint, owner: UInt64?, hasFlowDelete: Bool) {
        calloutKey = key
        self.endpoint = endpoint
        self.owner = owner
        self.hasFlowDelete = hasFlowDelete
        ids = NIOLockedValueBox((0, 1))
    }

    var calloutId: UInt32 {
        get { ids.withLockedValue { $0.calloutId } }
        set { ids.withLockedValue { $0.calloutId = newValue } }
    }

    func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut {
        let ctx = Classification.current
        let f = request.filter
        if ctx?.replay == true && f.action.type != .calloutInspection {
            return CalloutClassifyOut(actionType: nil, rights: request.rights)  // the kernel decided
        }
        var invocation = CalloutInvocation(
            invocation: ids.withLockedValue { s in
                defer { s.nextInvocation += 1 }
                return s.nextInvocation
            },
            calloutKey: calloutKey.lowerString, calloutId: calloutId, layer: request.layer.name, filterId: f.filterId,
            filterKey: f.filterKey.lowerString, filterFlags: f.flags.rawValue, rights: request.rights.rawValue,
            fields: Self.fields(request.values), endpointHandle: request.metadata.endpointHandle,
            // FwpsPendOperation0's own checks (R6.1-R6.4), and only with the write right (R6.3)
            completionId: request.rights.contains(.actionWrite) && (try? request.pendOperation()) != nil ? ctx?.completionId : nil,
            isReauthorization: request.isReauthorization, event: ctx?.event,
            classifyHandle: request.layer.canPendClassify ? ctx?.classifyHandle : nil)
        invocation.injectedBySelf = ctx?.injectedBySelf == true ? true : nil
        let given = ctx?.preAnswer.flatMap { $0.callout == calloutKey && invocation.completionId == nil ? $0.answer : nil }
        guard let answer = given ?? endpoint.classify(invocation, request) else {
            // No answer: the callout counts as unregistered for this classification (R5.6).
            if f.action.type == .calloutInspection { return CalloutClassifyOut(actionType: nil, rights: request.rights) }
            let permit = f.flags.contains(.permitIfCalloutUnregistered)
            return CalloutClassifyOut(actionType: permit ? .permit : .block, rights: permit ? request.rights : [])
        }
        if answer.pendedClassify == true, invocation.classifyHandle != nil {
            ctx?.pendedClassify(by: calloutKey)  // the documented answer after pending: BLOCK, right cleared (R6.8)
            var rights = request.rights
            rights.remove(.actionWrite)
            return CalloutClassifyOut(actionType: .block, rights: rights)
        }
        if answer.pended, invocation.completionId != nil {
            ctx?.pended(by: calloutKey)
            // While pending, the classify returns BLOCK with ABSORB (R6.3).
            return CalloutClassifyOut(actionType: .block, rights: request.rights, flags: .absorb)
        }
        var rights = request.rights
        if answer.clearRight { rights.remove(.actionWrite) }
        let action = answer.actionType.flatMap(ActionType.init(name:))
        return CalloutClassifyOut(actionType: answer.pended ? .block : action, rights: rights, flags: answer.absorb ? .absorb : [])
    }

    func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool {
        endpoint.notify(
            CalloutNotification(calloutKey: calloutKey.lowerString, notifyType: type.rawValue, filterId: filter.filterId, filterKey: filterKey?.lowerString))
        return true  // a remote host cannot veto an add: it is told, not asked (docs/callouts.md)
    }

    func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64) {
        endpoint.flowDeleted(FlowDeletion(calloutId: calloutId, layer: layer.name, flowId: 0, flowContext: flowContext))
    }

    /// Incoming values as `lfp classify --field` reads them back (IPv4 addresses dotted).
    static func fields(_ values: IncomingValues) -> [String: String] {
        var out: [String: String] = [:]
        for (field, value) in values.values {
            if case .uint32(let v) = value, field == .ipLocalAddress || field == .ipRemoteAddress {
                out[field.name] = IPText.formatV4(v)
            } else {
                out[field.name] = "\(value)"
            }
        }
        return out
    }
}

/// A callout in a client process: invocations are pushed over its connection and answered with
/// `calloutAnswer`, which the connection hands to `answer` directly (never through the engine
/// queue, which may be waiting for this very classification).
final class RemoteEndpoint: CalloutEndpoint, @unchecked Sendable {
    let send: @Sendable (Reply) -> Void
    /// How long a classify waits for the host's answer before treating the callout as
    /// unregistered for that classification.
    let timeout: DispatchTimeInterval
    private let waiting = NIOLockedValueBox<[UInt64: (DispatchSemaphore, CalloutAnswer?)]>([:])
    private let closed = NIOLockedValueBox(false)

    init(send: @escaping @Sendable (Reply) -> Void, timeout: DispatchTimeInterval) {
        self.send = send
        self.timeout = timeout
    }

    func classify(_ invocation: CalloutInvocation, _ request: CalloutClassifyRequest) -> CalloutAnswer? {
        let sem = DispatchSemaphore(value: 0)
        guard !closed.withLockedValue({ $0 }) else { return nil }
        waiting.withLockedValue { $0[invocation.invocation] = (sem, nil) }
        var r = Reply(id: 0)
        r.invocation = invocation
        send(r)
        let answered = sem.wait(timeout: .now() + timeout) == .success
        let entry = waiting.withLockedValue { $0.removeValue(forKey: invocation.invocation) }
        return answered ? entry?.1 : nil
    }

    func answer(_ invocation: UInt64, _ answer: CalloutAnswer) {
        let sem: DispatchSemaphore? = waiting.withLockedValue { w in
            guard var e = w[invocation] else { return nil }
            e.1 = answer
            w[invocation] = e
            return e.0
        }
        sem?.signal()
    }

    /// The host is gone: every classification waiting for it goes on without an answer.
    func close() {
        closed.withLockedValue { $0 = true }
        for (sem, _) in waiting.withLockedValue({ Array($0.values) }) { sem.signal() }
    }

    func notify(_ notification: CalloutNotification) {
        var r = Reply(id: 0)
        r.notification = notification
        send(r)
    }

    func flowDeleted(_ deletion: FlowDeletion) {
        var r = Reply(id: 0)
        r.flowDeleted = deletion
        send(r)
    }
}
