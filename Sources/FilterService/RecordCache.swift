// The daemon's record of the enforced objects, assembled from a JSON text per object that is
// kept from commit to commit: exporting 100k filters afresh took about 2 s per commit, an
// object-level add pays now only for the objects that changed.

import FilterModel
import Foundation

final class RecordCache: @unchecked Sendable {  // used by one commit at a time
    private var texts: [UUID: (object: AnyHashable, text: String)] = [:]

    private func text<T: Hashable>(_ key: UUID, _ object: T, _ make: (T) -> String, _ seen: inout Set<UUID>) -> String {
        seen.insert(key)
        if let c = texts[key], c.object == AnyHashable(object) { return c.text }
        let t = make(object)
        texts[key] = (AnyHashable(object), t)
        return t
    }

    /// The policy document (JSON) of `p`; texts of objects no longer in `p` are dropped.
    func document(_ p: Policy) -> String {
        var seen = Set<UUID>()
        let providers = p.providers.map { text($0.providerKey, $0, PolicyJSON.fragment, &seen) }
        let sublayers = p.sublayers.map { text($0.subLayerKey, $0, PolicyJSON.fragment, &seen) }
        let callouts = p.callouts.map { text($0.calloutKey, $0, PolicyJSON.fragment, &seen) }
        let contexts = p.providerContexts.map { text($0.providerContextKey, $0, PolicyJSON.fragment, &seen) }
        let filters = p.filters.map { text($0.filterKey, $0, PolicyJSON.fragment, &seen) }
        if seen.count != texts.count { texts = texts.filter { seen.contains($0.key) } }
        return PolicyJSON.document(providers: providers, sublayers: sublayers, callouts: callouts, providerContexts: contexts, filters: filters)
    }
}
