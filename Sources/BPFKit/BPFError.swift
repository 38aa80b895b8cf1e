import CLibBPF

#if canImport(Glibc)
    import Glibc
#endif

/// Every failure of libbpf, the bpf() syscall and the few raw syscalls BPFKit makes, as one
/// typed error: the operation, the object it concerned, the errno, and (for loads) the tail of
/// the verifier log. Reads as "bpf_map_update_elem(lfp_rules): E2BIG (Argument list too long)".
public struct BPFError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let object: String?
    public let code: Int32
    public let log: String?
    let extraHint: String?

    public init(operation: String, object: String?, code: Int32, log: String? = nil, hint: String? = nil) {
        self.operation = operation
        self.object = object
        self.code = code
        self.log = log
        self.extraHint = hint
    }

    public var errnoName: String { BPFError.name(of: code) }

    public var description: String {
        var s = operation
        if let object { s += "(\(object))" }
        s += ": \(errnoName) (\(BPFError.text(of: code)))"
        if let hint { s += ". \(hint)" }
        if let log, !log.isEmpty { s += "\n\(log)" }
        return s
    }

    /// libbpf's own codes (4000+: bad ELF, kernel too old, ...) have their own texts.
    static func text(of code: Int32) -> String {
        if code >= 4000 {
            var buf = [CChar](repeating: 0, count: 256)
            _ = libbpf_strerror(code, &buf, buf.count)
            return String(cString: buf)
        }
        return String(cString: strerror(code))
    }

    /// What a user can do about the common causes.
    var hint: String? {
        if let extraHint { return extraHint }
        switch code {
        case EPERM, EACCES:
            return getuid() == 0
                ? "The kernel refused: the verifier rejected a program, or a capability (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) or lockdown forbids it"
                : "lfp needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        case ENOENT where operation.hasPrefix("bpf_obj_get"):
            return "Nothing is pinned there: no policy has been loaded and no workload attached yet"
        default:
            return nil
        }
    }

    static func name(of code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", E2BIG: "E2BIG",
            EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT",
            EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
            EINVAL: "EINVAL", ENOSPC: "ENOSPC", EROFS: "EROFS", ENOTSUP: "EOPNOTSUPP", ENOTEMPTY: "ENOTEMPTY",
            ELOOP: "ELOOP", ENAMETOOLONG: "ENAMETOOLONG", ENOTSUPP_LINUX: "ENOTSUPP",
        ]
        if code >= 4000 { return "LIBBPF_ERRNO \(code)" }
        return names[code] ?? "errno \(code)"
    }
}

/// ENOTSUPP (524) is the kernel-internal code the verifier and BTF loader leak to userspace.
let ENOTSUPP_LINUX: Int32 = 524

/// The funnel for libbpf/bpf() calls returning an int: negative (or -1 with errno) is failure.
@discardableResult
func bpfCall(_ operation: String, _ object: String?, _ body: () -> Int32) throws -> Int32 {
    let r = body()
    if r < 0 {
        let code = r == -1 && errno != 0 ? errno : -r
        throw BPFError(operation: operation, object: object, code: code, log: LibBPFLog.shared.take())
    }
    return r
}

/// The funnel for libbpf calls returning a pointer: NULL plus errno is failure.
func bpfPointer<T>(_ operation: String, _ object: String?, _ body: () -> T?) throws -> T {
    errno = 0
    guard let p = body() else {
        throw BPFError(
            operation: operation, object: object, code: errno == 0 ? EINVAL : errno,
            log: LibBPFLog.shared.take())
    }
    return p
}

/// The funnel for plain syscalls (-1 and errno).
@discardableResult
func sysCall(_ operation: String, _ object: String?, _ body: () -> Int32) throws -> Int32 {
    let r = body()
    if r == -1 { throw BPFError(operation: operation, object: object, code: errno) }
    return r
}
