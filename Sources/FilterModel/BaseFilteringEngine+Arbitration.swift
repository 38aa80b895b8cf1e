// The base filtering engine: WFP's arbitration (rule book section 1), pure: `lfp classify` and the
// kernel compiler both rely on it.

import Foundation

extension BaseFilteringEngine {
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
            out[layer] = subs.map { sl in (sl.object, Self.evaluationOrder(bySub[sl.object.subLayerKey]!)) }
        }
        return out
    }

    func arbitrationOrder(layer: Layer, store s: Store, includeDisabled: Bool) -> [(sublayer: Sublayer, filters: [Filter])] {
        var bySub: [UUID: [Filter]] = [:]
        for f in s.filters.values.map(\.object) where f.layerKey == layer {
            if f.flags.contains(.disabled) && !includeDisabled { continue }
            bySub[f.subLayerKey, default: []].append(f)
        }
        let subs = s.sublayers.values.filter { bySub[$0.object.subLayerKey] != nil }.sorted { a, b in
            if a.object.weight != b.object.weight { return a.object.weight > b.object.weight }
            return a.seq < b.seq
        }
        return subs.map { sl in (sl.object, Self.evaluationOrder(bySub[sl.object.subLayerKey]!)) }
    }

    /// One sublayer's filters in evaluation order: effective weight, highest first; ties by
    /// filterId (R1.3, R1.7). The keys are sorted, not the filters: moving whole filters in a
    /// sort was a tenth of a 100k-filter commit.
    static func evaluationOrder(_ filters: [Filter]) -> [Filter] {
        let keys = filters.indices.map { (weight: filters[$0].effectiveWeight, id: filters[$0].filterId, at: $0) }
        return keys.sorted { a, b in a.weight != b.weight ? a.weight > b.weight : a.id < b.id }.map { filters[$0.at] }
    }

    /// Computes WFP's verdict for `values` at `layer` (rule book §1) with the full trace.
    /// `metadata` reaches the callouts (R5.11); the verdict never depends on it.
    ///
    /// The callouts run outside the engine's lock, on a snapshot of the committed objects taken
    /// under it: a callout (in the daemon, one in another process) may call back into the engine
    /// from its classifyFn, e.g. FwpsFlowAssociateContext0, as WFP allows.
    public func classify(layer: Layer, values: IncomingValues, metadata: ClassifyMetadata = .init()) -> ClassifyResult {
        let (store, registry, order) = locked { () -> (Store, [UUID: any Callout], [(sublayer: Sublayer, filters: [Filter])]) in
            let order = classifyOrder[layer] ?? arbitrationOrder(layer: layer, store: committed, includeDisabled: true)
            classifyOrder[layer] = order
            return (committed, self.registry, order)
        }
        do {
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
                            rights: right ? .actionWrite : [], currentAction: decided, metadata: metadata)
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
