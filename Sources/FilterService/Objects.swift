// Object-level calls: delete, get and enumerate by kind, and the replace of a document's scope
// that `lfp policy load` is.

import FilterModel
import Foundation
import ServiceProtocol

extension FilterService {
    static func uuid(_ s: String?, _ what: String) throws -> UUID {
        guard let s, let u = UUID(uuidString: s) else { throw FWPError(.invalidParameter, "\(what): not a GUID: \(s ?? "none")") }
        return u
    }

    func delete(_ r: Request, _ s: SessionHandle) throws {
        guard let kind = r.kind else { throw FWPError(.invalidParameter, "delete needs a kind") }
        switch (kind, r.objectId) {
        case (.filter, let id?): try bfe.deleteFilter(id: id, session: s)
        case (.filter, nil): try bfe.deleteFilter(key: try Self.uuid(r.key, "key"), session: s)
        case (.callout, let id?): try bfe.deleteCallout(id: UInt32(truncatingIfNeeded: id), session: s)
        case (.callout, nil): try bfe.deleteCallout(key: try Self.uuid(r.key, "key"), session: s)
        case (.providerContext, let id?): try bfe.deleteProviderContext(id: id, session: s)
        case (.providerContext, nil): try bfe.deleteProviderContext(key: try Self.uuid(r.key, "key"), session: s)
        case (.sublayer, _): try bfe.deleteSublayer(key: try Self.uuid(r.key, "key"), session: s)
        case (.provider, _): try bfe.deleteProvider(key: try Self.uuid(r.key, "key"), session: s)
        }
    }

    func get(_ r: Request, _ s: SessionHandle) throws -> Policy {
        guard let kind = r.kind else { throw FWPError(.invalidParameter, "get needs a kind") }
        switch (kind, r.objectId) {
        case (.filter, let id?): return Policy(filters: [try bfe.filter(id: id, session: s)])
        case (.filter, nil): return Policy(filters: [try bfe.filter(key: try Self.uuid(r.key, "key"), session: s)])
        case (.callout, let id?): return Policy(callouts: [try bfe.callout(id: UInt32(truncatingIfNeeded: id), session: s)])
        case (.callout, nil): return Policy(callouts: [try bfe.callout(key: try Self.uuid(r.key, "key"), session: s)])
        case (.providerContext, _):
            if let id = r.objectId {
                guard let c = bfe.providerContexts(session: s).first(where: { $0.providerContextId == id }) else {
                    throw FWPError(.providerContextNotFound, "provider context \(id) does not exist")
                }
                return Policy(providerContexts: [c])
            }
            return Policy(providerContexts: [try bfe.providerContext(key: try Self.uuid(r.key, "key"), session: s)])
        case (.sublayer, _): return Policy(sublayers: [try bfe.sublayer(key: try Self.uuid(r.key, "key"), session: s)])
        case (.provider, _): return Policy(providers: [try bfe.provider(key: try Self.uuid(r.key, "key"), session: s)])
        }
    }

    /// Fwpm*Enum0: filters through FWPM_FILTER_ENUM_TEMPLATE0; the other kinds by provider.
    func enumerate(_ r: Request, _ s: SessionHandle) throws -> Policy {
        guard let kind = r.kind else { throw FWPError(.invalidParameter, "enumerate needs a kind") }
        let t = r.template ?? WireEnumTemplate()
        let provider = try t.providerKey.map { try Self.uuid($0, "template.providerKey") }
        switch kind {
        case .filter:
            var template = FilterEnumTemplate()
            template.providerKey = provider
            if let l = t.layer {
                guard let layer = Layer(name: l) else { throw FWPError(.layerNotFound, "unknown layer \(l)") }
                template.layerKey = layer
            }
            if let f = t.flags { template.flags = FilterEnumTemplate.Flags(rawValue: f) }
            if let e = t.enumType {
                guard let et = FilterEnumTemplate.EnumType(rawValue: e) else { throw FWPError(.invalidEnumerator, "enumType \(e)") }
                template.enumType = et
            }
            template.calloutKey = try t.calloutKey.map { try Self.uuid($0, "template.calloutKey") }
            return Policy(filters: try bfe.filters(matching: template, session: s))
        case .provider:
            return Policy(providers: bfe.providers(session: s).filter { provider == nil || $0.providerKey == provider })
        case .sublayer:
            return Policy(sublayers: bfe.sublayers(session: s).filter { provider == nil || $0.providerKey == provider })
        case .callout:
            return Policy(callouts: bfe.callouts(session: s).filter { provider == nil || $0.providerKey == provider })
        case .providerContext:
            return Policy(providerContexts: bfe.providerContexts(session: s).filter { provider == nil || $0.providerKey == provider })
        }
    }

    /// Deletes, in `session`'s transaction, every object in `doc`'s scope: the objects of the
    /// providers it declares, and when it has objects without a provider, every object without
    /// one. Other tools' providers are untouched, and so are live sessions' dynamic objects.
    static func replace(_ bfe: BaseFilteringEngine, _ doc: Policy, session s: SessionHandle?) throws {
        let scope = Set(doc.providers.map(\.providerKey))
        let unowned =
            doc.sublayers.contains { $0.providerKey == nil } || doc.callouts.contains { $0.providerKey == nil }
            || doc.providerContexts.contains { $0.providerKey == nil } || doc.filters.contains { $0.providerKey == nil }
        func inScope(_ key: UUID, _ provider: UUID?) -> Bool {
            switch bfe.lifetime(ofObject: key, session: s) {
            case .dynamic?, .builtIn?, nil: return false
            default: return provider.map(scope.contains) ?? unowned
            }
        }
        let now = bfe.snapshot(session: s)
        for f in now.filters where inScope(f.filterKey, f.providerKey) { try bfe.deleteFilter(key: f.filterKey, session: s) }
        for c in now.providerContexts where inScope(c.providerContextKey, c.providerKey) {
            try bfe.deleteProviderContext(key: c.providerContextKey, session: s)
        }
        for c in now.callouts where inScope(c.calloutKey, c.providerKey) { try bfe.deleteCallout(key: c.calloutKey, session: s) }
        for l in now.sublayers where inScope(l.subLayerKey, l.providerKey) { try bfe.deleteSublayer(key: l.subLayerKey, session: s) }
        for p in now.providers where scope.contains(p.providerKey) && inScope(p.providerKey, p.providerKey) {
            try bfe.deleteProvider(key: p.providerKey, session: s)
        }
    }

    /// `lfp policy load` in session `s`: one transaction that deletes `doc`'s scope and adds its
    /// objects (all or nothing). Returns the new filterIds.
    func replaceInTransaction(_ doc: Policy, session s: SessionHandle) throws -> [UInt64] {
        try bfe.beginTransaction(s)
        do {
            try Self.replace(bfe, doc, session: s)
            let ids = try bfe.load(doc, session: s)
            try bfe.commitTransaction(s)
            return ids
        } catch {
            try? bfe.abortTransaction(s)
            throw error
        }
    }

    /// The engine as it would be after `replace(doc)` (a copy; nothing is committed).
    func candidate(after doc: Policy, session s: SessionHandle) throws -> BaseFilteringEngine {
        let scratch = bfe.copy(droppingFilters: { _ in false })
        try Self.replace(scratch, doc, session: nil)
        _ = try scratch.load(doc)
        return scratch
    }

    /// Objects added, deleted and changed from `a` to `b`, by key (runtime ids aside).
    public static func diff(from a: Policy, to b: Policy) -> PolicyDiff {
        var d = PolicyDiff()
        func compare<T: Hashable>(_ kind: ObjectKind, _ xs: [T], _ ys: [T], key: (T) -> UUID, provider: (T) -> UUID?, normal: (T) -> T) {
            let old = Dictionary(xs.map { (key($0), normal($0)) }, uniquingKeysWith: { x, _ in x })
            let new = Dictionary(ys.map { (key($0), normal($0)) }, uniquingKeysWith: { x, _ in x })
            for y in ys {
                let k = key(y)
                let change = ObjectChange(change: .add, kind: kind, key: k.lowerString, providerKey: provider(y)?.lowerString)
                if let o = old[k] {
                    if o != new[k] { d.changed.append(change) }
                } else {
                    d.added.append(change)
                }
            }
            for x in xs where new[key(x)] == nil {
                d.deleted.append(ObjectChange(change: .delete, kind: kind, key: key(x).lowerString, providerKey: provider(x)?.lowerString))
            }
        }
        compare(.provider, a.providers, b.providers, key: \.providerKey, provider: { _ in nil }, normal: { $0 })
        compare(.sublayer, a.sublayers, b.sublayers, key: \.subLayerKey, provider: \.providerKey, normal: { $0 })
        compare(.callout, a.callouts, b.callouts, key: \.calloutKey, provider: \.providerKey) {
            var c = $0
            c.calloutId = 0
            return c
        }
        compare(.providerContext, a.providerContexts, b.providerContexts, key: \.providerContextKey, provider: \.providerKey) {
            var c = $0
            c.providerContextId = 0
            return c
        }
        compare(.filter, a.filters, b.filters, key: \.filterKey, provider: \.providerKey) {
            var f = $0
            f.filterId = 0
            f.effectiveWeight = 0
            return f
        }
        return d
    }
}
