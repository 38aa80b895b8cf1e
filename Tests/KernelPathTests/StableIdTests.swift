import FilterEngine
import Foundation
import Testing

/// `lfp policy load` of the same file again: the same filterIds and filterKeys, so `policy
/// show`, `export`, a diff of two exports and the events' filterKey line up across reloads.
@Suite("Stable ids across reloads", .serialized)
struct StableIdTests {
    @Test("loading the same file again keeps every filterId and filterKey")
    func reload() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        let two =
            CLITests.good + """

                  - displayData: { name: block-10 }
                    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                    filterCondition:
                      - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 10 } }
                    action: { type: FWP_ACTION_BLOCK }
                """
        let file = try CLITests.write(two)
        let other = try CLITests.write(CLITests.good)
        defer { [file, other].forEach { try? FileManager.default.removeItem(atPath: $0) } }
        func load(_ path: String) throws -> [Int] {
            let r = try CLITests.run(["policy", "load", "--json", path], env: env)
            try #require(r.status == 0, "\(r)")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            return try #require(obj["filterIds"] as? [Int])
        }
        let ids = try load(file)
        let shown = try CLITests.run(["policy", "show", "--json"], env: env).stdout
        _ = try load(other)  // something else in between
        #expect(try load(file) == ids)
        #expect(try CLITests.run(["policy", "show", "--json"], env: env).stdout == shown, "same keys and ids")
        #expect(shown.contains("\"filterKey\""), "\(shown)")
    }
}
