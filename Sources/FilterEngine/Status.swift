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
        /// The cgroup now at `cgroupPath` (its inode): differs from `cgroupId` when it was
        /// removed and made again; nil when it is gone.
        public var liveCgroupId: UInt64?
        /// lfp's links the kernel has on the workload's cgroup (pinned under the workload, or
        /// pinned nowhere), as the kernel reports them.
        public var links: [KernelLink]
        /// True when nothing is in `problems`: the cgroup is the one attached, every program's
        /// link is pinned, holds it at its hook, and the kernel lists the program there.
        public var healthy: Bool
        public var problems: [HealthProblem]
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
    /// False when anything below is not as lfp recorded it (`problems`, and each workload's);
    /// `lfp status` then exits with `EngineStatus.degradedExitCode`.
    public var healthy: Bool
    /// Problems not of one workload: lost maps or bpffs root, orphan links.
    public var problems: [HealthProblem]
    public var workloads: [WorkloadStatus]
    /// lfp links in the kernel that no workload lists (`lfp detach --orphans` removes them).
    public var orphanLinks: [KernelLink]
    /// lfp links the kernel has on the cgroups of lfp's workloads, pinned or not.
    public var kernelLinks: Int
    public var policyGeneration: UInt64
    /// The shared maps are pinned (lfp_config is there).
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
    /// The socket of the `lfp daemon` that owns the policy, nil when none runs (the CLI then
    /// works directly).
    public var daemon: String? = nil

    /// The exit status of `lfp status` when it is not healthy (1 stays "could not tell").
    public static let degradedExitCode: Int32 = 3

    public func render() -> String {
        var lines: [String] = []
        lines.append("health: \(healthy ? "ok" : "DEGRADED")")
        for p in problems { lines.append("  problem (\(p.kind.rawValue)): \(p.message)") }
        let noState =
            kernelLinks > 0
            ? " (maps not pinned, but \(kernelLinks) lfp links still enforce in the kernel)"
            : workloads.isEmpty && problems.isEmpty
                ? " (no kernel state: nothing loaded or attached)" : " (maps not pinned: nothing is enforced)"
        lines.append("policy generation: \(policyGeneration)\(kernelStatePresent ? "" : noState)")
        lines.append("daemon: \(daemon.map { "running (socket \($0))" } ?? "none (lfp commands work directly)")")
        lines.append("workloads: \(workloads.isEmpty ? "none" : "")")
        for w in workloads {
            lines.append(
                "  \(w.name)  cgroup=\(w.cgroupPath) id=\(w.cgroupId)\(w.createdByLfp ? " (lfp run)" : "")  programs=\(w.programs.count)\(w.healthy ? "" : "  DEGRADED")"
            )
            for p in w.problems { lines.append("    problem (\(p.kind.rawValue)): \(p.message)") }
        }
        if !orphanLinks.isEmpty {
            lines.append("orphan links (no workload lists them; `lfp detach --orphans` removes them):")
            for l in orphanLinks {
                let cgroup = l.cgroupPath.map { " \($0)" } ?? ""
                let pin = l.pinPath.map { "  pinned at \($0)" } ?? "  pinned nowhere"
                lines.append("  link \(l.linkId): \(l.program) (\(l.attachType)) on cgroup id \(l.cgroupId)\(cgroup)\(pin)")
            }
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
        var s = try statusWithoutDaemon()
        s.daemon = DaemonLock.holder(config)
        return s
    }

    func statusWithoutDaemon() throws -> EngineStatus {
        try StateTree.verify(root: config.stateDirectory)
        try StateTree.verify(root: config.bpffsRoot)
        try requireRoot("lfp status")
        let registered = workloads()
        let inventory = try LinkInventory.scan(self, workloads: registered)
        let attachTypes = (try? BPFKernel.expectedAttachTypes(of: config.object)) ?? [:]
        let ws = registered.map { w -> EngineStatus.WorkloadStatus in
            let pins = ((try? FileManager.default.contentsOfDirectory(atPath: linkDirectory(w.name))) ?? []).sorted()
            let h = health(of: w, inventory: inventory, expectedAttachTypes: attachTypes)
            return .init(
                name: w.name, cgroupPath: w.cgroupPath, cgroupId: w.cgroupId, createdByLfp: w.ownsCgroup,
                programs: pins, liveCgroupId: h.liveCgroupId, links: h.links, healthy: h.problems.isEmpty,
                problems: h.problems)
        }
        let orphans = inventory.orphans(registered: registered, inProgress: Engine.attachesInProgress(registered))
        var problems: [HealthProblem] = []
        let mapsPinned = FileManager.default.fileExists(atPath: config.mapsDirectory + "/lfp_config")
        let policyRecorded = FileManager.default.fileExists(atPath: config.policyFile)
        let kernelLinks = inventory.kernel.count
        if !FileManager.default.fileExists(atPath: config.bpffsRoot) && (!registered.isEmpty || policyRecorded) {
            problems.append(
                .init(
                    .bpffsRootMissing,
                    "\(config.bpffsRoot) is gone (removed?) while \(registered.count) workload(s)\(policyRecorded ? " and a policy" : "") are recorded: "
                        + (kernelLinks == 0
                            ? "nothing is enforced (the links went with their pins)"
                            : "\(kernelLinks) lfp links still enforce the policy they were loaded with, which no commit can change")))
        } else if !mapsPinned && !registered.isEmpty {
            problems.append(
                .init(
                    .mapsMissing,
                    "the shared maps are not pinned under \(config.mapsDirectory) (removed?): a policy commit cannot reach the attached programs and no event can be read"
                ))
        }
        if !mapsPinned && policyRecorded {
            problems.append(
                .init(
                    .policyNotInKernel,
                    "a policy is recorded in \(config.policyFile) but the kernel holds none (no lfp_config pinned): load it again with `lfp policy load`"
                ))
        }
        if !orphans.isEmpty {
            problems.append(
                .init(
                    .orphanLinks,
                    "\(orphans.count) lfp links in the kernel are listed by no workload (an attach or detach was interrupted, or a pin was removed): `lfp detach --orphans` removes them",
                    linkIds: orphans.map(\.linkId)))
        }
        let healthy = problems.isEmpty && ws.allSatisfy(\.healthy)
        guard mapsPinned else {
            return EngineStatus(
                healthy: healthy, problems: problems, workloads: ws, orphanLinks: orphans, kernelLinks: kernelLinks,
                policyGeneration: 0, kernelStatePresent: false, maps: [],
                classifications: 0, permits: 0, blocks: 0, eventsDelivered: 0,
                eventsWithoutSubscriber: 0, eventsDropped: 0, subscribers: [])
        }
        let maps = try KernelMaps.open(config, create: false)
        let cfg = try maps.readConfig()
        let cells = Int(try maps.committedCells()?.maxEntries ?? 0)
        // In use: the full build's cells, and the spare ones up to the end of the delta in force.
        let heads = try maps.policyHeads()
        let cellsUsed = heads.map { h in h.delta.map { Int(h.base.delta) + Int($0.ncells) } ?? Int(h.base.ncells) } ?? 0
        let filters = committedFilterCount()
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
            healthy: healthy, problems: problems, workloads: ws, orphanLinks: orphans, kernelLinks: kernelLinks,
            policyGeneration: heads?.generation ?? cfg.generation, kernelStatePresent: true,
            maps: [
                .init(name: "filters (LFP_MAX_FILTERS)", used: filters, capacity: config.maxFilters),
                .init(name: "lfp_policy cells (32 B each)", used: cellsUsed, capacity: cells),
                .init(name: "lfp_subs", used: subscribers.count, capacity: Int(LFP_MAX_SUBSCRIBERS)),
                .init(name: "lfp_workloads", used: ws.count, capacity: Int(LFP_MAX_WORKLOADS)),
            ],
            classifications: try maps.stat(LFP_STAT_CLASSIFY), permits: try maps.stat(LFP_STAT_PERMIT),
            blocks: try maps.stat(LFP_STAT_BLOCK), eventsDelivered: try maps.stat(LFP_STAT_EVENTS),
            eventsWithoutSubscriber: try maps.stat(LFP_STAT_NO_SUBSCRIBER), eventsDropped: dropped,
            subscribers: subscribers)
    }
}
