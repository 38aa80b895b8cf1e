// The base filtering engine: enumeration, policy documents and net-event subscriptions.

import Foundation

extension BaseFilteringEngine {
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
    public func load(_ policy: Policy, session: SessionHandle? = nil, keepingFilterIds: Bool = false) throws -> [UInt64] {
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
            var taken = keepingFilterIds ? Set(w.filters.values.map { $0.object.filterId }) : []
            for (i, f) in policy.filters.enumerated() {
                var f = f
                let id = f.filterId
                f.filterId = 0
                f.effectiveWeight = 0
                if keepingFilterIds && id != 0 {
                    // A restore (the daemon's restart): the filter keeps the id it had.
                    if !taken.insert(id).inserted { throw FWPError(.alreadyExists, "filters[\(i)]: filterId \(id) is taken") }
                    let saved = w.nextFilterId
                    w.nextFilterId = id
                    ids.append(try at("filters[\(i)]") { try addFilter(f, &w, h, st).filterId })
                    w.nextFilterId = max(saved, id + 1)
                } else {
                    ids.append(try at("filters[\(i)]") { try addFilter(f, &w, h, st).filterId })
                }
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
