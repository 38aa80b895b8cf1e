import Foundation

/// `lfp daemon` is the one writer of the policy while it runs: it holds an exclusive flock on
/// `$LFP_STATE_DIR/daemon.lock` for its lifetime (the kernel drops it when the process dies,
/// kill -9 included), and direct commits (`Engine.commit`) refuse while it is held.
public final class DaemonLock {
    private let fd: Int32
    public let path: String

    /// Takes the lock, or throws `EngineError.daemonAlreadyRunning`. `socket` is written into
    /// the file so a refused command can say where the daemon listens.
    public init(_ config: EngineConfiguration, socket: String) throws {
        try StateTree.prepareStateDirectory(config)
        path = config.daemonLockFile
        fd = try StateTree.openFile(path)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw EngineError.daemonAlreadyRunning(lock: config.daemonLockFile)
        }
        ftruncate(fd, 0)
        _ = socket.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// The socket of the daemon that holds the lock, or nil when none runs.
    public static func holder(_ config: EngineConfiguration) -> String? {
        let fd = open(config.daemonLockFile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : config.daemonLockFile
    }
}
