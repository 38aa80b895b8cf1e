import BPFKit
import Foundation

/// One thing `lfp status` found not as lfp recorded it, with the reason in a sentence. `kind`
/// is stable (match on it); `message` is for people.
public struct HealthProblem: Encodable, Sendable, Equatable {
    public enum Kind: String, Encodable, Sendable {
        /// The workload's cgroup directory is gone: nothing of it is enforced.
        case cgroupMissing
        /// The cgroup at the recorded path is not the one lfp attached to (removed and made
        /// again: a new id); lfp's programs do not run for the new one.
        case cgroupRecreated
        /// `lfp attach` is making the links right now (its process is alive).
        case attachInProgress
        /// `lfp attach` died before it finished (kill -9, crash): some links may exist.
        case attachInterrupted
        /// A program's link is not pinned under the workload (the pin was removed).
        case linkNotPinned
        /// A pinned link no longer holds the recorded cgroup (its cgroup was removed, or it was
        /// detached with BPF_LINK_DETACH).
        case linkDetached
        /// A link's attach type is not the one its program's section names.
        case wrongAttachType
        /// The kernel's list of programs attached to the live cgroup (BPF_PROG_QUERY) lacks
        /// the program: it does not run for the workload.
        case programNotAttached
        /// lfp links attached to the workload's cgroup that no pin holds (a process holds them
        /// open): they enforce the policy of the maps they were loaded with.
        case unpinnedLinks
        /// `$LFP_BPFFS_ROOT` is gone while workloads or a policy are recorded.
        case bpffsRootMissing
        /// The shared maps are not pinned while workloads are recorded: no policy can reach
        /// the programs, no event can be read.
        case mapsMissing
        /// A policy is recorded but the kernel holds none (its maps are not pinned).
        case policyNotInKernel
        /// lfp links in the kernel that no workload lists (see `orphanLinks`).
        case orphanLinks
    }

    public var kind: Kind
    public var message: String
    /// The programs concerned, when the problem is about some of a workload's programs.
    public var programs: [String]?
    /// The kernel ids of the links concerned.
    public var linkIds: [UInt32]?

    public init(_ kind: Kind, _ message: String, programs: [String]? = nil, linkIds: [UInt32]? = nil) {
        self.kind = kind
        self.message = message
        self.programs = programs
        self.linkIds = linkIds
    }
}

/// A link of an lfp program found in the kernel (bpf_link_get_next_id), with where it is pinned.
public struct KernelLink: Encodable, Sendable, Equatable {
    public var linkId: UInt32
    public var programId: UInt32
    /// The kernel's name of the program (at most 15 bytes: `lfp_sock_releas`).
    public var program: String
    public var attachType: String
    /// 0 when the link's cgroup was removed.
    public var cgroupId: UInt64
    /// The cgroup's path when lfp knows it (a registered workload's, or found under the cgroup parent).
    public var cgroupPath: String?
    /// Its pin, if any.
    public var pinPath: String?
    /// The registered workload whose cgroup it is on, or the pin directory's name.
    public var workload: String?
}

/// What lfp finds in the kernel and in bpffs about its links: every pin under
/// `workloads/NAME/`, and every link of an lfp program (name `lfp_*`) attached to a cgroup that
/// lfp attached (a registered workload's, or one a pinned link names).
struct LinkInventory {
    /// Every pinned link by kernel link id: (pin directory name, pin path, info).
    var pinned: [UInt32: (directory: String, path: String, info: BPFLinkInfo)] = [:]
    /// Pin paths that hold no link any more (or something else).
    var deadPins: [String] = []
    /// lfp's links in the kernel on the known cgroups, by link id, with their infos.
    var kernel: [UInt32: KernelLink] = [:]
    var kernelInfo: [UInt32: BPFLinkInfo] = [:]
    /// Program id -> kernel name, for programs looked up.
    var programNames: [UInt32: String] = [:]

    static func isLfpProgram(_ name: String) -> Bool { name.hasPrefix("lfp_") }

    /// The kernel's (15-byte) form of a program name.
    static func kernelName(_ name: String) -> String {
        String(decoding: Array(name.utf8.prefix(BPFKernel.nameLength)), as: UTF8.self)
    }

    static func scan(_ engine: Engine, workloads: [Workload]) throws -> LinkInventory {
        var inv = LinkInventory()
        let root = engine.config.workloadsPinDirectory
        for dir in ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() {
            for pin in ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + dir)) ?? []).sorted() {
                let path = root + "/" + dir + "/" + pin
                if let info = try? BPFKernel.linkInfo(pinPath: path) {
                    inv.pinned[info.id] = (dir, path, info)
                    _ = try? inv.programName(info.programId)
                } else {
                    inv.deadPins.append(path)
                }
            }
        }
        var cgroups = Set(workloads.map(\.cgroupId))
        for (_, p) in inv.pinned where p.info.cgroupId != 0 { cgroups.insert(p.info.cgroupId) }
        cgroups.remove(0)
        let byId = Dictionary(workloads.map { ($0.cgroupId, $0) }, uniquingKeysWith: { a, _ in a })
        for info in try BPFKernel.links() where info.isCgroupLink && cgroups.contains(info.cgroupId) {
            guard let name = try inv.programName(info.programId), isLfpProgram(name) else { continue }
            let pin = inv.pinned[info.id]
            inv.kernelInfo[info.id] = info
            inv.kernel[info.id] = KernelLink(
                linkId: info.id, programId: info.programId, program: name, attachType: info.attachTypeName,
                cgroupId: info.cgroupId, cgroupPath: byId[info.cgroupId]?.cgroupPath, pinPath: pin?.path,
                workload: byId[info.cgroupId]?.name ?? pin?.directory)
        }
        return inv
    }

    mutating func programName(_ id: UInt32) throws -> String? {
        if let n = programNames[id] { return n }
        guard let info = try BPFKernel.programInfo(id: id) else { return nil }
        programNames[id] = info.name
        return info.name
    }

    /// Links no registered workload lists: pinned under a directory no record names, or
    /// attached to a known cgroup and pinned under no registered workload. Links of an attach
    /// still in progress (`inProgress`: workload names) are not orphans yet.
    func orphans(registered: [Workload], inProgress: Set<String>) -> [KernelLink] {
        let names = Set(registered.map(\.name))
        let byCgroup = Dictionary(registered.map { ($0.cgroupId, $0.name) }, uniquingKeysWith: { a, _ in a })
        var out: [UInt32: KernelLink] = [:]
        for (id, p) in pinned where !names.contains(p.directory) {
            out[id] =
                kernel[id]
                ?? KernelLink(
                    linkId: id, programId: p.info.programId, program: programNames[p.info.programId] ?? "?",
                    attachType: p.info.attachTypeName, cgroupId: p.info.cgroupId, cgroupPath: nil, pinPath: p.path,
                    workload: p.directory)
        }
        for (id, link) in kernel {
            if let p = pinned[id], names.contains(p.directory) { continue }
            if let owner = byCgroup[link.cgroupId], inProgress.contains(owner) { continue }
            out[id] = link
        }
        return out.values.sorted { $0.linkId < $1.linkId }
    }
}

extension Engine {
    /// Check one registered workload against the kernel: its cgroup is the one attached (same
    /// id), each program's link is pinned, holds that cgroup with the right attach type, and the
    /// kernel lists the program on the cgroup (BPF_PROG_QUERY).
    func health(
        of w: Workload, inventory inv: LinkInventory, expectedAttachTypes: [String: UInt32]
    ) -> (problems: [HealthProblem], links: [KernelLink], liveCgroupId: UInt64?) {
        var problems: [HealthProblem] = []
        if let stamp = w.attaching {
            if stamp.isRunning {
                problems.append(.init(.attachInProgress, "`lfp attach` (pid \(stamp.pid)) is attaching this workload right now"))
            } else {
                problems.append(
                    .init(
                        .attachInterrupted,
                        "`lfp attach` (pid \(stamp.pid)) died before it finished: the workload may be partly enforced; `lfp detach --workload \(w.name)` (or `lfp detach --orphans`) removes it"
                    ))
            }
        }
        // The cgroup: there, and the very one the links were made for.
        var liveId: UInt64? = nil
        var cgfd: Int32 = -1
        if FileManager.default.fileExists(atPath: w.cgroupPath), let fd = try? CgroupV2.open(w.cgroupPath) {
            cgfd = fd
            liveId = try? CgroupV2.id(fd: fd, path: w.cgroupPath)
        }
        defer { if cgfd >= 0 { close(cgfd) } }
        let liveIsAttached = liveId == w.cgroupId
        if liveId == nil {
            problems.append(.init(.cgroupMissing, "the cgroup \(w.cgroupPath) is gone: nothing of this workload is enforced"))
        } else if let liveId, !liveIsAttached {
            problems.append(
                .init(
                    .cgroupRecreated,
                    "the cgroup \(w.cgroupPath) was removed and made again (attached to cgroup id \(w.cgroupId), the directory there now is id \(liveId)): lfp's programs do not run for it; `lfp detach --workload \(w.name)` and attach again"
                ))
        }
        // The links: pinned under the workload, or at least attached to its cgroup.
        let dir = linkDirectory(w.name)
        let mine = inv.kernel.values.filter { $0.cgroupId == w.cgroupId && w.cgroupId != 0 }
        var attachedLists: [UInt32: Set<UInt32>] = [:]
        func kernelList(_ type: UInt32) -> Set<UInt32> {
            if let l = attachedLists[type] { return l }
            let l = Set((try? BPFKernel.attachedPrograms(cgroupFD: cgfd, attachType: type, cgroup: w.cgroupPath)) ?? [])
            attachedLists[type] = l
            return l
        }
        var notPinned: [String] = []
        var detached: [(String, BPFLinkInfo)] = []
        var wrongType: [String] = []
        var notAttached: [String] = []
        var links: [KernelLink] = []
        for program in w.programs {
            let kname = LinkInventory.kernelName(program)
            let pin = inv.pinned.values.first { $0.path == dir + "/" + program }
            if let pin {
                if let k = inv.kernel[pin.info.id] { links.append(k) }
                if !pin.info.isCgroupLink || pin.info.cgroupId != w.cgroupId {
                    detached.append((program, pin.info))
                } else if let expected = expectedAttachTypes[program], pin.info.attachType != expected {
                    wrongType.append(program)
                }
            } else {
                notPinned.append(program)
            }
            // Really attached: some lfp link of this program holds the live cgroup, and the
            // kernel lists its program there.
            guard liveIsAttached else { continue }
            let candidates = mine.filter { $0.program == kname }
            let running = candidates.contains { link in
                guard let info = inv.kernelInfo[link.linkId] else { return false }
                return kernelList(info.attachType).contains(link.programId)
            }
            if !running { notAttached.append(program) }
        }
        if !notPinned.isEmpty {
            problems.append(
                .init(
                    .linkNotPinned,
                    "\(notPinned.count) of \(w.programs.count) links are not pinned under \(dir) (removed?): \(notPinned.joined(separator: ", "))",
                    programs: notPinned))
        }
        for gone in [true, false] {
            let group = detached.filter { ($0.1.cgroupId == 0) == gone }
            guard !group.isEmpty else { continue }
            let why =
                gone
                ? "attached to no cgroup any more (their cgroup was removed, or they were detached)"
                : "attached to another cgroup than the workload's id \(w.cgroupId) (ids \(Set(group.map { $0.1.cgroupId }).sorted()))"
            problems.append(
                .init(
                    .linkDetached,
                    "\(group.count) of \(w.programs.count) links pinned under \(dir) are \(why): \(group.map { "\($0.0) (link \($0.1.id))" }.joined(separator: ", "))",
                    programs: group.map(\.0), linkIds: group.map(\.1.id)))
        }
        if !wrongType.isEmpty {
            problems.append(
                .init(
                    .wrongAttachType, "links attached at another hook than their program's section: \(wrongType.joined(separator: ", "))", programs: wrongType))
        }
        if !notAttached.isEmpty {
            problems.append(
                .init(
                    .programNotAttached,
                    "the kernel does not list \(notAttached.count == w.programs.count ? "any of lfp's programs" : notAttached.joined(separator: ", ")) on \(w.cgroupPath) (BPF_PROG_QUERY): \(notAttached.count) of \(w.programs.count) hooks do not enforce",
                    programs: notAttached))
        }
        let unpinned = mine.filter { inv.pinned[$0.linkId] == nil }.sorted { $0.linkId < $1.linkId }
        if !unpinned.isEmpty && w.attaching.map({ !$0.isRunning }) ?? true {
            problems.append(
                .init(
                    .unpinnedLinks,
                    "\(unpinned.count) lfp links on this cgroup are pinned nowhere (a process holds them open): they keep enforcing with the maps they were loaded with, which a policy commit may not reach; `lfp detach --workload \(w.name)` or `lfp detach --orphans` removes them",
                    linkIds: unpinned.map(\.linkId)))
        }
        links += unpinned
        return (problems, links, liveId)
    }

    /// Names of the workloads whose attach is running right now.
    static func attachesInProgress(_ ws: [Workload]) -> Set<String> {
        Set(ws.filter { $0.attaching?.isRunning == true }.map(\.name))
    }

    /// `lfp detach --orphans`: detach every lfp link that no workload lists (found as `lfp
    /// status` finds them: programs named lfp_* on a cgroup lfp attached, or pinned under a
    /// directory no record names), remove their pins, and remove the workloads whose attach
    /// was interrupted. Programs lfp did not attach are never touched. Returns the links it
    /// detached and the workloads it removed.
    @discardableResult
    public func detachOrphans() throws -> (links: [KernelLink], workloads: [String]) {
        try requireRoot("lfp detach --orphans")
        let lock = try stateLock()
        defer { withExtendedLifetime(lock) {} }
        try StateTree.verify(root: config.bpffsRoot)
        // Under the lock no attach of this lfp runs: a record still marked attaching is one
        // whose process died.
        var removed: [String] = []
        for w in workloads() where w.attaching != nil {
            try detach(workload: w.name)
            removed.append(w.name)
        }
        let ws = workloads()
        let inv = try LinkInventory.scan(self, workloads: ws)
        let orphans = inv.orphans(registered: ws, inProgress: [])
        for link in orphans {
            try BPFKernel.detachLink(id: link.linkId)
            if let pin = link.pinPath { try BPFLink(pinPath: pin).unpin() }
        }
        // Pin directories no record names, once empty (pins of dead links included).
        let names = Set(ws.map(\.name))
        let root = config.workloadsPinDirectory
        for dir in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where !names.contains(dir) {
            for pin in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + dir)) ?? [] {
                try? BPFLink(pinPath: root + "/" + dir + "/" + pin).unpin()
            }
            rmdir(root + "/" + dir)
        }
        if !orphans.isEmpty || !removed.isEmpty {
            logger.info("orphans detached", metadata: ["links": "\(orphans.count)", "workloads": "\(removed)"])
        }
        return (orphans, removed)
    }

    /// Detach every lfp link attached to cgroup `cgroupId` (pinned or not), e.g. those a process
    /// holds open after their pins were removed.
    func detachKernelLinks(cgroupId: UInt64) throws {
        guard cgroupId != 0 else { return }
        var names: [UInt32: String] = [:]
        for info in try BPFKernel.links() where info.isCgroupLink && info.cgroupId == cgroupId {
            if names[info.programId] == nil { names[info.programId] = try BPFKernel.programInfo(id: info.programId)?.name ?? "" }
            guard LinkInventory.isLfpProgram(names[info.programId] ?? "") else { continue }
            try BPFKernel.detachLink(id: info.id)
        }
    }
}
