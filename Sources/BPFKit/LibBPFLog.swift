import CLibBPF
import Foundation

/// libbpf prints warnings and verifier logs through a callback; lfp keeps the last lines so a
/// load failure can show *why* (the verifier's complaint) instead of only an errno.
final class LibBPFLog: @unchecked Sendable {
    static let shared = LibBPFLog()
    private let lock = NSLock()
    private var lines: [String] = []
    private static let keep = 40

    func append(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            lines.append(String(line))
        }
        if lines.count > LibBPFLog.keep { lines.removeFirst(lines.count - LibBPFLog.keep) }
    }

    /// The lines collected since the last call, most useful last.
    func take() -> String? {
        lock.lock(); defer { lock.unlock() }
        defer { lines.removeAll() }
        let interesting = lines.filter { !$0.hasPrefix(";") }
        return interesting.isEmpty ? nil : interesting.suffix(12).joined(separator: "\n")
    }

    func clear() { lock.lock(); lines.removeAll(); lock.unlock() }

    static func install() {
        _ = installed
    }

    private static let installed: Void = {
        libbpf_set_print { level, format, args in
            guard let format, let args else { return 0 }
            var buffer = [CChar](repeating: 0, count: 1024)
            let n = vsnprintf(&buffer, buffer.count, format, args)
            if n > 0 {
                let text = String(cString: buffer)
                if level != LIBBPF_DEBUG { LibBPFLog.shared.append(text) }
                if ProcessInfo.processInfo.environment["LFP_LIBBPF_DEBUG"] != nil {
                    FileHandle.standardError.write(text.data(using: .utf8) ?? Data())
                }
            }
            return 0
        }
    }()
}
