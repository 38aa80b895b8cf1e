import Foundation
import Testing

@testable import FilterModel

/// Objects a policy leaves without a key get one derived from their provider and name, so the
/// same file loaded again has the same keys (and, assigned in document order, the same ids).
@Suite("Derived keys")
struct DerivedKeyTests {
    static let policy = """
        providers:
          - displayData: { name: acme }
        sublayers:
          - displayData: { name: guard }
            weight: 0x100
        filters:
          - displayData: { name: block ssh }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            action: { type: FWP_ACTION_BLOCK }
          - displayData: { name: block ssh }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V6
            action: { type: FWP_ACTION_BLOCK }
          - displayData: { name: block ssh }
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            action: { type: FWP_ACTION_BLOCK }
          - displayData: { name: keyed }
            filterKey: 11111111-2222-4333-8444-555555555555
            layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
            action: { type: FWP_ACTION_PERMIT }
        """

    func load(_ text: String) throws -> Policy {
        let bfe = BaseFilteringEngine()
        try bfe.load(try Policy.parse(text))
        return bfe.snapshot()
    }

    @Test("the same document loaded twice (two engines): the same filterIds, filterKeys, sublayer and provider keys")
    func stable() throws {
        let a = try load(Self.policy), b = try load(Self.policy)
        #expect(a.filters.map(\.filterKey) == b.filters.map(\.filterKey))
        #expect(a.filters.map(\.filterId) == b.filters.map(\.filterId))
        #expect(a.sublayers.map(\.subLayerKey) == b.sublayers.map(\.subLayerKey))
        #expect(a.providers.map(\.providerKey) == b.providers.map(\.providerKey))
        #expect(a.exportJSON() == b.exportJSON(), "export lines up across reloads")
    }

    @Test("keys differ by layer and by repeat; a key the document gives is kept; version 8")
    func distinct() throws {
        let p = try load(Self.policy)
        let keys = p.filters.map(\.filterKey)
        #expect(Set(keys).count == 4)
        #expect(keys[3] == UUID(uuidString: "11111111-2222-4333-8444-555555555555"))
        for k in keys.prefix(3) { #expect(k.uuidString.dropFirst(14).first == "8", "\(k)") }
    }

    @Test("a key depends on provider, layer and name, not on position: adding a filter in front keeps the others' keys")
    func positionIndependent() throws {
        let before = try load(Self.policy)
        let inserted = Self.policy.replacingOccurrences(
            of: "filters:\n",
            with: "filters:\n  - displayData: { name: first }\n    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4\n    action: { type: FWP_ACTION_PERMIT }\n")
        let after = try load(inserted)
        #expect(Array(after.filters.map(\.filterKey).dropFirst()) == before.filters.map(\.filterKey))
        #expect(DerivedKey.make(["filter", "", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "block ssh"]) == before.filters[0].filterKey)
    }
}
