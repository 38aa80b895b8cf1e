import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension PolicyCompiler {
    /// The identity of the executable an ALE_APP_ID names, or the precise reason it has none:
    /// the path must resolve (symlinks followed) to a regular file.
    static func appFileIdentity(_ path: String, fail: (String) -> CompileError) throws -> (dev: UInt64, ino: UInt64) {
        switch fileIdentity(path) {
        case .success(let id):
            return id
        case .failure(.missing):
            throw fail(
                "names \(path), which does not exist here: the kernel matches executables by file identity, so the file must exist when the policy is committed"
            )
        case .failure(.notRegularFile(let kind)):
            throw fail(
                "names \(path), which is \(kind), not a regular file: ALE_APP_ID must name an executable file (the kernel matches executables by file identity)"
            )
        case .failure(.unresolvable(let code)):
            throw fail("names \(path), which cannot be resolved here: \(String(cString: strerror(code)))")
        }
    }

    enum FileIdentityError: Error, Equatable {
        case missing
        case notRegularFile(kind: String)
        case unresolvable(errno: Int32)
    }

    /// open(2)'s O_PATH (Linux; this value on x86_64 and arm64), which Swift's Glibc module does
    /// not export: a descriptor that names a file without opening it.
    static let openPathOnly: Int32 = 0o10_000_000

    /// The identity the kernel reports for the executable at `path` (events' exe_dev and
    /// exe_ino), or nil when it is not a regular file: how `lfp events` checks that
    /// /proc/PID/exe is the file the kernel matched.
    public static func executableIdentity(_ path: String) -> (dev: UInt64, ino: UInt64)? {
        try? fileIdentity(path).get()
    }

    /// (kernel dev_t of the file's superblock, inode), as the kernel sees an executable:
    /// `exe->f_inode->i_sb->s_dev`. stat()'s st_dev is not always that (btrfs subvolumes report
    /// their own anonymous device), so the device comes from the mount the file is on: its
    /// mount id (/proc/self/fdinfo) names a line of /proc/self/mountinfo whose major:minor is
    /// the superblock's. stat()'s device is the fallback.
    ///
    /// The file is named with O_PATH, never opened: open(O_RDONLY) of a FIFO waits for a writer
    /// (a FIFO named as ALE_APP_ID hung `lfp policy load`), and opening a device runs its
    /// driver. fstat and fdinfo of the one descriptor describe the same file.
    static func fileIdentity(_ path: String) -> Result<(dev: UInt64, ino: UInt64), FileIdentityError> {
        let fd = open(path, openPathOnly | O_CLOEXEC)  // follows symlinks, as exec does
        guard fd >= 0 else { return .failure(errno == ENOENT ? .missing : .unresolvable(errno: errno)) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.unresolvable(errno: errno)) }
        guard st.st_mode & S_IFMT == S_IFREG else { return .failure(.notRegularFile(kind: fileKind(st.st_mode))) }
        func kernelDev(major: UInt64, minor: UInt64) -> UInt64 { major << 20 | minor }
        let d = UInt64(st.st_dev)  // glibc's encoding of major:minor
        var dev = kernelDev(major: ((d >> 8) & 0xfff) | ((d >> 32) & ~UInt64(0xfff)), minor: (d & 0xff) | ((d >> 12) & ~UInt64(0xff)))
        if let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("mnt_id:") }),
            let mountID = line.split(separator: ":").last.map({ String($0).trimmingCharacters(in: .whitespaces) }),
            let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8),
            let mount = mounts.split(separator: "\n").first(where: { $0.split(separator: " ").first.map(String.init) == mountID })
        {
            let fields = mount.split(separator: " ")
            let mm = fields.count > 2 ? fields[2].split(separator: ":") : []
            if mm.count == 2, let major = UInt64(mm[0]), let minor = UInt64(mm[1]) {
                dev = kernelDev(major: major, minor: minor)
            }
        }
        return .success((dev, UInt64(st.st_ino)))
    }

    /// "a FIFO", "a directory", ... for the error.
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file (mode \(String(mode, radix: 8)))"
        }
    }
}
