// Bounds on policy input, checked before Yams composes it: size (read in chunks, refused past
// the limit), nesting depth (libyaml events, no recursion), and emptiness.

// libyaml as Yams bundles it (Yams' CYaml target; Yams has no public event API). The same
// parser Yams uses, so the depth measured is the depth Yams would compose.
import CYaml
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The limits lfp puts on a policy document.
public enum PolicyLimits {
    /// The largest policy file lfp reads: 64 MiB. Checked with fstat before reading a regular
    /// file and while reading anything else (a pipe, `<(...)`), so an oversized input is refused
    /// before it is read whole, let alone parsed (parsing takes ~25 times the file's size).
    /// Raised with the filter capacity (LFP_MAX_FILTERS): at least 1 KiB per filter.
    nonisolated(unsafe) public static var maxBytes = 64 << 20

    /// The deepest nesting lfp parses: 64 levels (a policy needs about 8). The YAML parser
    /// recurses once per level: 5,000 levels in a 10 KB file overflowed its stack (SIGSEGV).
    public static let maxDepth = 64

    /// What one pass over a JSON document's bytes tells (strings skipped, brackets outside them
    /// are its only nesting): where it first nests deeper than `limit`, and how many elements its
    /// top-level "filters" array has (nil without one). One pass: libyaml's event parser took
    /// seconds over a 100k-filter JSON document, and a second scan for the count doubled that.
    public struct JSONShape: Sendable {
        public var excess: (depth: Int, line: Int)?
        public var filters: Int?
    }

    public static func scanJSON(_ text: String, limit: Int = maxDepth) -> JSONShape {
        var text = text
        text.makeContiguousUTF8()
        return text.utf8.withContiguousStorageIfAvailable { scanJSON($0, limit: limit) }!
    }

    /// The pass over the bytes themselves (through String.UTF8View it took four times as long).
    static func scanJSON(_ utf8: UnsafeBufferPointer<UInt8>, limit: Int) -> JSONShape {
        var shape = JSONShape()
        var depth = 0, line = 1, inString = false, escaped = false
        var key: [UInt8] = [], collecting = false, lastKey: [UInt8] = []
        var inFilters = false, count = 0, sawValue = false
        let filtersKey = Array("filters".utf8)
        for b in utf8 {
            if b == 0x0A { line += 1 }
            if inString {
                if escaped {
                    escaped = false
                } else if b == 0x5C {
                    escaped = true
                } else if b == 0x22 {
                    inString = false
                    if collecting { lastKey = key; collecting = false }
                } else if collecting {
                    key.append(b)
                }
                if inFilters && depth == 2 { sawValue = true }
                continue
            }
            switch b {
            case 0x22:  // a string; at depth 1 it may be a key
                inString = true
                if depth == 1 && !inFilters && shape.filters == nil { key = []; collecting = true }
            case 0x7B, 0x5B:  // { [
                if depth == 1 && b == 0x5B && lastKey == filtersKey && shape.filters == nil {
                    inFilters = true; count = 0; sawValue = false
                } else if inFilters && depth == 2 {
                    sawValue = true
                }
                depth += 1
                if depth > limit && shape.excess == nil {
                    shape.excess = (depth, line)
                    return shape  // refused anyway: the count no longer matters
                }
            case 0x7D, 0x5D:  // } ]
                depth -= 1
                if inFilters && depth == 1 {
                    shape.filters = count + (sawValue ? 1 : 0)
                    inFilters = false
                    lastKey = []
                }
            case 0x2C:  // ,
                if inFilters && depth == 2 { count += 1; sawValue = false }
            case 0x20, 0x09, 0x0A, 0x0D, 0x3A:
                break
            default:
                if inFilters && depth == 2 { sawValue = true }
            }
        }
        return shape
    }

    /// Where the document nests deeper than `limit` (the depth reached and its 1-based line),
    /// or nil. Collections count one level each, and an alias as deep as the node it names
    /// reaches (a chain of aliases to nested anchors nests without any deep line: 690 KB of
    /// them overflowed the stack too). Measured with the event parser of the libyaml inside
    /// Yams, which iterates where Yams' composer recurses, so the two read the text alike (a
    /// hand-written scan could disagree on quotes or comments and let depth through).
    public static func depthExcess(in text: String, limit: Int = maxDepth) -> (depth: Int, line: Int)? {
        DepthPass.excess(in: text, limit: limit)
    }

    /// Read a policy file as UTF-8 text, refusing it once it is larger than `maxBytes`.
    public static func readText(_ path: String, maxBytes: Int) throws -> String {
        func unreadable(_ code: Int32) -> FWPError {
            FWPError(.policySyntax, "\(path): cannot read the file (\(String(cString: strerror(code))))")
        }
        let mib = maxBytes % (1 << 20) == 0 ? " (\(maxBytes >> 20) MiB)" : ""
        func tooLarge(_ what: String) -> FWPError {
            FWPError(.policyTooLarge, "\(path): \(what) the limit for a policy file, \(maxBytes) bytes\(mib)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw unreadable(errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw unreadable(errno) }
        if st.st_mode & S_IFMT == S_IFDIR { throw unreadable(EISDIR) }
        if st.st_mode & S_IFMT == S_IFREG && Int(st.st_size) > maxBytes { throw tooLarge("\(st.st_size) bytes, more than") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw unreadable(errno)
            }
            if n == 0 { break }
            guard bytes.count + n <= maxBytes else { throw tooLarge("refused after reading more than") }
            bytes.append(contentsOf: chunk[0..<n])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FWPError(.policySyntax, "\(path): the file is not UTF-8 text")
        }
        return text
    }
}

extension Policy {
    /// Size and nesting, before a parser sees the text: `LFP_E_POLICY_TOO_LARGE`,
    /// `LFP_E_POLICY_TOO_DEEP`.
    /// Returns the JSON document's filter count (what `scanJSON` saw), nil for YAML.
    @discardableResult
    static func checkLimits(_ text: String, sourceName: String, json: Bool = false) throws -> Int? {
        let size = text.utf8.count
        if size > PolicyLimits.maxBytes {
            throw FWPError(
                .policyTooLarge, "\(sourceName): \(size) bytes, more than the limit for a policy, \(PolicyLimits.maxBytes) bytes")
        }
        let shape = json ? PolicyLimits.scanJSON(text) : nil
        if let excess = json ? shape?.excess : PolicyLimits.depthExcess(in: text) {
            throw FWPError(
                .policyTooDeep,
                "\(sourceName): line \(excess.line) nests deeper than \(PolicyLimits.maxDepth) levels (\(excess.depth) reached; an alias counts as deep as the node it names); lfp refuses such documents before building them, and a policy needs about 8"
            )
        }
        return shape?.filters
    }

    /// Refuse a policy without a single object: committing it removes every filter, which an
    /// empty or comment-only file (a truncated write, the wrong file) should not do by accident.
    /// `lfp policy load --allow-empty` skips this.
    public func requireObjects(sourceName: String) throws {
        guard isEmpty else { return }
        throw FWPError(
            .policyEmpty,
            "\(sourceName) defines no providers, sublayers, callouts, provider contexts or filters: committing it would remove every filter; use --allow-empty to do that on purpose"
        )
    }
}

/// The depth pass of `PolicyLimits.depthExcess`: libyaml's event parser, which keeps its own
/// stacks instead of recursing, so it walks any depth safely.
enum DepthPass {
    static func excess(in text: String, limit: Int) -> (depth: Int, line: Int)? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { buffer -> (depth: Int, line: Int)? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            // One entry per open collection: where it stands and the deepest level reached in it.
            var open: [(anchor: String?, base: Int, deepest: Int)] = []
            // How far below itself each anchored node reaches, aliases inside it included.
            var anchorDepth: [String: Int] = [:]
            var event = yaml_event_t()
            while true {
                // A syntax error: nothing before it was too deep, and Yams reports it.
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                func reach(_ depth: Int) -> Bool {
                    if !open.isEmpty && depth > open[open.count - 1].deepest { open[open.count - 1].deepest = depth }
                    return depth > limit
                }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor =
                        event.type == YAML_SEQUENCE_START_EVENT
                        ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                    let depth = open.count + 1
                    if reach(depth) { return (depth, line) }
                    open.append((anchor.map { String(cString: $0) }, depth - 1, depth))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let closed = open.popLast() else { return nil }
                    if let anchor = closed.anchor { anchorDepth[anchor] = closed.deepest - closed.base }
                    if reach(closed.deepest) { return (closed.deepest, line) }
                case YAML_SCALAR_EVENT:
                    if let anchor = event.data.scalar.anchor { anchorDepth[String(cString: anchor)] = 0 }
                case YAML_ALIAS_EVENT:
                    // The alias stands for the anchored node: as deep as that node reaches.
                    let below = event.data.alias.anchor.flatMap { anchorDepth[String(cString: $0)] } ?? 0
                    let depth = open.count + below
                    if reach(depth) { return (depth, line) }
                default:
                    break
                }
            }
        }
    }
}
