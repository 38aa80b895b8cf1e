import CLibBPF
import Foundation

/// bpffs: where lfp pins its maps and links.
public enum BPFFS {
    /// Make sure a bpf filesystem is mounted at `mountPoint` (mount it if absent). lfp mounts
    /// it root-only (mode=0700; the kernel adds the sticky bit): bpffs defaults to 1777, which
    /// lets any user create the directories where lfp will pin its maps.
    public static func ensureMounted(at mountPoint: String = "/sys/fs/bpf") throws {
        var st = statfs()
        if statfs(mountPoint, &st) == 0, UInt(st.f_type) == lfp_bpffs_magic() { return }
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try sysCall("mount(bpf)", mountPoint) { mount("bpf", mountPoint, "bpf", 0, mountOptions) }
    }

    /// The mount data lfp gives bpffs: root-only.
    public static let mountOptions = "mode=0700"

    /// True when `path` is on a bpf filesystem.
    public static func isBPFFS(_ path: String) -> Bool {
        var st = statfs()
        return statfs(path, &st) == 0 && UInt(st.f_type) == lfp_bpffs_magic()
    }
}

/// cgroup v2: discovery (from /proc/self/mountinfo; it is not always /sys/fs/cgroup), creation
/// and removal of the cgroups lfp owns.
public enum CgroupV2 {
    public struct NotMounted: Error, CustomStringConvertible {
        public var description: String {
            "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
        }
    }

    /// The cgroup2 mount point, e.g. /sys/fs/cgroup/unified on a hybrid layout.
    public static func mountPoint() throws -> String {
        let text = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        for line in text.split(separator: "\n") {
            // fields: id parent maj:min root mountpoint options [optional...] - fstype source superopts
            let parts = line.split(separator: " ")
            guard let dash = parts.firstIndex(of: "-"), dash + 1 < parts.count, parts.count > 4 else { continue }
            if parts[dash + 1] == "cgroup2" { return unescape(String(parts[4])) }
        }
        throw NotMounted()
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var it = Array(s.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "\\", it.count >= 3, let v = UInt8(String(String.UnicodeScalarView(it.prefix(3))), radix: 8) {
                out.unicodeScalars.append(UnicodeScalar(v))
                it = it.dropFirst(3)
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The cgroup id the kernel reports (bpf_get_current_cgroup_id): the directory's inode.
    public static func id(of path: String) throws -> UInt64 {
        var st = stat()
        try sysCall("stat", path) { stat(path, &st) }
        return UInt64(st.st_ino)
    }

    /// The id of the cgroup open as `fd`: the same inode, without a second lookup of its path.
    public static func id(fd: Int32, path: String) throws -> UInt64 {
        var st = stat()
        try sysCall("fstat", path) { fstat(fd, &st) }
        return UInt64(st.st_ino)
    }

    public static func isCgroup2(_ path: String) -> Bool {
        var st = statfs()
        return statfs(path, &st) == 0 && st.f_type == 0x6367_7270  // CGROUP2_SUPER_MAGIC
    }

    /// Open a cgroup directory for attaching.
    public static func open(_ path: String) throws -> Int32 {
        try sysCall("open", path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    public static func create(_ path: String) throws {
        try sysCall("mkdir", path) { mkdir(path, 0o755) }
    }

    /// Create `path` unless it exists: several processes may make a shared parent at once, and
    /// losing that race (EEXIST) is success. True when this call created it.
    @discardableResult
    public static func createIfMissing(_ path: String) throws -> Bool {
        if mkdir(path, 0o755) == 0 { return true }
        let code = errno
        guard code == EEXIST, isCgroup2(path) else { throw BPFError(operation: "mkdir", object: path, code: code) }
        return false
    }

    /// Processes in the cgroup (not in its children).
    public static func pids(_ path: String) -> [Int32] {
        guard let text = try? String(contentsOfFile: path + "/cgroup.procs", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// Kill everything left in the cgroup and its children, then remove them, deepest first.
    public static func remove(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        if let children = try? FileManager.default.contentsOfDirectory(atPath: path) {
            for child in children {
                var isDir: ObjCBool = false
                let p = path + "/" + child
                if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue {
                    try remove(p)
                }
            }
        }
        if !pids(path).isEmpty {
            try? "1".write(toFile: path + "/cgroup.kill", atomically: false, encoding: .utf8)
        }
        var lastError: Int32 = 0
        for _ in 0..<200 {  // a killed task leaves the cgroup asynchronously
            if rmdir(path) == 0 || errno == ENOENT { return }
            lastError = errno
            usleep(5_000)
        }
        throw BPFError(operation: "rmdir", object: path, code: lastError)
    }
}
