import Foundation

/// Lines from a child's output pipe, with a timeout on every wait: the one reader the tests'
/// child processes (python helpers, `lfp run`, `lfp daemon`) share.
final class LineReader {
    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    /// The next line; nil at EOF, or when none came within `timeoutMs` (nil: wait as long as it
    /// takes, for children that always answer or exit).
    func readLine(timeoutMs: Int32? = nil) -> String? {
        let deadline = timeoutMs.map { DispatchTime.now().uptimeNanoseconds + UInt64($0) * 1_000_000 }
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer = Data(buffer[buffer.index(after: nl)...])
                return line
            }
            if let deadline {
                let now = DispatchTime.now().uptimeNanoseconds
                guard now < deadline else { return nil }
                var p = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { return nil }
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return timeoutMs == nil && !buffer.isEmpty ? take() : nil }
            buffer.append(chunk)
        }
    }

    /// What is left unread (and then everything until EOF).
    func rest() -> String { take() + String(decoding: handle.readDataToEndOfFile(), as: UTF8.self) }

    private func take() -> String {
        defer { buffer = Data() }
        return String(decoding: buffer, as: UTF8.self)
    }
}
