// The base filtering engine: the runtime (FWPS) side of callouts. Registration and runtime ids,
// flow contexts, and the notifyFn calls a commit or an abort owes.
//
// Every callout function the engine calls from here (flowDeleteFn, DELETE_FILTER and
// ADD_FILTER_POST_COMMIT notifyFn) runs after the engine lock is released, because a callout may
// call back into the engine from another thread it waits for. Only ADD_FILTER runs under the
// lock: its answer decides whether the add happens (R4.13), so it must run inside the write.

import Foundation

/// A flow context a callout associated with a flow (FwpsFlowAssociateContext0, R5.14).
public struct FlowContext: Hashable, Sendable {
    public var flowId: UInt64
    public var layer: Layer
    public var calloutId: UInt32
    public var context: UInt64
}

/// The runtime callout state the engine keeps beside `registry` (under the engine lock).
struct CalloutRuntime {
    /// Runtime calloutId per registered key, and back (R5.5).
    var ids: [UUID: UInt32] = [:]
    var keys: [UInt32: UUID] = [:]
    /// The next id for a callout that has no FWPM object. FWPM calloutIds count up from 1, so
    /// runtime-only ids start at 2^31 and the two never meet.
    var nextId: UInt32 = 0x8000_0000
    /// Per flow, one context per (layer, calloutId) (R5.14).
    var flows: [UInt64: [Slot: Entry]] = [:]
    /// flowDeleteFn calls detached under the lock and not yet returned, per calloutId: the
    /// callout stays busy until they return, so a successful unregister is never followed by a
    /// flowDeleteFn call (R5.7).
    var deletesInFlight: [UInt32: Int] = [:]

    struct Slot: Hashable {
        var layer: Layer
        var calloutId: UInt32
    }

    struct Entry {
        var context: FlowContext
        var callout: any Callout
    }

    func busy(_ id: UInt32) -> Bool {
        deletesInFlight[id, default: 0] > 0 || flows.values.contains { $0.keys.contains { $0.calloutId == id } }
    }
}

/// A notifyFn call decided under the engine lock and made after it is released.
struct PendingNotify {
    let callout: any Callout
    let type: CalloutNotifyType
    let filter: Filter
}

extension BaseFilteringEngine {
    // MARK: Registration

    /// FwpsCalloutRegister: returns the runtime calloutId (R5.5): the FWPM callout object's
    /// calloutId when one with this key exists (committed, or in the open write transaction),
    /// else a fresh id that no FWPM callout object has (R5.3). A second registration of the same
    /// key fails with STATUS_FWP_ALREADY_EXISTS. No ADD_FILTER is replayed for filters that
    /// already exist (R5.10).
    @discardableResult
    public func registerCallout(_ c: any Callout) throws -> UInt32 {
        try locked {
            let key = c.calloutKey
            if registry[key] != nil {
                throw FWPError(.statusAlreadyExists, "callout \(key.lowerString) is already registered")
            }
            let inTxn = writeOwner.flatMap { sessions[$0]?.txn?.working.callouts[key] }
            let id: UInt32
            if let o = committed.callouts[key] ?? inTxn {
                id = o.object.calloutId
            } else {
                id = runtime.nextId
                runtime.nextId += 1
            }
            registry[key] = c
            runtime.ids[key] = id
            runtime.keys[id] = key
            return id
        }
    }

    /// FwpsCalloutUnregisterByKey: succeeds even while filters reference the callout (they then
    /// follow R5.6); STATUS_DEVICE_BUSY while a flow still carries one of its contexts (remove
    /// them with `flowRemoveContext` first); STATUS_FWP_CALLOUT_NOT_FOUND when not registered (R5.7).
    public func unregisterCallout(key: UUID) throws {
        try locked {
            guard let id = runtime.ids[key] else {
                throw FWPError(.statusCalloutNotFound, "callout \(key.lowerString) is not registered")
            }
            if runtime.busy(id) {
                throw FWPError(.statusDeviceBusy, "callout \(key.lowerString) still has flow contexts; remove them first")
            }
            registry[key] = nil
            runtime.ids[key] = nil
            runtime.keys[id] = nil
        }
    }

    /// FwpsCalloutUnregisterById: as `unregisterCallout(key:)`, by runtime calloutId (R5.7).
    public func unregisterCallout(id: UInt32) throws {
        try locked {
            guard let key = runtime.keys[id] else {
                throw FWPError(.statusCalloutNotFound, "no callout with runtime id \(id) is registered")
            }
            try unregisterCallout(key: key)
        }
    }

    public func isRegistered(_ key: UUID) -> Bool { locked { registry[key] != nil } }

    /// The registered callouts and their runtime calloutIds, by id.
    public func registeredCallouts() -> [(key: UUID, id: UInt32)] {
        locked { runtime.ids.map { (key: $0.key, id: $0.value) }.sorted { $0.id < $1.id } }
    }

    // MARK: Flow contexts

    /// FwpsFlowAssociateContext0 (R5.14): STATUS_FWP_CALLOUT_NOT_FOUND for an unregistered
    /// calloutId; STATUS_INVALID_PARAMETER for a zero context or a callout without flowDeleteFn;
    /// STATUS_OBJECT_NAME_EXISTS when the callout already has a context on that flow at that
    /// layer (remove it first). Contexts of different callouts coexist on one flow.
    public func flowAssociateContext(flowId: UInt64, layer: Layer, calloutId: UInt32, context: UInt64) throws {
        try locked {
            guard let key = runtime.keys[calloutId], let impl = registry[key] else {
                throw FWPError(.statusCalloutNotFound, "no callout with runtime id \(calloutId) is registered")
            }
            guard context != 0 else { throw FWPError(.statusInvalidParameter, "a flow context must be non-zero") }
            guard impl.hasFlowDelete else {
                throw FWPError(.statusInvalidParameter, "callout \(key.lowerString) has no flowDeleteFn, so it cannot associate flow contexts")
            }
            let slot = CalloutRuntime.Slot(layer: layer, calloutId: calloutId)
            if runtime.flows[flowId]?[slot] != nil {
                throw FWPError(
                    .statusObjectNameExists, "callout \(calloutId) already has a context on flow \(flowId) at \(layer.runtimeName)")
            }
            let c = FlowContext(flowId: flowId, layer: layer, calloutId: calloutId, context: context)
            runtime.flows[flowId, default: [:]][slot] = CalloutRuntime.Entry(context: c, callout: impl)
        }
    }

    /// FwpsFlowRemoveContext0 (R5.15): detaches the context and calls flowDeleteFn before it
    /// returns; STATUS_UNSUCCESSFUL when there is no such context. (WFP returns STATUS_PENDING
    /// when a classify is running on the flow; the model never defers the call.)
    public func flowRemoveContext(flowId: UInt64, layer: Layer, calloutId: UInt32) throws {
        let slot = CalloutRuntime.Slot(layer: layer, calloutId: calloutId)
        let detached = try locked {
            guard runtime.flows[flowId]?[slot] != nil else {
                throw FWPError(.statusUnsuccessful, "callout \(calloutId) has no context on flow \(flowId) at \(layer.runtimeName)")
            }
            return detach(flowId) { $0 == slot }
        }
        runFlowDeletes(detached)
    }

    /// The flow ended (the daemon calls this when the kernel reports the endpoint's release,
    /// abrupt ends included): every context still associated is detached and its callout's
    /// flowDeleteFn called once with it (R5.16). Returns the contexts detached.
    @discardableResult
    public func flowEnded(flowId: UInt64) -> [FlowContext] {
        let detached = locked { detach(flowId) { _ in true } }
        runFlowDeletes(detached)
        return detached.map(\.context)
    }

    /// The contexts associated with a flow, by layer and calloutId.
    public func flowContexts(flowId: UInt64) -> [FlowContext] {
        locked { (runtime.flows[flowId]?.values.map(\.context) ?? []).sorted(by: Self.flowOrder) }
    }

    /// The contexts one callout has associated, on every flow (the daemon removes them when the
    /// callout's host is gone).
    public func flowContexts(calloutId: UInt32) -> [FlowContext] {
        locked {
            runtime.flows.values.flatMap { $0.values.map(\.context) }.filter { $0.calloutId == calloutId }.sorted(by: Self.flowOrder)
        }
    }

    static func flowOrder(_ a: FlowContext, _ b: FlowContext) -> Bool {
        a.layer != b.layer ? a.layer < b.layer : a.calloutId < b.calloutId
    }

    /// Removes the slots of `flowId` that `which` selects and marks their flowDeleteFn calls in
    /// flight (under the lock).
    func detach(_ flowId: UInt64, _ which: (CalloutRuntime.Slot) -> Bool) -> [CalloutRuntime.Entry] {
        guard var slots = runtime.flows[flowId] else { return [] }
        var out: [CalloutRuntime.Entry] = []
        for s in slots.keys where which(s) {
            out.append(slots.removeValue(forKey: s)!)
            runtime.deletesInFlight[s.calloutId, default: 0] += 1
        }
        runtime.flows[flowId] = slots.isEmpty ? nil : slots
        return out.sorted { Self.flowOrder($0.context, $1.context) }
    }

    /// Calls flowDeleteFn for contexts `detach` returned, outside the lock.
    func runFlowDeletes(_ entries: [CalloutRuntime.Entry]) {
        for e in entries {
            e.callout.flowDelete(layer: e.context.layer, calloutId: e.context.calloutId, flowContext: e.context.context)
            locked {
                let n = runtime.deletesInFlight[e.context.calloutId, default: 1] - 1
                runtime.deletesInFlight[e.context.calloutId] = n > 0 ? n : nil
            }
        }
    }

    // MARK: notifyFn after commit and abort

    /// Makes `new` the committed store and returns the notifications that owes (R5.8, R5.9):
    /// DELETE_FILTER for every filter that is gone (deleted, or added and deleted again in the
    /// same transaction), then ADD_FILTER_POST_COMMIT for every filter a callout saw added, to
    /// callouts with `wantsCommitAddNotify`. Filters are told apart by their store sequence
    /// number, so a filter deleted and re-added under the same key and id counts as both.
    func install(_ new: Store) -> [PendingNotify] {
        var notices: [PendingNotify] = []
        if !registry.isEmpty {
            let live = Set(new.filters.values.lazy.map(\.seq))
            var gone = committed.filters.values.filter { !live.contains($0.seq) }.map(\.object)
            var posts: [Filter] = []
            for (seq, f) in new.notifiedAdds {
                if live.contains(seq) { posts.append(f) } else { gone.append(f) }
            }
            for f in gone.sorted(by: { $0.filterId < $1.filterId }) {
                if let impl = registered(for: f) { notices.append(PendingNotify(callout: impl, type: .deleteFilter, filter: f)) }
            }
            for f in posts.sorted(by: { $0.filterId < $1.filterId }) {
                if let impl = registered(for: f), impl.wantsCommitAddNotify {
                    notices.append(PendingNotify(callout: impl, type: .addFilterPostCommit, filter: f))
                }
            }
        }
        var w = new
        w.notifiedAdds = [:]
        committed = w
        return notices
    }

    /// The notifications owed when `abandoned` is thrown away (an abort, a refused commit, a
    /// failed write): DELETE_FILTER for each filter a callout saw added there and not already in
    /// `base` (the store the write started from), so a callout can free what its ADD_FILTER
    /// stored. (Deletes are only announced at commit, so an abort has nothing to undo for them.)
    func abandonNotices(_ abandoned: Store, base: Store) -> [PendingNotify] {
        abandoned.notifiedAdds.filter { base.notifiedAdds[$0.key] == nil }.values
            .sorted { $0.filterId < $1.filterId }
            .compactMap { f in registered(for: f).map { PendingNotify(callout: $0, type: .deleteFilter, filter: f) } }
    }

    func registered(for f: Filter) -> (any Callout)? { f.action.calloutKey.flatMap { registry[$0] } }

    /// Makes the notifyFn calls; the caller has released the lock (or holds it only because it
    /// called in from a callout on this thread).
    func deliver(_ notices: [PendingNotify]) {
        for n in notices {
            // The filter key goes with the add types only (R5.9); DELETE_FILTER's status is ignored.
            _ = n.callout.notify(n.type, filterKey: n.type == .deleteFilter ? nil : n.filter.filterKey, filter: n.filter)
        }
    }
}
