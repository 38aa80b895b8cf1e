import FilterEngine
import Foundation
import NIOConcurrencyHelpers
import Testing

/// `lfp daemon` as a child process of a test, on a KernelFixture's private state (its own
/// socket, database, pins and cgroups). `stop()` ends it with SIGTERM, `kill()` with SIGKILL.
final class DaemonProcess {
    let fx: KernelFixture
    let database: String
    private(set) var process: Process?
    private var output: Pipe?
    private(set) var log = ""
    private let drained = NIOLockedValueBox(Data())

    private let printedMore = NSCondition()

    /// Waits until the daemon has printed something `matches` accepts, woken by each new output,
    /// at most `timeoutMs`; false if it never did.
    func waitForOutput(timeoutMs: Int, _ matches: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        printedMore.lock()
        defer { printedMore.unlock() }
        while !matches(printed) {
            if !printedMore.wait(until: deadline) { return matches(printed) }
        }
        return true
    }

    /// What the daemon printed after "listening" so far (its log and audit lines).
    var printed: String { String(decoding: drained.withLockedValue { $0 }, as: UTF8.self) }

    init(_ fx: KernelFixture) {
        self.fx = fx
        database = "/tmp/\(fx.tag)-db/lfp.db"
    }

    var socket: String { fx.config.stateDirectory + "/lfp.sock" }

    var env: [String: String] {
        CLITests.env(fx).merging(["LFP_DB": database]) { _, b in b }
    }

    /// Starts the daemon and returns once it accepts connections (its "listening" line), or
    /// fails after 20 s.
    func start(_ extra: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.lfp)
        p.arguments = ["daemon"] + extra
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
        let o = Pipe()
        p.standardOutput = o
        p.standardError = o
        try p.run()
        process = p
        output = o
        let lines = LineReader(o.fileHandleForReading)
        let deadline = DispatchTime.now() + 20
        var seen: [String] = []
        while !(seen.last ?? "").contains("lfp daemon: listening") {
            let left = Int64(deadline.uptimeNanoseconds) - Int64(DispatchTime.now().uptimeNanoseconds)
            guard left > 0, let line = lines.readLine(timeoutMs: Int32(left / 1_000_000) + 1) else {
                p.terminate()
                throw DaemonTestError.notReady(seen.joined(separator: "\n"))
            }
            seen.append(line)
        }
        log = seen.joined(separator: "\n")
        // Keep draining the log so the daemon never blocks on a full pipe; `output` reads it.
        let handle = o.fileHandleForReading
        let drained = self.drained
        let printedMore = self.printedMore
        Thread.detachNewThread {
            while true {
                let d = handle.availableData
                if d.isEmpty { break }
                drained.withLockedValue { $0.append(d) }
                printedMore.broadcast()
            }
        }
    }

    func signal(_ sig: Int32) {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, sig)
        p.waitUntilExit()
        process = nil
    }

    func stop() { signal(SIGTERM) }
    func kill9() { signal(SIGKILL) }

    func cleanup() {
        kill9()
        try? FileManager.default.removeItem(atPath: (database as NSString).deletingLastPathComponent)
    }

    deinit { cleanup() }
}

/// An HTTP GET on loopback (the metrics endpoint), with a timeout on every read.
func httpGet(port: UInt16, path: String) -> String? {
    let fd = Net.connect("127.0.0.1", port, timeoutMs: 5000)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let req = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    _ = req.withCString { write(fd, $0, strlen($0)) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 5000) > 0 else { return nil }
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

enum DaemonTestError: Error {
    case notReady(String)
}
