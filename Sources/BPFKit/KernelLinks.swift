import CLibBPF
import Foundation

/// What the kernel says about a bpf_link: the link's own info (BPF_OBJ_GET_INFO_BY_FD), so a
/// pin can be checked against reality rather than trusted because the file exists.
public struct BPFLinkInfo: Sendable, Equatable, Codable {
    public var id: UInt32
    /// enum bpf_link_type (BPF_LINK_TYPE_CGROUP = 3).
    public var type: UInt32
    public var programId: UInt32
    /// For a cgroup link: the cgroup it is attached to, 0 once that cgroup was removed (the
    /// kernel detaches a removed cgroup's links and keeps them as empty shells while pinned).
    public var cgroupId: UInt64
    /// For a cgroup link: enum bpf_attach_type.
    public var attachType: UInt32

    public var isCgroupLink: Bool { type == BPF_LINK_TYPE_CGROUP.rawValue }
    /// libbpf's name of the attach type, e.g. `cgroup_inet4_connect`.
    public var attachTypeName: String { BPFKernel.attachTypeName(attachType) }
}

/// A loaded program as the kernel reports it. The kernel keeps the first 15 bytes of a name.
public struct BPFProgramInfo: Sendable, Equatable {
    public var id: UInt32
    public var name: String
    /// Ids of the maps the program uses.
    public var mapIds: [UInt32]
}

/// Queries of the kernel's BPF objects by id: every link, a program's name and maps, what is
/// attached to a cgroup, and detaching a link whoever holds it. Every failure comes through the
/// BPFError funnel; an object that disappears between two calls (ENOENT) is reported as absent.
public enum BPFKernel {
    /// BPF_OBJ_NAME_LEN - 1: how much of a program's name the kernel keeps.
    public static let nameLength = 15

    /// libbpf's name of `attachType`.
    public static func attachTypeName(_ attachType: UInt32) -> String {
        guard let s = libbpf_bpf_attach_type_str(bpf_attach_type(attachType)) else { return "attach type \(attachType)" }
        return String(cString: s)
    }

    /// Every bpf_link in the kernel (BPF_LINK_GET_NEXT_ID), with its info. Links that go away
    /// while they are listed are left out.
    public static func links() throws -> [BPFLinkInfo] {
        var out: [BPFLinkInfo] = []
        var id: UInt32 = 0
        while true {
            var next: UInt32 = 0
            let r = bpf_link_get_next_id(id, &next)
            if r != 0 {
                let code = r == -1 ? errno : -r
                if code == ENOENT { return out }
                throw BPFError(operation: "bpf_link_get_next_id", object: "after link \(id)", code: code)
            }
            id = next
            if let info = try linkInfo(id: id) { out.append(info) }
        }
    }

    /// The info of link `id`; nil when no such link exists (any more).
    public static func linkInfo(id: UInt32) throws -> BPFLinkInfo? {
        guard let fd = try openLink(id: id) else { return nil }
        defer { close(fd) }
        return try linkInfo(fd: fd, object: "link \(id)")
    }

    /// The info of the link pinned at `pinPath`; nil when nothing is pinned there.
    public static func linkInfo(pinPath: String) throws -> BPFLinkInfo? {
        let fd = bpf_obj_get(pinPath)
        if fd < 0 {
            let code = fd == -1 ? errno : -fd
            if code == ENOENT { return nil }
            throw BPFError(operation: "bpf_obj_get", object: pinPath, code: code)
        }
        defer { close(fd) }
        return try linkInfo(fd: fd, object: pinPath)
    }

    static func linkInfo(fd: Int32, object: String) throws -> BPFLinkInfo {
        // BPF_OBJ_GET_INFO_BY_FD answers for maps and programs too, in their own layouts.
        guard ["anon_inode:bpf-link", "anon_inode:bpf_link"].contains(fileKind(fd)) else {
            throw BPFError(
                operation: "bpf_obj_get_info_by_fd", object: object, code: EINVAL, hint: "not a bpf_link (\(fileKind(fd)))")
        }
        var info = bpf_link_info()
        var len = UInt32(MemoryLayout<bpf_link_info>.size)
        try bpfCall("bpf_obj_get_info_by_fd", object) { bpf_obj_get_info_by_fd(fd, &info, &len) }
        let cgroup = info.type == BPF_LINK_TYPE_CGROUP.rawValue
        return BPFLinkInfo(
            id: info.id, type: info.type, programId: info.prog_id,
            cgroupId: cgroup ? info.cgroup.cgroup_id : 0, attachType: cgroup ? info.cgroup.attach_type : 0)
    }

    /// What an fd refers to, as /proc shows it: `anon_inode:bpf-link`, `anon_inode:bpf-map`, ...
    static func fileKind(_ fd: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
        return n > 0 ? String(cString: buf) : "?"
    }

    /// A file descriptor of link `id`, nil when it does not exist.
    static func openLink(id: UInt32) throws -> Int32? {
        let fd = bpf_link_get_fd_by_id(id)
        if fd < 0 {
            let code = fd == -1 ? errno : -fd
            if code == ENOENT { return nil }
            throw BPFError(operation: "bpf_link_get_fd_by_id", object: "link \(id)", code: code)
        }
        return fd
    }

    /// Program `id`'s name and maps; nil when it does not exist (any more).
    public static func programInfo(id: UInt32) throws -> BPFProgramInfo? {
        let fd = bpf_prog_get_fd_by_id(id)
        if fd < 0 {
            let code = fd == -1 ? errno : -fd
            if code == ENOENT { return nil }
            throw BPFError(operation: "bpf_prog_get_fd_by_id", object: "program \(id)", code: code)
        }
        defer { close(fd) }
        // Two calls: the first tells how many maps the program uses.
        var info = bpf_prog_info()
        var len = UInt32(MemoryLayout<bpf_prog_info>.size)
        try bpfCall("bpf_obj_get_info_by_fd", "program \(id)") { bpf_obj_get_info_by_fd(fd, &info, &len) }
        let name = withUnsafeBytes(of: info.name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        var mapIds = [UInt32](repeating: 0, count: Int(info.nr_map_ids))
        if !mapIds.isEmpty {
            var again = bpf_prog_info()
            again.nr_map_ids = UInt32(mapIds.count)
            try mapIds.withUnsafeMutableBufferPointer { buf in
                again.map_ids = UInt64(UInt(bitPattern: buf.baseAddress))
                var len = UInt32(MemoryLayout<bpf_prog_info>.size)
                try bpfCall("bpf_obj_get_info_by_fd", "program \(id)") { bpf_obj_get_info_by_fd(fd, &again, &len) }
            }
            mapIds = Array(mapIds.prefix(Int(min(again.nr_map_ids, UInt32(mapIds.count)))))
        }
        return BPFProgramInfo(id: info.id, name: name, mapIds: mapIds)
    }

    /// The ids of the programs attached directly to the cgroup open as `cgroupFD` for
    /// `attachType` (BPF_PROG_QUERY; not the effective list inherited from ancestors).
    public static func attachedPrograms(cgroupFD: Int32, attachType: UInt32, cgroup: String) throws -> [UInt32] {
        var ids = [UInt32](repeating: 0, count: 64)
        while true {
            var opts = bpf_prog_query_opts()
            opts.sz = MemoryLayout<bpf_prog_query_opts>.size
            opts.prog_cnt = UInt32(ids.count)
            let r = ids.withUnsafeMutableBufferPointer { buf -> Int32 in
                opts.prog_ids = buf.baseAddress
                return bpf_prog_query_opts(cgroupFD, bpf_attach_type(attachType), &opts)
            }
            let code = r == 0 ? 0 : (r == -1 ? errno : -r)
            if code == ENOSPC {  // more programs than room: prog_cnt says how many
                ids = [UInt32](repeating: 0, count: Int(opts.prog_cnt) + 64)
                continue
            }
            if code != 0 {
                throw BPFError(operation: "bpf_prog_query(\(attachTypeName(attachType)))", object: cgroup, code: code)
            }
            return Array(ids.prefix(Int(opts.prog_cnt)))
        }
    }

    /// Detach link `id` from its hook (BPF_LINK_DETACH) whoever holds or pins it: the program
    /// stops running at once; the link object lives on, empty, while references remain. False
    /// when the link no longer exists.
    @discardableResult
    public static func detachLink(id: UInt32) throws -> Bool {
        guard let fd = try openLink(id: id) else { return false }
        defer { close(fd) }
        let r = bpf_link_detach(fd)
        if r != 0 {
            let code = r == -1 ? errno : -r
            if code == ENOLINK || code == ENOENT { return true }  // already detached
            throw BPFError(operation: "bpf_link_detach", object: "link \(id)", code: code)
        }
        return true
    }

    /// An open reference to the object (map, link, program) pinned at `path`, or nil when no
    /// pin is there.
    public static func holdPinned(_ path: String) throws -> Int32? {
        let fd = bpf_obj_get(path)
        if fd >= 0 { return fd }
        let code = errno
        if code == ENOENT { return nil }
        throw BPFError(operation: "bpf_obj_get", object: path, code: code)
    }

    /// Pins the object `fd` refers to at `path` again (bpf_obj_pin).
    public static func pin(fd: Int32, at path: String) throws {
        try bpfCall("bpf_obj_pin", path) { bpf_obj_pin(fd, path) }
    }

    /// An open reference to link `id` (a test holds one to keep a link alive without a pin).
    public static func holdLink(id: UInt32) throws -> Int32 {
        guard let fd = try openLink(id: id) else {
            throw BPFError(operation: "bpf_link_get_fd_by_id", object: "link \(id)", code: ENOENT)
        }
        return fd
    }

    /// The attach type each program of the object expects (its SEC() name), read from the ELF
    /// without loading anything.
    public static func expectedAttachTypes(of image: BPFObjectImage) throws -> [String: UInt32] {
        LibBPFLog.install()
        let obj = try image.open(pinRoot: nil)
        defer { bpf_object__close(obj) }
        var out: [String: UInt32] = [:]
        var prog = bpf_object__next_program(obj, nil)
        while let p = prog {
            out[String(cString: bpf_program__name(p))] = bpf_program__expected_attach_type(p).rawValue
            prog = bpf_object__next_program(obj, p)
        }
        return out
    }
}
