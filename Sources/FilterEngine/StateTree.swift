import BPFKit
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Why lfp refused a path of its own state: the bpffs tree (`$LFP_BPFFS_ROOT` with `maps/` and
/// `workloads/NAME/`), the state directory (`$LFP_STATE_DIR` and everything in it), or a
/// directory above either. `owner` is a uid, `mode` the full st_mode (type and permissions).
public enum StateTreeError: Error, Equatable, CustomStringConvertible {
    /// Someone other than root owns it: they could delete or replace lfp's pins and files
    /// (the squatting attack: create `/sys/fs/bpf/lfp` before lfp first runs).
    case notOwnedByRoot(path: String, owner: UInt32, mode: UInt32)
    /// Root owns it, but group or others may write it (for a directory above lfp's state: and
    /// it is not sticky like /tmp), so someone else could replace what is in it.
    case writableByOthers(path: String, owner: UInt32, mode: UInt32)
    /// A symbolic link where lfp expects its own directory, file or pin.
    case symlink(path: String, owner: UInt32, mode: UInt32)
    /// Neither a directory nor a regular file (bpffs pins are regular files), or not the one
    /// of the two lfp expects there.
    case unexpectedType(path: String, owner: UInt32, mode: UInt32)
    /// Not root: lfp's state is readable and writable by root only.
    case rootOnly(path: String)
    /// A system call on the path failed for another reason.
    case failed(operation: String, path: String, errno: Int32)

    public var path: String {
        switch self {
        case .notOwnedByRoot(let p, _, _), .writableByOthers(let p, _, _), .symlink(let p, _, _),
            .unexpectedType(let p, _, _), .rootOnly(let p), .failed(_, let p, _):
            return p
        }
    }

    public var description: String {
        let rule =
            "lfp's state, and every directory above it, must be owned by root and writable by no one else"
            + " (a directory above it may be world-writable only if sticky, like /tmp)"
        let remedy = "If nothing in it is yours, remove it as root, or point LFP_BPFFS_ROOT / LFP_STATE_DIR elsewhere"
        switch self {
        case .notOwnedByRoot(let p, let uid, let mode):
            return "refusing \(p): owned by \(StateTreeError.user(uid)), mode \(StateTreeError.render(mode)); \(rule). \(remedy)"
        case .writableByOthers(let p, let uid, let mode):
            return "refusing \(p): owned by \(StateTreeError.user(uid)) but mode \(StateTreeError.render(mode)) lets others write it; \(rule). \(remedy)"
        case .symlink(let p, let uid, let mode):
            return
                "refusing \(p): a symbolic link (owned by \(StateTreeError.user(uid)), mode \(StateTreeError.render(mode))) where lfp expects its own directory or file. \(remedy)"
        case .unexpectedType(let p, let uid, let mode):
            return
                "refusing \(p): mode \(StateTreeError.render(mode)) (owned by \(StateTreeError.user(uid))) is not the directory or regular file lfp expects there. \(remedy)"
        case .rootOnly(let p):
            return "cannot read \(p): lfp's state is readable by root only (a policy reveals what the machine protects); run this command as root"
        case .failed(let op, let p, let code):
            return "\(op)(\(p)): \(String(cString: strerror(code)))"
        }
    }

    static func user(_ uid: UInt32) -> String {
        guard let pw = getpwuid(uid_t(uid)) else { return "uid \(uid)" }
        return "uid \(uid) (\(String(cString: pw.pointee.pw_name)))"
    }

    /// `drwxr-xr-x (0755)`, as ls shows it.
    static func render(_ mode: UInt32) -> String {
        let type: Character
        switch mode & StateTree.typeMask {
        case StateTree.directory: type = "d"
        case StateTree.symlinkType: type = "l"
        case StateTree.regular: type = "-"
        case 0o010000: type = "p"
        case 0o140000: type = "s"
        case 0o020000: type = "c"
        case 0o060000: type = "b"
        default: type = "?"
        }
        var s = String(type)
        let bits: [(UInt32, Character)] = [
            (0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"),
            (0o004, "r"), (0o002, "w"), (0o001, "x"),
        ]
        for (bit, c) in bits { s.append(mode & bit != 0 ? c : "-") }
        if mode & 0o1000 != 0 { s.removeLast(); s.append(mode & 0o001 != 0 ? "t" : "T") }
        return s + " (" + String(format: "%04o", mode & 0o7777) + ")"
    }
}

extension StateTreeError: LocalizedError {
    public var errorDescription: String? { description }
}

/// lfp's state on disk and in bpffs, handled so that no other user can take it over.
///
/// bpffs is often mounted 1777 and /run/lfp could be made by anyone before lfp first runs, so
/// every directory, file and pin of lfp's two trees is checked with lstat before use: it must
/// not be a symlink, must be a directory or a regular file (pins are), owned by root and
/// writable by no one else. Anything else is refused with a `StateTreeError` naming the path,
/// owner and mode; lfp does not try to take it back (chown/chmod of something another user
/// controls races with that user). The directories above each tree must be root-owned and not
/// writable by others unless sticky. lfp creates its directories 0700 and its files 0600
/// whatever the umask (a policy reveals what the machine protects), and narrows directories
/// made by older versions (0755), which is safe because root owns them.
enum StateTree {
    static let directoryMode: mode_t = 0o700
    static let fileMode: mode_t = 0o600
    static let typeMask: UInt32 = 0o170000
    static let directory: UInt32 = 0o040000
    static let regular: UInt32 = 0o100000
    static let symlinkType: UInt32 = 0o120000
    static let sticky: UInt32 = 0o1000

    enum Kind { case directory, file }

    // MARK: the two trees

    /// The state directory: created 0700 when absent; verified with everything in it otherwise.
    static func prepareStateDirectory(_ cfg: EngineConfiguration) throws {
        _ = try prepare(root: cfg.stateDirectory)
    }

    /// Verify whatever exists of the tree at `root` (nothing is created).
    static func verify(root: String) throws {
        var st = stat()
        guard lstat(root, &st) == 0 else {
            if errno == ENOENT { return }
            throw failure("lstat", root, errno)
        }
        try checkAncestors(of: root, create: false)
        try check(root, st, as: .directory)
        try walk(root)
    }

    /// Make (0700) or verify the tree root and then each of `subdirectories` (full paths, in
    /// order), then verify everything already in the tree. Returns the directories it created,
    /// deepest last; on failure it removes them again.
    static func prepare(root: String, subdirectories: [String] = []) throws -> [String] {
        try checkAncestors(of: root, create: true)
        var created: [String] = []
        do {
            for d in [root] + subdirectories {
                if try makeDirectory(d) { created.append(d) }
            }
            try walk(root)
        } catch {
            for d in created.reversed() { rmdir(d) }
            throw error
        }
        return created
    }

    // MARK: directories

    /// Create `path` (0700 whatever the umask: check() sets the exact mode) unless it exists;
    /// either way check it is a directory lfp can trust. Its parent must already have been
    /// checked. True when created.
    @discardableResult
    static func makeDirectory(_ path: String) throws -> Bool {
        var made = false
        if mkdir(path, directoryMode) == 0 {
            made = true
        } else if errno != EEXIST {
            throw failure("mkdir", path, errno)
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw failure("lstat", path, errno) }
        try check(path, st, as: .directory)
        return made
    }

    /// The directories above a tree root (symlinks resolved, e.g. /var/run -> /run): each
    /// owned by root, and not writable by others unless sticky (group-writable is fine for
    /// group root). With `create`, missing ones are made, 0700.
    static func checkAncestors(of root: String, create: Bool) throws {
        var existing = parent(of: absolute(root))
        var missing: [String] = []
        var st = stat()
        while stat(existing, &st) != 0 {
            guard errno == ENOENT, existing != "/" else { throw failure("stat", existing, errno) }
            missing.insert((existing as NSString).lastPathComponent, at: 0)
            existing = parent(of: existing)
        }
        guard let resolved = realpath(existing, nil) else { throw failure("realpath", existing, errno) }
        let real = String(cString: resolved)
        free(resolved)
        var path = ""
        for component in [""] + real.split(separator: "/").map(String.init) {
            path = component.isEmpty ? "/" : (path == "/" ? "/" : path + "/") + component
            guard lstat(path, &st) == 0 else { throw failure("lstat", path, errno) }
            let mode = UInt32(st.st_mode), owner = UInt32(st.st_uid)
            if mode & typeMask == symlinkType { throw StateTreeError.symlink(path: path, owner: owner, mode: mode) }
            guard mode & typeMask == directory else { throw StateTreeError.unexpectedType(path: path, owner: owner, mode: mode) }
            guard owner == 0 else { throw StateTreeError.notOwnedByRoot(path: path, owner: owner, mode: mode) }
            let othersWrite = mode & 0o002 != 0 || (mode & 0o020 != 0 && st.st_gid != 0)
            if othersWrite && mode & sticky == 0 {
                throw StateTreeError.writableByOthers(path: path, owner: owner, mode: mode)
            }
        }
        guard create else { return }
        for name in missing {
            path = (path == "/" ? "" : path) + "/" + name
            try makeDirectory(path)
        }
    }

    // MARK: entries

    /// One of lfp's own entries: not a symlink, of the expected kind (or either kind when nil),
    /// owned by root, writable by root only. A directory with a wider mode (0755 from an older
    /// lfp) is narrowed to 0700, which makes everything under it private: root owns it, so
    /// nobody can race the chmod. Files are narrowed when lfp opens or rewrites them.
    static let socketType = UInt32(S_IFSOCK)

    static func check(_ path: String, _ st: stat, as kind: Kind?) throws {
        let mode = UInt32(st.st_mode), owner = UInt32(st.st_uid)
        let type = mode & typeMask
        if type == symlinkType { throw StateTreeError.symlink(path: path, owner: owner, mode: mode) }
        let ok: Bool
        switch kind {
        case .directory?: ok = type == directory
        case .file?: ok = type == regular
        // The daemon's socket (root's, 0600) lives in the state directory too.
        case nil: ok = type == directory || type == regular || type == socketType
        }
        guard ok else { throw StateTreeError.unexpectedType(path: path, owner: owner, mode: mode) }
        guard owner == 0 else { throw StateTreeError.notOwnedByRoot(path: path, owner: owner, mode: mode) }
        guard mode & 0o022 == 0 else { throw StateTreeError.writableByOthers(path: path, owner: owner, mode: mode) }
        if type == directory && mode & 0o7777 != UInt32(directoryMode) {
            chmod(path, directoryMode)  // best effort: it is safe as it is
        }
    }

    /// Check everything under the (checked) directory `dir`, depth first. A checked directory
    /// is root's alone, so nothing found in it can change under us once checked.
    static func walk(_ dir: String) throws {
        guard let d = opendir(dir) else { throw failure("opendir", dir, errno) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        for name in names {
            let path = dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else {
                if errno == ENOENT { continue }  // removed meanwhile by another lfp process
                throw failure("lstat", path, errno)
            }
            try check(path, st, as: nil)
            if UInt32(st.st_mode) & typeMask == directory { try walk(path) }
        }
    }

    // MARK: files

    /// Open (creating 0600 when absent) a file of lfp's state for reading and writing, e.g. a
    /// lock file; never through a symlink.
    static func openFile(_ path: String, flags: Int32 = O_RDWR | O_CREAT) throws -> Int32 {
        let fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, fileMode)
        guard fd >= 0 else { throw openFailure(path, errno) }
        do {
            try checkOpen(fd, path)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// The contents of a file of lfp's state, nil when it does not exist. The tree at `root`
    /// is verified first.
    static func read(_ path: String, root: String) throws -> Data? {
        try verify(root: root)
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw openFailure(path, errno)
        }
        defer { close(fd) }
        try checkOpen(fd, path)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("read", path, errno)
            }
            if n == 0 { return data }
            data.append(buffer, count: n)
        }
    }

    /// Replace a file of lfp's state atomically: a 0600 temporary file beside it (O_EXCL,
    /// never through a symlink), then rename.
    static func write(_ data: Data, to path: String) throws {
        let name = (path as NSString).lastPathComponent
        let tmp = parent(of: path) + "/.\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fileMode)
        guard fd >= 0 else { throw failure("open", tmp, errno) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlink(tmp) }
        }
        guard fchmod(fd, fileMode) == 0 else { throw failure("fchmod", tmp, errno) }
        try writeAll(fd, data, path: tmp)
        guard rename(tmp, path) == 0 else { throw failure("rename", path, errno) }
        renamed = true
    }

    /// Append to a file of lfp's state (created 0600), never through a symlink.
    static func append(_ data: Data, to path: String) throws {
        let fd = try openFile(path, flags: O_WRONLY | O_APPEND | O_CREAT)
        defer { close(fd) }
        try writeAll(fd, data, path: path)
    }

    static func writeAll(_ fd: Int32, _ data: Data, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure("write", path, errno)
                }
                offset += n
            }
        }
    }

    /// An open file of lfp's state: a regular file root owns and only root may write; a mode
    /// wider than 0600 from an older lfp is narrowed, a create under a umask fixed.
    static func checkOpen(_ fd: Int32, _ path: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure("fstat", path, errno) }
        let mode = UInt32(st.st_mode), owner = UInt32(st.st_uid)
        guard mode & typeMask == regular else { throw StateTreeError.unexpectedType(path: path, owner: owner, mode: mode) }
        guard owner == 0 else { throw StateTreeError.notOwnedByRoot(path: path, owner: owner, mode: mode) }
        guard mode & 0o022 == 0 else { throw StateTreeError.writableByOthers(path: path, owner: owner, mode: mode) }
        if mode & 0o7777 != UInt32(fileMode) { fchmod(fd, fileMode) }
    }

    /// open() with O_NOFOLLOW fails with ELOOP on a symlink: report the link itself.
    static func openFailure(_ path: String, _ code: Int32) -> Error {
        var st = stat()
        if code == ELOOP, lstat(path, &st) == 0, UInt32(st.st_mode) & typeMask == symlinkType {
            return StateTreeError.symlink(path: path, owner: UInt32(st.st_uid), mode: UInt32(st.st_mode))
        }
        return failure("open", path, code)
    }

    static func failure(_ operation: String, _ path: String, _ code: Int32) -> StateTreeError {
        code == EACCES && geteuid() != 0 ? .rootOnly(path: path) : .failed(operation: operation, path: path, errno: code)
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    static func parent(of path: String) -> String {
        let p = (path as NSString).deletingLastPathComponent
        return p.isEmpty ? "/" : p
    }
}
