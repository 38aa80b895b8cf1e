// The base filtering engine: adds (with WFP's validation), deletes and gets of objects.

import Foundation

extension BaseFilteringEngine {

    // MARK: Adds

    /// FwpmProviderAdd0.
    @discardableResult
    public func addProvider(_ p: Provider, session: SessionHandle? = nil) throws -> UUID {
        try write(session) { w, h, st in try addProvider(p, &w, h, st) }
    }

    func addProvider(_ p0: Provider, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UUID {
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

    func addSublayer(_ s0: Sublayer, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UUID {
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

    func addCallout(_ c0: CalloutObject, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UInt32 {
        var c = c0
        try checkName(c.displayData, "callout")
        let known = CalloutFlags.persistent.rawValue | CalloutFlags.usesProviderContext.rawValue
        if c.flags.contains(.registered) { throw FWPError(.invalidFlags, "FWPM_CALLOUT_FLAG_REGISTERED is output only") }
        if c.flags.rawValue & ~known != 0 { throw FWPError(.invalidFlags, "unknown callout flags 0x\(String(c.flags.rawValue, radix: 16))") }
        if c.calloutKey.isZero { c.calloutKey = UUID() }
        if w.callouts[c.calloutKey] != nil { throw FWPError(.alreadyExists, "callout \(c.calloutKey.lowerString) already exists") }
        let lt = try admit(persistent: c.flags.contains(.persistent), providerKey: c.providerKey, w, h, st)
        // A callout registered before its FWPM object keeps its runtime id (R5.3).
        if let id = locked({ runtime.ids[c.calloutKey] }) {
            c.calloutId = id
        } else {
            c.calloutId = w.nextCalloutId
            w.nextCalloutId += 1
        }
        w.callouts[c.calloutKey] = Stored(object: c, lifetime: lt, seq: w.seq())
        return c.calloutId
    }

    /// FwpmProviderContextAdd0; returns the runtime id.
    @discardableResult
    public func addProviderContext(_ c: ProviderContext, session: SessionHandle? = nil) throws -> UInt64 {
        try write(session) { w, h, st in try addProviderContext(c, &w, h, st) }
    }

    func addProviderContext(_ c0: ProviderContext, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> UInt64 {
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

    func addFilter(_ f0: Filter, _ w: inout Store, _ h: SessionHandle, _ st: SessionState) throws -> Filter {
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
        // notifyFn of a registered callout may veto the add (R4.13, R5.9). It runs under the
        // engine lock, as the add must not happen unless it agrees.
        let impl = locked { registered(for: f) }
        if let impl, !impl.notify(.addFilter, filterKey: f.filterKey, filter: f) {
            throw FWPError(.calloutNotificationFailed, "callout \(f.action.calloutKey!.lowerString) refused FWPS_CALLOUT_NOTIFY_ADD_FILTER")
        }
        w.nextFilterId += 1
        let seq = w.seq()
        w.filters[f.filterKey] = Stored(object: f, lifetime: lt, seq: seq)
        // The callout now knows this filter: a commit owes it POST_COMMIT, an abort DELETE_FILTER.
        if impl != nil { w.notifiedAdds[seq] = f }
        return f
    }

    // MARK: Deletes

    func checkDelete(_ lt: ObjectLifetime, _ h: SessionHandle, _ st: SessionState, what: String) throws {
        if lt == .builtIn { throw FWPError(.builtinObject, "\(what) is built in") }
        if st.flags.contains(.dynamic) {
            switch lt {
            case .dynamic(let o) where o == h: return
            case .dynamic: throw FWPError(.wrongSession, "\(what) belongs to another dynamic session")
            default: throw FWPError(.dynamicSessionInProgress, "a dynamic session can only delete its own objects; \(what) is \(lt)")
            }
        }
    }

    /// FwpmFilterDeleteByKey0. The callout's DELETE_FILTER comes when the delete commits (R5.9).
    public func deleteFilter(key: UUID, session: SessionHandle? = nil) throws {
        try write(session) { w, h, st in
            guard let f = w.filters[key] else { throw FWPError(.filterNotFound, "filter \(key.lowerString) does not exist") }
            try checkDelete(f.lifetime, h, st, what: "filter \(key.lowerString)")
            w.filters[key] = nil
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
}
