// Writing callouts in Swift (docs/callouts.md): the FWPS side of the API over the daemon's socket.
//   FwpsCalloutRegister2 -> LFPSession.registerCallout(key:classify:notify:flowDelete:)
//   FwpsCalloutUnregisterByKey0/ById0 -> unregisterCallout(key:) / (id:)
//   FwpsPendOperation0 -> CalloutRequest.pendOperation(), FwpsCompleteOperation0 -> PendedOperation.complete()
//   FwpsFlowAssociateContext0/RemoveContext0 -> flowAssociateContext / flowRemoveContext
// The callouts live as long as the session: when the process exits, the daemon unregisters them
// and completes what they pended with the default verdict.

import FilterModel
import Foundation
import ServiceProtocol

/// What a classify function sees (classifyFn2's arguments, as they travel).
public struct CalloutRequest: Sendable {
    public let invocation: CalloutInvocation
    let session: LFPSession

    public var layer: String { invocation.layer }
    /// FWPM_CONDITION_* name -> incoming value.
    public var fields: [String: String] { invocation.fields }
    public var filterId: UInt64 { invocation.filterId }
    /// The socket cookie: the key to keep per-operation state by (R6.5).
    public var endpointHandle: UInt64? { invocation.endpointHandle }
    /// FWP_CONDITION_FLAG_IS_REAUTHORIZE: answer from the state kept when the operation pended.
    public var isReauthorization: Bool { invocation.isReauthorization }
    /// FWPS_PACKET_INJECTED_BY_SELF: the inbound SYN re-injected after your completion at
    /// AUTH_RECV_ACCEPT (R6.7); answer from the state kept when it pended.
    public var isInjectedBySelf: Bool { invocation.injectedBySelf == true }
    /// FWPS_RIGHT_ACTION_WRITE: without it the callout can only veto (R1.16).
    public var hasWriteRight: Bool { invocation.rights & 1 != 0 }
    /// The kernel's event (`lfp events --json`): process, executable, user, workload, addresses.
    public var event: String? { invocation.event }

    /// FwpsPendOperation0: keep the operation held after this classify returns; answer it later
    /// with `PendedOperation.complete()`. STATUS_FWP_CANNOT_PEND on a reauthorization, without
    /// the write right, or where the kernel cannot hold the operation (R6.1-R6.4).
    public func pendOperation() throws -> PendedOperation {
        guard let id = invocation.completionId else {
            throw FWPError(
                .statusCannotPend,
                invocation.isReauthorization ? "a reauthorization cannot be pended (R6.4)" : "this operation cannot be pended here")
        }
        return PendedOperation(completionId: id, endpointHandle: invocation.endpointHandle, session: session)
    }

    /// FwpsAcquireClassifyHandle0 + FwpsPendClassify0: hold this indication (an endpoint
    /// closure: its teardown waits) until `PendedClassify.complete`. STATUS_FWP_CANNOT_PEND at
    /// layers that do not allow it (everything but ENDPOINT_CLOSURE here, R6.1, R6.8).
    public func pendClassify() throws -> PendedClassify {
        guard let h = invocation.classifyHandle else {
            throw FWPError(.statusCannotPend, "\(invocation.layer) does not allow FwpsPendClassify0")
        }
        return PendedClassify(classifyHandle: h, session: session)
    }
}

/// A pended classification's handle (FwpsPendClassify0).
public struct PendedClassify: Sendable {
    public let classifyHandle: UInt64
    let session: LFPSession

    /// FwpsCompleteClassify0 (+ FwpsReleaseClassifyHandle0): `decision` is final; nil has the
    /// indication classified again (your classify answers it inline). Then the endpoint's
    /// teardown (RESOURCE_RELEASE, flowDeleteFn) goes on.
    public func complete(_ decision: CalloutDecision?) throws {
        try session.call(.completeClassify) {
            $0.classifyHandle = classifyHandle
            $0.answer = decision.map { CalloutAnswer(actionType: $0.actionType?.name, clearRight: $0.clearRight, absorb: $0.absorb) }
        }
    }
}

/// A pended operation's completion handle.
public struct PendedOperation: Sendable, Hashable {
    public let completionId: UInt64
    public let endpointHandle: UInt64?
    let session: LFPSession

    /// FwpsCompleteOperation0: the daemon reauthorizes the operation (your classify answers it,
    /// with `isReauthorization` set) and the kernel lets it go or refuses it. Any thread.
    ///
    /// At AUTH_RECV_ACCEPT a completion is not a reauthorization (R6.7): with `reinject` (the
    /// default) the held SYN is re-injected and your classify sees it with `isInjectedBySelf`;
    /// without, it is discarded and the peer's connection refused.
    ///
    /// `answer`: your answer to that reauthorization, given now: the daemon then does not call
    /// your classify for it (one round trip less; the semantics are the same, R6.5).
    public func complete(answer: CalloutDecision? = nil, reinject: Bool = true) throws {
        try session.call(.completeOperation) {
            $0.completionId = completionId
            $0.reinject = reinject
            $0.answer = answer.map { CalloutAnswer(actionType: $0.actionType?.name, clearRight: $0.clearRight, absorb: $0.absorb) }
        }
    }

    public static func == (a: PendedOperation, b: PendedOperation) -> Bool { a.completionId == b.completionId }
    public func hash(into h: inout Hasher) { h.combine(completionId) }
}

/// FWPS_CLASSIFY_OUT0 as a classify function returns it.
public struct CalloutDecision: Sendable, Equatable {
    public var actionType: ActionType?
    /// Clear FWPS_RIGHT_ACTION_WRITE: the decision is hard.
    public var clearRight: Bool
    public var absorb: Bool
    var pended: Bool
    var pendedClassify = false

    public init(actionType: ActionType?, clearRight: Bool = false, absorb: Bool = false) {
        self.actionType = actionType
        self.clearRight = clearRight
        self.absorb = absorb
        pended = false
    }

    /// Permit; `hard` clears the write right (lower sublayers cannot override it).
    public static func permit(hard: Bool = false) -> CalloutDecision { CalloutDecision(actionType: .permit, clearRight: hard) }
    /// Block, clearing the write right as a callout should (R5.11).
    public static let block = CalloutDecision(actionType: .block, clearRight: true)
    /// FWP_ACTION_CONTINUE: let the next filter decide.
    public static let `continue` = CalloutDecision(actionType: .continue)
    /// Write nothing (an inspection callout).
    public static let none = CalloutDecision(actionType: nil)
    /// The answer after `pendClassify()`: BLOCK with the right cleared (R6.8).
    public static func pend(_ c: PendedClassify) -> CalloutDecision {
        var d = CalloutDecision(actionType: .block, clearRight: true)
        d.pendedClassify = true
        return d
    }

    /// The answer after `pendOperation()`: BLOCK with ABSORB while pending (R6.3).
    public static func pend(_ op: PendedOperation) -> CalloutDecision {
        var d = CalloutDecision(actionType: .block, absorb: true)
        d.pended = true
        return d
    }
}

/// The functions of one callout (FWPS_CALLOUT2).
struct CalloutFunctions: Sendable {
    var classify: @Sendable (CalloutRequest) -> CalloutDecision
    var notify: (@Sendable (CalloutNotification) -> Void)?
    var flowDelete: (@Sendable (FlowDeletion) -> Void)?
}

extension LFPSession {
    /// FwpsCalloutRegister2: this process hosts callout `key` from now on; returns its runtime
    /// calloutId. STATUS_FWP_ALREADY_EXISTS when the key is registered (here or elsewhere).
    /// Registration may come before or after the filters that name the callout. `classify`
    /// runs on a concurrent queue, one call per operation; it may pend and complete later from
    /// any thread. `flowDelete` makes flow contexts possible (R5.14). `notify` and `flowDelete`
    /// run on the connection's own thread, in order with the replies: they must not wait for the
    /// daemon.
    @discardableResult
    public func registerCallout(
        key: UUID, classify: @escaping @Sendable (CalloutRequest) -> CalloutDecision,
        notify: (@Sendable (CalloutNotification) -> Void)? = nil, flowDelete: (@Sendable (FlowDeletion) -> Void)? = nil
    ) throws -> UInt32 {
        installCalloutPush()
        calloutLock.withLock { calloutFunctions[key] = CalloutFunctions(classify: classify, notify: notify, flowDelete: flowDelete) }
        do {
            let r = try call(.registerCallout) {
                $0.calloutKey = key.lowerString
                $0.hasFlowDelete = flowDelete != nil
            }
            let id = r.calloutId ?? 0
            calloutLock.withLock { calloutIds[id] = key }
            return id
        } catch {
            calloutLock.withLock { calloutFunctions[key] = nil }
            throw error
        }
    }

    /// FwpsCalloutUnregisterByKey0: STATUS_DEVICE_BUSY while flow contexts remain (R5.7).
    public func unregisterCallout(key: UUID) throws {
        try call(.unregisterCallout) { $0.calloutKey = key.lowerString }
        calloutLock.withLock { calloutFunctions[key] = nil }
    }

    /// FwpsCalloutUnregisterById0.
    public func unregisterCallout(id: UInt32) throws {
        try call(.unregisterCallout) { $0.calloutId = id }
    }

    /// FwpsFlowAssociateContext0 (`flowId`: the endpoint handle of the operation).
    public func flowAssociateContext(flowId: UInt64, layer: String, calloutId: UInt32, context: UInt64) throws {
        try call(.flowAssociateContext) {
            $0.flowId = flowId
            $0.layer = layer
            $0.calloutId = calloutId
            $0.flowContext = context
        }
    }

    /// FwpsFlowRemoveContext0: flowDelete runs before this returns.
    public func flowRemoveContext(flowId: UInt64, layer: String, calloutId: UInt32) throws {
        try call(.flowRemoveContext) {
            $0.flowId = flowId
            $0.layer = layer
            $0.calloutId = calloutId
        }
    }

    /// The operations the kernel holds for callouts now.
    public func heldOperations() throws -> [HeldSummary] { try call(.heldOperations).held ?? [] }

    /// `lfp prompt`: `handler` gets each decision the built-in lfp.prompt callout waits for, and
    /// nil when the connection ends.
    public func subscribePrompts(_ handler: @escaping @Sendable (PromptRequest?) -> Void) throws {
        calloutLock.withLock { promptHandler = handler }
        installCalloutPush()
        try call(.subscribePrompts)
    }

    /// Answer a prompt: `remember` adds a filter that gives the same answer next time.
    public func answerPrompt(_ completionId: UInt64, permit: Bool, remember: Bool = false) throws {
        try call(.answerPrompt) {
            $0.completionId = completionId
            $0.answer = CalloutAnswer(actionType: (permit ? ActionType.permit : .block).name)
            $0.remember = remember
        }
    }

    /// Callout pushes run off the event loop: a classify may call the daemon (complete) and
    /// wait, and the reauthorization that follows needs another classify at the same time.
    func installCalloutPush() {
        connection.handler.onCalloutPush = { [weak self] reply in
            guard let self else { return }
            if reply.id == UInt64.max {
                let p = self.calloutLock.withLock { self.promptHandler }
                p?(nil)
                return
            }
            // flowDeleteFn and notifyFn run in frame order, before the reply that follows them
            // (FwpsFlowRemoveContext0 returns after flowDelete ran, R5.15): on the connection's
            // thread, so they must not call the daemon and wait. Classify and prompts may.
            if reply.invocation == nil && reply.prompt == nil {
                self.dispatchCalloutPush(reply)
            } else {
                self.calloutQueue.async { self.dispatchCalloutPush(reply) }
            }
        }
    }

    private func dispatchCalloutPush(_ reply: Reply) {
        if let inv = reply.invocation {
            let f = calloutLock.withLock { calloutFunctions[UUID(uuidString: inv.calloutKey) ?? UUID()] }
            let d = f?.classify(CalloutRequest(invocation: inv, session: self)) ?? .none
            var r = Request(op: .calloutAnswer)
            r.invocation = inv.invocation
            r.answer = CalloutAnswer(
                actionType: d.actionType?.name, clearRight: d.clearRight, absorb: d.absorb, pended: d.pended, pendedClassify: d.pendedClassify)
            connection.post(r)
        }
        if let n = reply.notification {
            calloutLock.withLock { calloutFunctions[UUID(uuidString: n.calloutKey) ?? UUID()] }?.notify?(n)
        }
        if let d = reply.flowDeleted {
            calloutLock.withLock { calloutIds[d.calloutId].flatMap { calloutFunctions[$0] } }?.flowDelete?(d)
        }
        if let p = reply.prompt {
            calloutLock.withLock { promptHandler }?(p)
        }
    }
}
