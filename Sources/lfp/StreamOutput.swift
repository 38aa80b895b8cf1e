import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Standard output of a command that streams until its reader goes away (`lfp events
/// --follow | head -1`). Written with write(2): FileHandle.write(_:) traps on EPIPE (a try!
/// inside Foundation), which crashed the tail with exit 132 and left its subscriber slot
/// filling until another tail swept it.
enum StreamOutput {
    struct WriteError: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "cannot write to standard output: \(String(cString: strerror(code)))" }
    }

    /// Ignore SIGPIPE so that a write to a pipe nobody reads returns EPIPE instead of killing
    /// the process before it has released what it holds.
    static func deferBrokenPipe() { signal(SIGPIPE, SIG_IGN) }

    /// Write all of `data`; false when the reader has gone (EPIPE).
    static func write(_ data: Data) throws -> Bool {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(STDOUT_FILENO, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EPIPE { return false }
                    throw WriteError(code: errno)
                }
                offset += n
            }
            return true
        }
    }

    /// End the process as SIGPIPE ends a writer whose reader left: killed by the signal,
    /// which a shell reports as status 141, and without a message. Call it once what the
    /// process holds is released.
    static func exitForBrokenPipe() -> Never {
        signal(SIGPIPE, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        raise(SIGPIPE)
        _exit(128 + SIGPIPE)  // not reached
    }

    /// Call `gone` when standard output is a pipe or socket and its reader closes it, even
    /// while nothing is written: a quiet `lfp events --follow | head -1` would otherwise hold
    /// its subscriber slot until the next event (GNU tail -f watches its output the same way).
    /// A thread waits in poll() for POLLERR (pipe) or POLLHUP (socket).
    static func watchReader(_ gone: @escaping @Sendable () -> Void) {
        var st = stat()
        guard fstat(STDOUT_FILENO, &st) == 0 else { return }
        let type = st.st_mode & S_IFMT
        guard type == S_IFIFO || type == S_IFSOCK else { return }
        Thread {
            var p = pollfd(fd: STDOUT_FILENO, events: 0, revents: 0)
            while true {
                if poll(&p, 1, -1) < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if p.revents & Int16(POLLERR | POLLHUP) != 0 {
                    gone()
                    return
                }
            }
        }.start()
    }
}
