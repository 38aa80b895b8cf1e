import BPFKit
import Foundation
import KernelABI

/// `lfp status`: what is attached, which policy is in force, how full the maps are, and how
/// many events were delivered and dropped.
public struct EngineStatus: Encodable, Sendable {
    public struct WorkloadStatus: Encodable, Sendable {
        public var name: String
        public var cgroupPath: String
        public var cgroupId: UInt64
        public var createdByLfp: Bool
        public var programs: [String]  // links pinned right now
        public var healthy: Bool  // every expected link pinned and the cgroup present
    }
    public struct MapFill: Encodable, Sendable {
        public var name: String
        public var used: Int
        public var capacity: Int
    }
    public struct Subscriber: Encodable, Sendable {
        public var slot: UInt32
        public var submitted: UInt64
        public var dropped: UInt64
        public var droppedPerCPU: [UInt64]
    }
    public var workloads: [WorkloadStatus]
    public var policyGeneration: UInt64
    public var kernelStatePresent: Bool
    public var maps: [MapFill]
    public var classifications: UInt64
    public var permits: UInt64
    public var blocks: UInt64
    public var eventsDelivered: UInt64
    public var eventsWithoutSubscriber: UInt64
    /// Dropped events summed over every slot's per-CPU counters since each slot was last claimed.
    public var eventsDropped: UInt64
    public var subscribers: [Subscriber]

    public func render() -> String {
        var lines: [String] = []
        lines.append("policy generation: \(policyGeneration)\(kernelStatePresent ? "" : " (no kernel state: nothing loaded or attached)")")
        lines.append("workloads: \(workloads.isEmpty ? "none" : "")")
        for w in workloads {
            lines.append(
                "  \(w.name)  cgroup=\(w.cgroupPath) id=\(w.cgroupId)\(w.createdByLfp ? " (lfp run)" : "")  programs=\(w.programs.count)\(w.healthy ? "" : "  DEGRADED")"
            )
        }
        lines.append("maps:")
        for m in maps { lines.append("  \(m.name): \(m.used)/\(m.capacity)") }
        lines.append("classifications: \(classifications) (permit \(permits), block \(blocks))")
        lines.append("events: delivered \(eventsDelivered), dropped \(eventsDropped), with no subscriber \(eventsWithoutSubscriber)")
        for s in subscribers {
            lines.append(
                "  subscriber slot \(s.slot): submitted \(s.submitted), dropped \(s.dropped) (per CPU: \(s.droppedPerCPU.map(String.init).joined(separator: " ")))"
            )
        }
        return lines.joined(separator: "\n")
    }
}

extension Engine {
    public func status() throws -> EngineStatus {
        try StateTree.verify(root: config.stateDirectory)
        try StateTree.verify(root: config.bpffsRoot)
        let ws = workloads().map { w -> EngineStatus.WorkloadStatus in
            let pins = ((try? FileManager.default.contentsOfDirectory(atPath: linkDirectory(w.name))) ?? []).sorted()
            return .init(
                name: w.name, cgroupPath: w.cgroupPath, cgroupId: w.cgroupId, createdByLfp: w.ownsCgroup,
                programs: pins,
                healthy: Set(pins) == Set(w.programs) && FileManager.default.fileExists(atPath: w.cgroupPath))
        }
        guard FileManager.default.fileExists(atPath: config.mapsDirectory + "/lfp_config") else {
            return EngineStatus(
                workloads: ws, policyGeneration: 0, kernelStatePresent: false, maps: [],
                classifications: 0, permits: 0, blocks: 0, eventsDelivered: 0,
                eventsWithoutSubscriber: 0, eventsDropped: 0, subscribers: [])
        }
        try requireRoot("lfp status")
        let maps = try KernelMaps.open(config, create: false)
        let cfg = try maps.readConfig()
        let cells = Int(try maps.committedCells()?.maxEntries ?? 0)
        let filters = (try? committedPolicy()?.policy.filters.count) ?? 0
        var subscribers: [EngineStatus.Subscriber] = []
        var dropped: UInt64 = 0
        for slot in 0..<UInt32(LFP_MAX_SUBSCRIBERS) {
            let perCPU = try maps.subDrops.lookupPerCPU(key: slot)
            let d = perCPU.reduce(0, &+)
            dropped &+= d
            if try maps.subs.lookup(key: slot, as: UInt32.self) != nil {
                subscribers.append(
                    .init(
                        slot: slot, submitted: try maps.subSeq.lookup(key: slot, as: UInt64.self) ?? 0,
                        dropped: d, droppedPerCPU: perCPU))
            }
        }
        return EngineStatus(
            workloads: ws, policyGeneration: (try? maps.policyGeneration() ?? cfg.generation) ?? cfg.generation, kernelStatePresent: true,
            maps: [
                .init(name: "filters (LFP_MAX_FILTERS)", used: filters ?? 0, capacity: config.maxFilters),
                .init(name: "lfp_policy cells (32 B each)", used: cells, capacity: cells),
                .init(name: "lfp_subs", used: subscribers.count, capacity: Int(LFP_MAX_SUBSCRIBERS)),
                .init(name: "lfp_workloads", used: ws.count, capacity: Int(LFP_MAX_WORKLOADS)),
            ],
            classifications: try maps.stat(LFP_STAT_CLASSIFY), permits: try maps.stat(LFP_STAT_PERMIT),
            blocks: try maps.stat(LFP_STAT_BLOCK), eventsDelivered: try maps.stat(LFP_STAT_EVENTS),
            eventsWithoutSubscriber: try maps.stat(LFP_STAT_NO_SUBSCRIBER), eventsDropped: dropped,
            subscribers: subscribers)
    }
}
