// ALE_APP_ID by file identity: the kernel matches the executable by (device, inode), resolved from
// the policy's path at commit (PolicyCompiler/FileIdentity.swift). The model answers the same way
// when both paths name existing files.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The identity of a file: what makes two paths (a symlink, a hard link, the file itself) the
/// same executable.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

extension AppId {
    /// Resolves a path to the identity of the file it names, or nil when it names none.
    public typealias IdentityLookup = @Sendable (String) -> FileIdentity?

    /// stat(2), following symlinks as exec does: (st_dev, st_ino). The default of
    /// `BaseFilteringEngine`, so that `lfp classify` agrees with the kernel for links.
    public static let statIdentity: IdentityLookup = { path in
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// No file system: ALE_APP_ID compares paths only (deterministic; the reference cases use it).
    public static let pathsOnly: IdentityLookup = { _ in nil }
}

/// One classify's view of file identities: each path is looked up once.
final class AppIdentityCache {
    private let lookup: AppId.IdentityLookup
    private var known: [[UInt8]: FileIdentity?] = [:]

    init(_ lookup: @escaping AppId.IdentityLookup) { self.lookup = lookup }

    func identity(_ blob: [UInt8]) -> FileIdentity? {
        let path = ConditionMatcher.trimNUL(blob)
        if let hit = known[path] { return hit }
        let id = path.first == UInt8(ascii: "/") ? lookup(String(decoding: path, as: UTF8.self)) : nil
        known[path] = id
        return id
    }

    /// EQUAL on ALE_APP_ID: the same file when both paths name existing files; otherwise the
    /// paths compared byte for byte (R3.8, C37).
    func sameApp(_ incoming: [UInt8], _ condition: [UInt8]) -> Bool {
        if let a = identity(incoming), let b = identity(condition) { return a == b }
        return ConditionMatcher.trimNUL(incoming) == ConditionMatcher.trimNUL(condition)
    }
}
