import BPFKit
import Foundation
import KernelABI

/// The pinned maps shared by every lfp program instance and process (bpf/lib/maps.h).
final class KernelMaps {
    let config: BPFMap
    let layers: BPFMap
    let rules: BPFMap
    let subs: BPFMap
    let subSeq: BPFMap
    let subDrops: BPFMap
    let stats: BPFMap
    let workloads: BPFMap
    let sweep: BPFMap

    static let names = [
        "lfp_config", "lfp_layers", "lfp_rules", "lfp_subs", "lfp_sub_seq", "lfp_sub_drops",
        "lfp_stats", "lfp_sk", "lfp_workloads",
    ]

    /// Open the pinned maps; when none are pinned yet, load the object's maps (no programs),
    /// which creates and pins them.
    static func open(_ cfg: EngineConfiguration, create: Bool) throws -> KernelMaps {
        let dir = cfg.mapsDirectory
        if !FileManager.default.fileExists(atPath: dir + "/lfp_config") {
            guard create else {
                throw EngineError("lfp has no kernel state yet (nothing pinned under \(dir)): load a policy or attach a workload first")
            }
            try prepareBPFFS(cfg)
            _ = try BPFObject(path: cfg.objectPath, pinRoot: dir, loadPrograms: false)
        }
        return try KernelMaps(dir: dir)
    }

    static func prepareBPFFS(_ cfg: EngineConfiguration) throws {
        try BPFFS.ensureMounted()
        for d in [cfg.bpffsRoot, cfg.mapsDirectory, cfg.workloadsPinDirectory] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        guard BPFFS.isBPFFS(cfg.bpffsRoot) else {
            throw EngineError("\(cfg.bpffsRoot) is not on a bpf filesystem; set LFP_BPFFS_ROOT to a directory under a bpffs mount")
        }
    }

    private init(dir: String) throws {
        config = try BPFMap.openPinned(dir + "/lfp_config")
        layers = try BPFMap.openPinned(dir + "/lfp_layers")
        rules = try BPFMap.openPinned(dir + "/lfp_rules")
        subs = try BPFMap.openPinned(dir + "/lfp_subs")
        subSeq = try BPFMap.openPinned(dir + "/lfp_sub_seq")
        subDrops = try BPFMap.openPinned(dir + "/lfp_sub_drops")
        stats = try BPFMap.openPinned(dir + "/lfp_stats")
        workloads = try BPFMap.openPinned(dir + "/lfp_workloads")
        sweep = try BPFMap.openPinned(dir + "/lfp_sweep")
    }

    func readConfig() throws -> lfp_config {
        try config.lookup(key: UInt32(0), as: lfp_config.self) ?? lfp_config()
    }

    func stat(_ s: lfp_stat) throws -> UInt64 {
        try stats.lookupPerCPU(key: UInt32(s.rawValue)).reduce(0, &+)
    }
}
