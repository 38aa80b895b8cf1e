import BPFKit
import Foundation
import KernelABI

/// The pinned maps shared by every lfp program instance and process (bpf/lib/maps.h).
final class KernelMaps {
    let config: BPFMap
    let policy: BPFMap
    let subs: BPFMap
    let subSeq: BPFMap
    let subMask: BPFMap
    let subDrops: BPFMap
    let stats: BPFMap
    let workloads: BPFMap
    let sweep: BPFMap
    let flows: BPFMap
    let pends: BPFMap
    let destroy: BPFMap

    /// Open the pinned maps; when none are pinned yet, load the object's maps (no programs),
    /// which creates and pins them.
    static func open(_ cfg: EngineConfiguration, create: Bool) throws -> KernelMaps {
        let dir = cfg.mapsDirectory
        try StateTree.verify(root: cfg.bpffsRoot)  // no squatted directory, planted pin or symlink
        if !FileManager.default.fileExists(atPath: dir + "/lfp_config") {
            guard create else {
                throw EngineError.noKernelState(directory: dir)
            }
            let created = try prepareBPFFS(cfg)
            do {
                _ = try BPFObject(image: cfg.object, pinRoot: dir, loadPrograms: false)
            } catch {
                undo(created)
                throw error
            }
        }
        return try KernelMaps(dir: dir)
    }

    /// Mount bpffs if needed and make lfp's directories; returns the ones it created, so a
    /// failure right after can take them away again.
    @discardableResult
    static func prepareBPFFS(_ cfg: EngineConfiguration) throws -> [String] {
        try BPFFS.ensureMounted()
        // 0700 and root's alone, or refused (StateTree.swift).
        let created = try StateTree.prepare(root: cfg.bpffsRoot, subdirectories: [cfg.mapsDirectory, cfg.workloadsPinDirectory])
        guard BPFFS.isBPFFS(cfg.bpffsRoot) else {
            undo(created)
            throw EngineError.notOnBPFFS(path: cfg.bpffsRoot)
        }
        return created
    }

    /// Remove directories made by prepareBPFFS (deepest first), if still empty.
    static func undo(_ created: [String]) {
        for d in created.reversed() { rmdir(d) }
    }

    private init(dir: String) throws {
        config = try BPFMap.openPinned(dir + "/lfp_config")
        policy = try BPFMap.openPinned(dir + "/lfp_policy")
        subs = try BPFMap.openPinned(dir + "/lfp_subs")
        subSeq = try BPFMap.openPinned(dir + "/lfp_sub_seq")
        subMask = try BPFMap.openPinned(dir + "/lfp_sub_mask")
        subDrops = try BPFMap.openPinned(dir + "/lfp_sub_drops")
        stats = try BPFMap.openPinned(dir + "/lfp_stats")
        workloads = try BPFMap.openPinned(dir + "/lfp_workloads")
        sweep = try BPFMap.openPinned(dir + "/lfp_sweep")
        flows = try BPFMap.openPinned(dir + "/lfp_flows")
        pends = try BPFMap.openPinned(dir + "/lfp_pends")
        destroy = try BPFMap.openPinned(dir + "/lfp_destroy")
    }

    func readConfig() throws -> lfp_config {
        try config.lookup(key: UInt32(0), as: lfp_config.self) ?? lfp_config()
    }

    /// The full build in force (lfp_policy[0]), opened by its id; nil before any commit.
    func committedCells() throws -> BPFMap? {
        guard let id = try policy.lookup(key: UInt32(0), as: UInt32.self) else { return nil }
        return try BPFMap.open(id: id)
    }

    /// The heads of the base and of the delta in force on it (nil when none), read as the kernel
    /// reads them (classify.h, lfp_policy_view).
    func policyHeads() throws -> PolicyHeads? {
        guard let cells = try committedCells(), let base = try cells.lookup(key: UInt32(0), as: lfp_head.self) else { return nil }
        guard base.delta != 0, let head = try cells.lookup(key: base.delta, as: lfp_head.self), head.base_generation == base.generation
        else { return PolicyHeads(base: base, delta: nil) }
        return PolicyHeads(base: base, delta: head)
    }

    struct PolicyHeads {
        var base: lfp_head
        var delta: lfp_head?
        /// The generation in force: the delta's when one applies, else the base's.
        var generation: UInt64 { delta?.generation ?? base.generation }
    }

    /// The generation of the policy in force: the delta's when one applies, else the base's; nil
    /// before any commit.
    func policyGeneration() throws -> UInt64? {
        try policyHeads()?.generation
    }

    func stat(_ s: lfp_stat) throws -> UInt64 {
        try stats.lookupPerCPU(key: UInt32(s.rawValue)).reduce(0, &+)
    }
}
