import BPFKit
import Foundation
import KernelVocabulary

/// A workload: a named cgroup v2 with lfp's programs attached through pinned bpf_links.
public struct Workload: Codable, Sendable, Equatable {
    public var name: String
    public var cgroupPath: String
    public var cgroupId: UInt64
    /// True when `lfp run` created the cgroup (and removes it at the end).
    public var ownsCgroup: Bool
    public var programs: [String]
    public var attachedAt: Date
    /// Set while `lfp attach` is making the links: the record is written before the first link
    /// and completed after the last, so a kill -9 at any moment leaves no link that a record
    /// does not list. Still set with its process gone: the attach was interrupted (`lfp status`
    /// says so; `lfp detach` or `lfp detach --orphans` removes what it made).
    public var attaching: ProcessStamp? = nil
    /// The machine-wide workload (`lfp attach --machine`): its programs cover every cgroup below
    /// it, as WFP's filters cover every process.
    public var machineWide: Bool? = nil
    /// A workload inside the machine-wide one: no programs of its own (the machine's already
    /// run for it, and a second set would classify and report everything twice), only its
    /// identity, for LFP_CONDITION_WORKLOAD and events.
    public var identityOnly: Bool? = nil
}

extension Engine {
    static func validateWorkloadName(_ name: String) throws {
        let ok =
            // No '.': bpffs refuses it in the name of the workload's pin directory (EPERM).
            !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isLetter || $0.isNumber || "-_".contains($0) }
        guard ok else {
            throw EngineError.invalidWorkloadName(name)
        }
    }

    func registryPath(_ name: String) -> String { config.workloadRegistry + "/\(name).json" }
    func linkDirectory(_ name: String) -> String { config.workloadsPinDirectory + "/\(name)" }

    public func workloads() -> [Workload] {
        let dir = config.workloadRegistry
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasSuffix(".json") }.sorted().compactMap { file in
            guard let data = FileManager.default.contents(atPath: dir + "/" + file) else { return nil }
            return try? JSONDecoder.lfp.decode(Workload.self, from: data)
        }
    }

    public func workload(named name: String) -> Workload? {
        guard let data = FileManager.default.contents(atPath: registryPath(name)) else { return nil }
        return try? JSONDecoder.lfp.decode(Workload.self, from: data)
    }

    /// Attach every lfp program to `cgroupPath` as workload `name`. All or nothing: on any
    /// failure the links made so far are unpinned (detached) and no registry entry is written.
    @discardableResult
    public func attach(workload name: String, cgroupPath: String, ownsCgroup: Bool = false, machineWide: Bool = false) throws -> Workload {
        try Engine.validateWorkloadName(name)
        try requireRoot("lfp attach")
        let lock = try stateLock()
        defer { withExtendedLifetime(lock) {} }
        if let existing = workload(named: name) {
            throw WorkloadError.exists(name: name, cgroupPath: existing.cgroupPath)
        }
        let path = URL(fileURLWithPath: cgroupPath).standardized.path
        guard FileManager.default.fileExists(atPath: path) else {
            let mount = (try? CgroupV2.mountPoint()) ?? "?"
            throw EngineError.cgroupNotFound(path: path, mount: mount)
        }
        // Inside the machine-wide workload, a workload is an identity: its cgroup is named for
        // LFP_CONDITION_WORKLOAD and events, and the machine's programs do the classifying.
        if !machineWide, let m = workloads().first(where: { $0.machineWide == true && path.hasPrefix($0.cgroupPath + "/") }) {
            return try attachIdentity(name, path, ownsCgroup: ownsCgroup, machine: m)
        }
        // Programs attached to a cgroup also run for its descendants: nested workloads would
        // classify every operation twice and report every event twice.
        for w in workloads() where w.cgroupPath == path || path.hasPrefix(w.cgroupPath + "/") || w.cgroupPath.hasPrefix(path + "/") {
            throw EngineError.cgroupsOverlap(path: path, workload: w.name, workloadPath: w.cgroupPath)
        }
        guard CgroupV2.isCgroup2(path) else {
            throw EngineError.notCgroup2(path: path, mount: (try? CgroupV2.mountPoint()) ?? "?")
        }
        let created = try KernelMaps.prepareBPFFS(config)
        let object: BPFObject
        do {
            // Every hook and the sweep; the reauthorization iterators belong to commits.
            object = try BPFObject(image: config.object, pinRoot: config.mapsDirectory) { !Reauthorization.isReauthProgram($0) }
        } catch {
            KernelMaps.undo(created)
            throw error
        }
        let cgfd = try CgroupV2.open(path)
        defer { close(cgfd) }
        let dir = linkDirectory(name)
        var links: [BPFLink] = []
        let hooks = object.programs.filter { !$0.isIterator }
        var w = Workload(
            name: name, cgroupPath: path, cgroupId: 0, ownsCgroup: ownsCgroup, programs: hooks.map(\.name),
            attachedAt: Date(), attaching: .current)
        if machineWide { w.machineWide = true }
        do {
            w.cgroupId = try CgroupV2.id(fd: cgfd, path: path)  // the cgroup the links will hold
            // The record first: from here on, whatever link exists is listed (kill -9 safe).
            try StateTree.makeDirectory(config.workloadRegistry)
            try StateTree.write(JSONEncoder.lfp.encode(w), to: registryPath(name))
            try? FileManager.default.removeItem(atPath: dir)  // a stale dir of an older lfp's crash
            try StateTree.makeDirectory(dir)
            for program in hooks {
                links.append(try program.attachCgroup(fd: cgfd, pinPath: dir + "/" + program.name))
            }
            let maps = try KernelMaps.open(config, create: false)
            // LFP_CONDITION_WORKLOAD names this cgroup from now on.
            try maps.workloads.update(key: w.cgroupId, value: workloadID(name))
            // Adopt the sockets that were already there, now that new ones are seen by the hooks.
            try maps.sweep.update(key: UInt32(0), value: w.cgroupId)
            defer { try? maps.sweep.update(key: UInt32(0), value: UInt64(0)) }
            for iterator in object.programs where iterator.isIterator && iterator.name.hasPrefix("lfp_sweep_") {
                try iterator.runIterator()
            }
            w.attaching = nil
            try StateTree.write(JSONEncoder.lfp.encode(w), to: registryPath(name))
            recordName(name)
            logger.info("workload attached", metadata: ["workload": "\(name)", "cgroup.path": "\(path)"])
            return w
        } catch {
            for link in links { try? link.unpin() }
            try? FileManager.default.removeItem(atPath: dir)
            if w.cgroupId != 0 { try? KernelMaps.open(config, create: false).workloads.delete(key: w.cgroupId) }
            try? FileManager.default.removeItem(atPath: registryPath(name))
            KernelMaps.undo(created)
            throw error
        }
    }

    /// A workload inside the machine-wide one: its registry record and its cgroup's identity in
    /// lfp_workloads, no links. Under the state lock.
    private func attachIdentity(_ name: String, _ path: String, ownsCgroup: Bool, machine: Workload) throws -> Workload {
        guard CgroupV2.isCgroup2(path) else {
            throw EngineError.notCgroup2(path: path, mount: (try? CgroupV2.mountPoint()) ?? "?")
        }
        let cgfd = try CgroupV2.open(path)
        defer { close(cgfd) }
        var w = Workload(
            name: name, cgroupPath: path, cgroupId: try CgroupV2.id(fd: cgfd, path: path), ownsCgroup: ownsCgroup, programs: [],
            attachedAt: Date())
        w.identityOnly = true
        try StateTree.makeDirectory(config.workloadRegistry)
        try StateTree.write(JSONEncoder.lfp.encode(w), to: registryPath(name))
        do {
            try KernelMaps.open(config, create: false).workloads.update(key: w.cgroupId, value: workloadID(name))
        } catch {
            try? FileManager.default.removeItem(atPath: registryPath(name))
            throw error
        }
        recordName(name)
        logger.info("workload named inside the machine-wide workload", metadata: ["workload": "\(name)", "machine": "\(machine.name)"])
        return w
    }

    /// True when `name` is attached, or was attached before (its events may still arrive):
    /// `lfp events --workload` refuses any other name rather than wait silently for nothing.
    public func knowsWorkload(_ name: String) -> Bool {
        if workload(named: name) != nil { return true }
        let known = (try? String(contentsOfFile: config.workloadNameHistory, encoding: .utf8))?.split(separator: "\n") ?? []
        return known.contains { $0 == name }
    }

    /// Remember every workload name ever attached, so events outliving the workload are named.
    private func recordName(_ name: String) {
        let path = config.workloadNameHistory
        let known = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        guard !known.contains(name) else { return }
        try? StateTree.append(Data((name + "\n").utf8), to: path)
    }

    /// Detach workload `name`: unpin its links (which detaches the programs lfp attached, and
    /// only those) and forget it; remove its cgroup when lfp created it.
    public func detach(workload name: String) throws {
        try Engine.validateWorkloadName(name)
        try requireRoot("lfp detach")
        let lock = try stateLock()
        defer { withExtendedLifetime(lock) {} }
        try StateTree.verify(root: config.bpffsRoot)
        let w = workload(named: name)
        let dir = linkDirectory(name)
        guard w != nil || FileManager.default.fileExists(atPath: dir) else {
            throw EngineError.noSuchWorkload(name)
        }
        // The machine-wide workload goes last: the workloads inside it have no programs of their own.
        if let w, w.machineWide == true, let inner = workloads().first(where: { $0.identityOnly == true }) {
            throw EngineError.cgroupsOverlap(path: w.cgroupPath, workload: inner.name, workloadPath: inner.cgroupPath)
        }
        for pin in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            // Detach, not only unpin: a process holding the link open would keep it enforcing.
            if let info = try? BPFKernel.linkInfo(pinPath: dir + "/" + pin) { try BPFKernel.detachLink(id: info.id) }
            try BPFLink(pinPath: dir + "/" + pin).unpin()
        }
        try? FileManager.default.removeItem(atPath: dir)
        // lfp's links on the cgroup that no pin holds (pins removed while a process held them).
        if let w { try detachKernelLinks(cgroupId: w.cgroupId) }
        if let w { try? KernelMaps.open(config, create: false).workloads.delete(key: w.cgroupId) }
        try? FileManager.default.removeItem(atPath: registryPath(name))
        if let w, w.ownsCgroup { try CgroupV2.remove(w.cgroupPath) }
        logger.info("workload detached", metadata: ["workload": "\(name)"])
    }

    /// `lfp run`: create a cgroup for the workload, attach, run the command inside it, and
    /// remove everything it created, whatever happens: SIGINT, SIGTERM and SIGHUP are passed
    /// on to the command (Spawn.swift), and lfp cleans up once it has ended. Returns the
    /// command's exit status (128 + signal when it was killed, or when lfp got one of those
    /// signals before the command started, which then does not start).
    ///
    /// Many runs may start and end at once: the shared parent cgroup is made (EEXIST is fine)
    /// and the workload's cgroup created and attached under the state lock, and the parent
    /// removed under it once empty, so no run removes it between another's two mkdirs. A name
    /// in use (attached, or its cgroup there) is `WorkloadError.exists`.
    public func run(workload name: String, command: [String], as identity: RunIdentity? = nil) throws -> Int32 {
        try Engine.validateWorkloadName(name)
        try requireRoot("lfp run")
        guard let exe = command.first else { throw EngineError.noCommand }
        Spawn.forwardSignals()  // from here on a SIGTERM ends the run through the cleanup below
        _ = try Spawn.resolve(exe)  // a command not found fails before anything is made
        let drop = try identity.map { try $0.resolved() }  // an unknown user fails before anything is made
        let parent = try config.resolvedCgroupParent()
        let cgroup = parent + "/" + name
        do {
            let lock = try stateLock()
            defer { withExtendedLifetime(lock) {} }
            if let existing = workload(named: name) {
                throw WorkloadError.exists(name: name, cgroupPath: existing.cgroupPath)
            }
            try CgroupV2.createIfMissing(parent)
            do {
                try CgroupV2.create(cgroup)
            } catch let e as BPFError where e.code == EEXIST {
                throw WorkloadError.exists(name: name, cgroupPath: cgroup)
            } catch {
                rmdir(parent)
                throw error
            }
            do {
                try attach(workload: name, cgroupPath: cgroup, ownsCgroup: true)  // the lock is re-entrant
            } catch {
                try? CgroupV2.remove(cgroup)
                rmdir(parent)
                throw error
            }
        }
        defer {
            let lock = try? stateLock()
            try? detach(workload: name)
            rmdir(parent)  // the parent too, once no workload is left in it (fails harmlessly otherwise)
            withExtendedLifetime(lock) {}
        }
        // Interrupted while the cgroup was made and attached: clean up without starting it.
        if let signal = Spawn.receivedSignal { return 128 + signal }
        return try Engine.spawn(inCgroup: cgroup, executable: exe, arguments: Array(command.dropFirst()), dropTo: drop)
    }

    /// Start `executable` inside `cgroup` and wait for it; its status as a shell reports it
    /// (128 + signal when a signal killed it). See Spawn.swift.
    public static func spawn(
        inCgroup cgroup: String, executable: String, arguments: [String],
        environment: [String: String]? = nil, dropTo drop: (uid: UInt32, gid: UInt32)? = nil
    ) throws -> Int32 {
        try Spawn.run(inCgroup: cgroup, executable: executable, arguments: arguments, environment: environment, dropTo: drop)
    }
}

extension JSONEncoder {
    static var lfp: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }
}

extension JSONDecoder {
    static var lfp: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

/// Who `lfp run --user U [--group G]` runs its command as.
public struct RunIdentity: Sendable {
    public var user: String
    public var group: String?
    public init(user: String, group: String? = nil) {
        self.user = user
        self.group = group
    }

    /// (uid, gid) from the user database; numeric ids are taken as they are. The group defaults
    /// to the user's primary group.
    func resolved() throws -> (uid: UInt32, gid: UInt32) {
        var uid: UInt32
        var primary: UInt32
        if let pw = getpwnam(user) {
            uid = pw.pointee.pw_uid
            primary = pw.pointee.pw_gid
        } else if let n = UInt32(user) {
            uid = n
            primary = n
        } else {
            throw WorkloadError.unknownUser(user)
        }
        guard let group else { return (uid, primary) }
        if let gr = getgrnam(group) { return (uid, gr.pointee.gr_gid) }
        if let n = UInt32(group) { return (uid, n) }
        throw WorkloadError.unknownGroup(group)
    }
}

extension Engine {
    /// The cgroup v2 root (where `lfp attach --machine` attaches by default).
    public static func cgroupRoot() throws -> String { try CgroupV2.mountPoint() }
}
