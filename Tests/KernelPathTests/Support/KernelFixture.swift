import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// A private lfp for one test: its own bpffs root (so its own maps), state directory and cgroup
/// parent under the cgroup2 mount, all named lfp-test-*. `cleanup()` detaches what it attached
/// and removes every cgroup, pin and file it made, also after a failed expectation.
final class KernelFixture {
    static let python = "/usr/bin/python3"
    static let client = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("client.py").path
    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    let engine: Engine
    let config: EngineConfiguration
    let cgroupParent: String
    let tag: String

    init() throws {
        try #require(geteuid() == 0, "kernel-path tests need root")
        KernelFixture.lock.lock()
        KernelFixture.counter += 1
        tag = "lfp-test-\(getpid())-\(KernelFixture.counter)"
        KernelFixture.lock.unlock()
        cgroupParent = try CgroupV2.mountPoint() + "/" + tag
        try BPFFS.ensureMounted()
        config = EngineConfiguration(
            bpffsRoot: "/sys/fs/bpf/" + tag, stateDirectory: "/tmp/" + tag,
            cgroupParent: cgroupParent, objectPath: KernelFixture.objectPath)
        engine = Engine(config: config)
        try CgroupV2.create(cgroupParent)
    }

    static var objectPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("bpf/build/lfp.bpf.o").path
    }

    /// Make a cgroup for a workload and attach lfp to it.
    @discardableResult
    func workload(_ name: String) throws -> Workload {
        let path = cgroupParent + "/" + name
        try CgroupV2.create(path)
        return try engine.attach(workload: name, cgroupPath: path)
    }

    func commit(_ yaml: String) throws -> [String: UInt64] {
        let policy = try Policy.parse(yaml, sourceName: "test")
        try engine.commit(policy)
        let (_, committed) = try #require(try engine.committedPolicy())
        return Dictionary(committed.filters.map { ($0.displayData.name ?? "", $0.filterId) }, uniquingKeysWith: { a, _ in a })
    }

    struct StepResult: Decodable {
        var ok: Bool?
        var errno: Int32?
        var error: String?
        var stage: String?
        var localPort: UInt16?
    }

    /// Run client.py inside the workload's cgroup and decode its per-step results.
    func runClient(in workload: Workload, _ steps: [[String: Any]], python: String = KernelFixture.python) throws -> [StepResult] {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: steps), as: UTF8.self)
        let out = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [
            "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", workload.cgroupPath,
            python, KernelFixture.client, json,
        ]
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "client failed: \(String(decoding: data, as: UTF8.self))")
        return try JSONDecoder().decode([StepResult].self, from: data)
    }

    /// Collect events until `done` says the set is complete, or `timeout` passes.
    func collect(_ sub: EventSubscription, timeout: Double = 5, until done: @escaping ([ALEEvent]) -> Bool) async -> [ALEEvent] {
        let stopper = Task {
            try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
            if !Task.isCancelled { sub.cancel() }  // a timeout ends the stream, a `done` does not
        }
        defer { stopper.cancel() }
        var events: [ALEEvent] = []
        for await e in sub.events {
            events.append(e)
            if done(events) { break }
        }
        return events
    }

    func cleanup() {
        for w in engine.workloads() { try? engine.detach(workload: w.name) }
        try? CgroupV2.remove(cgroupParent)
        try? FileManager.default.removeItem(atPath: config.bpffsRoot)
        try? FileManager.default.removeItem(atPath: config.stateDirectory)
    }

    deinit { cleanup() }
}

/// A loopback TCP listener outside any workload cgroup (the test process's own).
final class Listener {
    let fd: Int32
    let port: UInt16
    init(v6: Bool = false, udp: Bool = false) throws {
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var port: UInt16 = 0
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_addr = in6addr_loopback
            let r = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
            var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = UInt16(bigEndian: a.sin6_port)
            try #require(r == 0)
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let r = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = UInt16(bigEndian: a.sin_port)
            try #require(r == 0)
        }
        self.port = port
        if !udp { try #require(listen(fd, 64) == 0) }
    }
    deinit { close(fd) }
}

/// A python3 process started inside a cgroup, talking line by line over stdout.
final class PyProc {
    let process = Process()
    private let out = Pipe()
    private let input = Pipe()
    private lazy var lines = LineReader(out.fileHandleForReading)

    /// `user`: run the script as this user (setpriv, no capabilities), e.g. "nobody".
    init(cgroup: String, script: String, args: [String] = [], user: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        let drop = user.map { ["/usr/bin/setpriv", "--reuid=\($0)", "--regid=65534", "--clear-groups", "--inh-caps=-all"] } ?? []
        process.arguments =
            [
                "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup,
            ] + drop + [KernelFixture.python, "-u", "-c", script] + args
        process.standardOutput = out
        process.standardInput = input
        try process.run()
    }

    /// Any program (not in a cgroup of the test's), e.g. the lfp CLI, read line by line.
    init(executable: String, args: [String], env: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        process.standardOutput = out
        process.standardInput = input
        try process.run()
    }

    static func command(_ executable: String, _ args: [String], env: [String: String] = [:]) throws -> PyProc {
        try PyProc(executable: executable, args: args, env: env)
    }

    /// A line to the script's stdin: the handshake for "go on" (the script waits in
    /// `sys.stdin.readline()`, never in a sleep).
    func send(_ line: String = "go") {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// The next line the script printed (nil at EOF).
    func readLine() -> String? { lines.readLine() }

    /// The next line, or nil when none came within `timeoutMs` (or at EOF): for tests that must
    /// not hang on a child that went quiet.
    func readLine(timeoutMs: Int32) -> String? { lines.readLine(timeoutMs: timeoutMs) }

    /// Remaining output and the exit status.
    func finish() -> (String, Int32) {
        let rest = lines.rest()
        process.waitUntilExit()
        return (rest, process.terminationStatus)
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// Outside-the-workload peers for the tests (the test process's own cgroup).
enum Net {
    static func sockaddr(_ host: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        if host.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &a.sin6_addr)
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &a.sin_addr)
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }

    /// Connect with a timeout; returns the connected fd, or -errno (ETIMEDOUT when nothing answered).
    static func connect(_ host: String, _ port: UInt16, timeoutMs: Int32 = 1000) -> Int32 {
        let fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let r = sockaddr(host, port) { Glibc.connect(fd, $0, $1) }
        if r == 0 { return fd }
        guard errno == EINPROGRESS else { let e = errno; close(fd); return -e }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&p, 1, timeoutMs) <= 0 { close(fd); return -ETIMEDOUT }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        if err != 0 { close(fd); return -err }
        return fd
    }

    /// A free port on loopback right now (bound then released).
    static func freePort(v6: Bool = false) -> UInt16 {
        let l = try! Listener(v6: v6)
        return l.port
    }
}

extension Net {
    /// Wait up to `timeoutMs` for `fd` to be readable; false on timeout.
    static func readable(_ fd: Int32, timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, timeoutMs) == 1
    }

    /// Accept one connection on listener `fd` and read what its peer sent first (nil on timeout).
    static func acceptAndRead(_ fd: Int32, timeoutMs: Int32) -> String? {
        guard readable(fd, timeoutMs: timeoutMs) else { return nil }
        let c = accept(fd, nil, nil)
        guard c >= 0 else { return nil }
        defer { close(c) }
        return datagram(c, timeoutMs: timeoutMs)
    }

    /// One datagram (or the first bytes of a stream) from `fd`, nil when none came in time.
    static func datagram(_ fd: Int32, timeoutMs: Int32) -> String? {
        guard readable(fd, timeoutMs: timeoutMs) else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = Glibc.recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf.prefix(n), as: UTF8.self) : nil
    }
}
