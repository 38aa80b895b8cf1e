// The runtime (FWPS) side of callouts in the model: registration ids, flow contexts and
// flowDeleteFn, the pend checks, and C23/C24 followed on the model (notifyFn sequencing:
// CalloutNotifyTests.swift). Every refusal is matched by its code, never by its message.

import Foundation
import Testing

@testable import FilterModel

let calloutK = UUID(uuidString: "cccccccc-cccc-4ccc-8ccc-cccccccccccc")!
let calloutN = UUID(uuidString: "dddddddd-dddd-4ddd-8ddd-dddddddddddd")!
let FE = Layer.flowEstablishedV4

/// Expects `body` to throw an FWPError with `code`.
func expectStatus(_ code: FWPErrorCode, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code.name), the call succeeded", sourceLocation: sourceLocation)
    } catch let e as FWPError {
        #expect(e.code == code, "got \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

/// Runs `body` on another thread and waits for it: it only finishes if the engine lock is free.
func onOtherThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread {
        body()
        done.signal()
    }.start()
    return done.wait(timeout: .now() + 10) == .success
}

/// A callout that checks, from inside its notifyFn and flowDeleteFn, that another thread can use
/// the engine (so the engine lock is not held), and records the answers.
final class LockProbeCallout: Callout, @unchecked Sendable {
    let calloutKey: UUID
    weak var bfe: BaseFilteringEngine?
    let lock = NSLock()
    var freeDuring: [String] = []
    var hasFlowDelete: Bool { true }
    var wantsCommitAddNotify: Bool { true }

    init(key: UUID) { calloutKey = key }

    func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut {
        CalloutClassifyOut(actionType: .continue, rights: request.rights)
    }

    func probe(_ what: String) {
        guard let bfe else { return }
        let free = onOtherThread { _ = bfe.registeredCallouts() }
        lock.lock()
        if free { freeDuring.append(what) }
        lock.unlock()
    }

    func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool {
        if type != .addFilter { probe("\(type)") }  // ADD_FILTER runs under the lock by design
        return true
    }

    func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64) { probe("flowDelete") }
}

/// A callout that associates a flow context from inside its classify (C23's CF).
private final class AssociatingCallout: Callout, @unchecked Sendable {
    let calloutKey: UUID
    weak var bfe: BaseFilteringEngine?
    var calloutId: UInt32 = 0
    let context: UInt64
    var associateStatus: FWPErrorCode?
    var deletes: [FlowDeleteCall] = []
    var hasFlowDelete: Bool { true }

    init(key: UUID, context: UInt64) {
        calloutKey = key
        self.context = context
    }

    func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut {
        if let flow = request.metadata.endpointHandle {
            do {
                try bfe?.flowAssociateContext(flowId: flow, layer: request.layer, calloutId: calloutId, context: context)
            } catch let e as FWPError { associateStatus = e.code } catch {}
        }
        return CalloutClassifyOut(actionType: .continue, rights: request.rights)
    }

    func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64) {
        deletes.append(FlowDeleteCall(layer: layer, calloutId: calloutId, flowContext: flowContext))
    }
}

func calloutFilter(_ name: String, key: UUID = CT, layer: Layer = L4) -> Filter {
    var f = filter(name, layer: layer, action: FilterAction(type: .calloutInspection, calloutKey: key))
    f.filterKey = UUID()
    return f
}

@Suite("Runtime callouts")
struct CalloutRuntimeTests {
    // MARK: Registration

    @Test("registerCallout returns the FWPM calloutId, or a fresh runtime id no FWPM callout has (R5.3, R5.5)")
    func runtimeIds() throws {
        let bfe = try baseEngine()
        let fwpmId = try bfe.callout(key: CT).calloutId
        #expect(try bfe.registerCallout(ScriptedCallout(calloutKey: CT, returns: .permit)) == fwpmId)
        let k = try bfe.registerCallout(ScriptedCallout(calloutKey: calloutK, returns: .permit))
        let n = try bfe.registerCallout(ScriptedCallout(calloutKey: calloutN, returns: .permit))
        #expect(Set([fwpmId, k, n]).count == 3)
        let other = try bfe.addCallout(CalloutObject(displayData: DisplayData(name: "other"), applicableLayer: L4))
        #expect(![k, n].contains(other), "FWPM and runtime-only ids never meet")
        #expect(bfe.registeredCallouts().map(\.key) == [CT, calloutK, calloutN])
        #expect(bfe.registeredCallouts().map(\.id) == [fwpmId, k, n])
        // An FWPM object added after the registration carries the runtime id (R5.3).
        #expect(try bfe.addCallout(CalloutObject(calloutKey: calloutK, displayData: DisplayData(name: "K"), applicableLayer: L4)) == k)
        // An id is never handed out twice, even after an unregister.
        try bfe.unregisterCallout(key: calloutN)
        let again = try bfe.registerCallout(ScriptedCallout(calloutKey: calloutN, returns: .permit))
        #expect(![fwpmId, k, n, other].contains(again))
    }

    @Test("STATUS_FWP_ALREADY_EXISTS, STATUS_FWP_CALLOUT_NOT_FOUND by key and by id (R5.5, R5.7)")
    func registrationRefusals() throws {
        let bfe = try baseEngine()
        let id = try bfe.registerCallout(ScriptedCallout(calloutKey: CT, returns: .permit))
        expectStatus(.statusAlreadyExists) { try bfe.registerCallout(ScriptedCallout(calloutKey: CT, returns: .block)) }
        expectStatus(.statusCalloutNotFound) { try bfe.unregisterCallout(id: id + 1) }
        expectStatus(.statusCalloutNotFound) { try bfe.unregisterCallout(key: calloutK) }
        // Filters that still reference the callout do not stop the unregister (R5.7).
        try bfe.addFilter(calloutFilter("F1"))
        try bfe.unregisterCallout(id: id)
        #expect(!bfe.isRegistered(CT))
        #expect(bfe.registeredCallouts().isEmpty)
        expectStatus(.statusCalloutNotFound) { try bfe.unregisterCallout(id: id) }
    }

    // MARK: Flow contexts

    @Test("flowAssociateContext refusals: CALLOUT_NOT_FOUND, INVALID_PARAMETER, OBJECT_NAME_EXISTS; UNSUCCESSFUL on remove (R5.14, R5.15)")
    func flowContextRefusals() throws {
        let bfe = try baseEngine()
        let cf = try bfe.registerCallout(ScriptedCallout(calloutKey: CT, returns: .continue, flowDeleteFn: true))
        let plain = try bfe.registerCallout(ScriptedCallout(calloutKey: calloutN, returns: .continue))
        expectStatus(.statusCalloutNotFound) { try bfe.flowAssociateContext(flowId: 7, layer: FE, calloutId: 0x7777, context: 1) }
        expectStatus(.statusInvalidParameter) { try bfe.flowAssociateContext(flowId: 7, layer: FE, calloutId: cf, context: 0) }
        expectStatus(.statusInvalidParameter) { try bfe.flowAssociateContext(flowId: 7, layer: FE, calloutId: plain, context: 1) }
        try bfe.flowAssociateContext(flowId: 7, layer: FE, calloutId: cf, context: 1)
        expectStatus(.statusObjectNameExists) { try bfe.flowAssociateContext(flowId: 7, layer: FE, calloutId: cf, context: 2) }
        // Other layers and other flows are other slots.
        try bfe.flowAssociateContext(flowId: 7, layer: .endpointClosureV4, calloutId: cf, context: 3)
        try bfe.flowAssociateContext(flowId: 8, layer: FE, calloutId: cf, context: 4)
        #expect(bfe.flowContexts(flowId: 7).map(\.context) == [1, 3])
        expectStatus(.statusUnsuccessful) { try bfe.flowRemoveContext(flowId: 7, layer: FE, calloutId: plain) }
        expectStatus(.statusUnsuccessful) { try bfe.flowRemoveContext(flowId: 9, layer: FE, calloutId: cf) }
        #expect(bfe.flowContexts(flowId: 9).isEmpty)
    }

    @Test("Several callouts share a flow; flowDeleteFn runs once per context on remove and on flow end (R5.14-R5.16)")
    func flowDeleteOnce() throws {
        let bfe = try baseEngine()
        let a = ScriptedCallout(calloutKey: CT, returns: .continue, flowDeleteFn: true)
        let b = ScriptedCallout(calloutKey: calloutK, returns: .continue, flowDeleteFn: true)
        let ia = try bfe.registerCallout(a), ib = try bfe.registerCallout(b)
        try bfe.flowAssociateContext(flowId: 1, layer: FE, calloutId: ia, context: 0xA1)
        try bfe.flowAssociateContext(flowId: 1, layer: .endpointClosureV4, calloutId: ia, context: 0xA2)
        try bfe.flowAssociateContext(flowId: 1, layer: FE, calloutId: ib, context: 0xB1)
        // Remove: flowDeleteFn has run when the call returns (synchronous, R5.15).
        try bfe.flowRemoveContext(flowId: 1, layer: FE, calloutId: ia)
        #expect(a.flowDeletes == [FlowDeleteCall(layer: FE, calloutId: ia, flowContext: 0xA1)])
        // Re-associating after a remove is allowed (R5.14).
        try bfe.flowAssociateContext(flowId: 1, layer: FE, calloutId: ia, context: 0xA3)
        let ended = bfe.flowEnded(flowId: 1)
        #expect(ended.count == 3)
        #expect(
            a.flowDeletes == [
                FlowDeleteCall(layer: FE, calloutId: ia, flowContext: 0xA1), FlowDeleteCall(layer: FE, calloutId: ia, flowContext: 0xA3),
                FlowDeleteCall(layer: .endpointClosureV4, calloutId: ia, flowContext: 0xA2),
            ])
        #expect(b.flowDeletes == [FlowDeleteCall(layer: FE, calloutId: ib, flowContext: 0xB1)])
        #expect(bfe.flowContexts(flowId: 1).isEmpty)
        // The flow is gone: ending it again calls nothing, removing reports no context.
        #expect(bfe.flowEnded(flowId: 1).isEmpty)
        #expect(a.flowDeletes.count == 3 && b.flowDeletes.count == 1)
        expectStatus(.statusUnsuccessful) { try bfe.flowRemoveContext(flowId: 1, layer: FE, calloutId: ib) }
    }

    @Test("STATUS_DEVICE_BUSY while a flow carries the callout's context; remove, then unregister succeeds (R5.7)")
    func busyThenRemove() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, flowDeleteFn: true)
        let id = try bfe.registerCallout(c)
        try bfe.flowAssociateContext(flowId: 5, layer: FE, calloutId: id, context: 9)
        expectStatus(.statusDeviceBusy) { try bfe.unregisterCallout(id: id) }
        expectStatus(.statusDeviceBusy) { try bfe.unregisterCallout(key: CT) }
        #expect(bfe.isRegistered(CT))
        try bfe.flowRemoveContext(flowId: 5, layer: FE, calloutId: id)
        try bfe.unregisterCallout(id: id)
        #expect(c.flowDeletes.count == 1)
        // The same after the flow ends instead.
        let id2 = try bfe.registerCallout(c)
        try bfe.flowAssociateContext(flowId: 6, layer: FE, calloutId: id2, context: 9)
        expectStatus(.statusDeviceBusy) { try bfe.unregisterCallout(key: CT) }
        bfe.flowEnded(flowId: 6)
        try bfe.unregisterCallout(key: CT)
    }

    @Test("flowDeleteFn runs outside the engine lock (on remove and on flow end)")
    func flowDeleteOutsideLock() throws {
        let bfe = try baseEngine()
        let probe = LockProbeCallout(key: CT)
        probe.bfe = bfe
        let id = try bfe.registerCallout(probe)
        try bfe.flowAssociateContext(flowId: 1, layer: FE, calloutId: id, context: 1)
        try bfe.flowAssociateContext(flowId: 2, layer: FE, calloutId: id, context: 2)
        try bfe.flowRemoveContext(flowId: 1, layer: FE, calloutId: id)
        bfe.flowEnded(flowId: 2)
        #expect(probe.freeDuring == ["flowDelete", "flowDelete"])
    }

    @Test("Flow contexts are thread-safe: concurrent associate, remove and end call flowDeleteFn once each")
    func concurrentFlows() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, flowDeleteFn: true)
        let id = try bfe.registerCallout(c)
        DispatchQueue.concurrentPerform(iterations: 200) { i in
            let flow = UInt64(i)
            try! bfe.flowAssociateContext(flowId: flow, layer: FE, calloutId: id, context: flow + 1)
            try! bfe.flowAssociateContext(flowId: flow, layer: .endpointClosureV4, calloutId: id, context: flow + 1)
            if i % 2 == 0 { try! bfe.flowRemoveContext(flowId: flow, layer: FE, calloutId: id) }
            bfe.flowEnded(flowId: flow)
        }
        #expect(c.flowDeletes.count == 400)
        #expect(Set(c.flowDeletes).count == 400, "no context deleted twice")
        try bfe.unregisterCallout(id: id)
    }

    // MARK: Pend

    @Test("pendOperation: STATUS_FWP_CANNOT_PEND without a completion handle, on reauthorization, at layers that cannot pend (R6.1, R6.2, R6.4)")
    func pendOperation() throws {
        func request(_ layer: Layer, canPend: Bool = true, flags: UInt32 = 0) -> CalloutClassifyRequest {
            CalloutClassifyRequest(
                layer: layer, values: IncomingValues([.flags: .uint32(flags)]), filter: filter(layer: layer),
                rights: .actionWrite, currentAction: nil, metadata: ClassifyMetadata(endpointHandle: 42, canPend: canPend))
        }
        let pendable: Set<Layer.Kind> = [.resourceAssignment, .authListen, .authConnect, .authRecvAccept]
        for layer in Layer.allCases {
            #expect(layer.canPendOperation == pendable.contains(layer.kind))
            #expect(layer.canPendClassify == (layer.kind == .endpointClosure))
            if layer.canPendOperation {
                try request(layer).pendOperation()
                expectStatus(.statusCannotPend) { try request(layer, canPend: false).pendOperation() }
                expectStatus(.statusCannotPend) { try request(layer, flags: 0x4 | 0x1).pendOperation() }  // IS_REAUTHORIZE | IS_LOOPBACK
            } else {
                expectStatus(.statusCannotPend) { try request(layer).pendOperation() }
            }
        }
        #expect(request(L4, flags: 0x4).isReauthorization)
        #expect(!request(L4, flags: 0x1).isReauthorization)
    }

    // MARK: Reference cases C23, C24 against the model

    // C23 and C24 are kernelOnly: their ReferenceCaseTests entries stay disabled and the
    // kernel-backed runs (a real connect) live with the daemon's tests. Here a synthetic flow id
    // stands for the socket cookie of the `connect` step; every other step is followed as written.

    @Test("C23 on the model: unregister blocked by an outstanding flow context (R5.7, R5.14, R5.15)")
    func caseC23Model() throws {
        let r = try FixtureRunner("C23")
        try r.loadPolicy(r.node["policy"]!, #_sourceLocation)
        let cf = AssociatingCallout(key: try r.key("CF"), context: 0xC23)
        cf.bfe = r.bfe
        cf.calloutId = try r.bfe.registerCallout(cf)
        #expect(cf.calloutId == (try r.bfe.callout(key: cf.calloutKey).calloutId))
        let flow1: UInt64 = 0xF10E_0001  // connect (I1), as: flow1
        // FwpsFlowAssociateContext0 made by CF inside its FLOW_ESTABLISHED classify.
        let res = r.bfe.classify(layer: FE, values: IncomingValues(), metadata: ClassifyMetadata(endpointHandle: flow1))
        #expect(res.calloutInvocations[cf.calloutKey] == 1)
        #expect(cf.associateStatus == nil)
        #expect(r.bfe.flowContexts(flowId: flow1) == [FlowContext(flowId: flow1, layer: FE, calloutId: cf.calloutId, context: 0xC23)])
        expectStatus(.statusDeviceBusy) { try r.bfe.unregisterCallout(id: cf.calloutId) }
        try r.bfe.flowRemoveContext(flowId: flow1, layer: FE, calloutId: cf.calloutId)
        #expect(cf.deletes == [FlowDeleteCall(layer: FE, calloutId: cf.calloutId, flowContext: 0xC23)], "synchronous")
        try r.bfe.unregisterCallout(id: cf.calloutId)
        #expect(cf.deletes.count == 1)
    }

    @Test("C24 on the model: duplicate registration and flow-context misuse (R5.5, R5.14)")
    func caseC24Model() throws {
        let r = try FixtureRunner("C24")
        try r.loadPolicy(r.node["policy"]!, #_sourceLocation)
        let cf = try r.bfe.registerCallout(r.scripted(Array(r.node["registered"]!.sequence!)[0]))
        let steps = Array(r.node["steps"]!.sequence!)
        #expect(try r.bfe.registerCallout(r.scripted(steps[0]["registered"]!)) == r.bfe.callout(key: r.key("K")).calloutId)
        expectStatus(.statusAlreadyExists) { try r.bfe.registerCallout(r.scripted(steps[1]["registered"]!)) }
        let flow1: UInt64 = 0xF10E_0001  // steps[2]: connect (I1), as: flow1
        let n = try r.bfe.registerCallout(r.scripted(steps[3]["registered"]!))
        expectStatus(.statusInvalidParameter) { try r.bfe.flowAssociateContext(flowId: flow1, layer: FE, calloutId: n, context: 0x1) }
        expectStatus(.statusInvalidParameter) { try r.bfe.flowAssociateContext(flowId: flow1, layer: FE, calloutId: cf, context: 0) }
        try r.bfe.flowAssociateContext(flowId: flow1, layer: FE, calloutId: cf, context: 0x1)
        expectStatus(.statusObjectNameExists) { try r.bfe.flowAssociateContext(flowId: flow1, layer: FE, calloutId: cf, context: 0x2) }
        #expect(r.bfe.flowContexts(flowId: flow1).map(\.context) == [0x1], "the refused association left the first one")
        // Not in the case: the flow ends and CF's flowDeleteFn sees the context it kept (R5.16).
        r.bfe.flowEnded(flowId: flow1)
        #expect(r.callouts[try r.key("CF")]!.flowDeletes == [FlowDeleteCall(layer: FE, calloutId: cf, flowContext: 0x1)])
    }
}
