// The boot unit (`lfp boot`): enforce the boot-time filters (FWPM_FILTER_FLAG_BOOTTIME) from
// early boot until the daemon starts, as WFP's boot-time filters hold from TCP/IP start until
// BFE initializes (R8.3). The daemon's first commit replaces them.

import FilterEngine
import FilterModel
import Foundation

public enum BootTime {
    public struct Outcome: Sendable {
        /// False when a daemon already runs (it owns the policy; nothing was done).
        public var enforced: Bool
        public var filters: Int
        public var generation: UInt64
    }

    /// Publishes the stored boot-time filters (with the persistent providers, sublayers and
    /// callouts they name) when no daemon runs.
    public static func enforce(engine: Engine, databasePath: String) throws -> Outcome {
        if DaemonLock.holder(engine.config) != nil { return Outcome(enforced: false, filters: 0, generation: 0) }
        var stored = Policy()
        if FileManager.default.fileExists(atPath: databasePath) {
            stored = try PersistentStore(path: databasePath).load()
        }
        let all = BaseFilteringEngine()
        try all.load(stored)
        let boot = all.copy(droppingFilters: { !$0.flags.contains(.bootTime) })
        let count = boot.snapshot().filters.count
        let commit = try engine.publish(boot) { generation in
            let snapshot = boot.snapshot()
            return CommittedPolicy.record(
                generation: generation, policyJSON: snapshot.exportJSON(), filterCount: snapshot.filters.count, extra: [("bootTime", "true")])
        }
        return Outcome(enforced: true, filters: count, generation: commit.generation)
    }
}
