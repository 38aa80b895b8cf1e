// A strict JSON parser (RFC 8259) straight from the document's UTF-8 bytes into JSONValue.
//
// Why not Foundation's JSONDecoder: decoding a value of unknown shape through Codable costs a
// thrown DecodingError for every shape tried and missed, and a coding path per value; a
// 100,000-filter policy (54 MB) took 3.7 s there, most of `lfp policy load`. JSONSerialization
// builds Foundation objects: 2.5 GB for the same document. This parser takes about a tenth of a
// second per 10 MB and keeps only the values.
//
// Nesting is bounded before it runs (PolicyLimits.scanJSON refuses documents deeper than 64
// levels), and again here, so the recursion cannot exhaust the stack whoever calls it.

/// Where and why a JSON document is not JSON.
struct JSONSyntaxError: Error, CustomStringConvertible {
    var line: Int
    var column: Int
    var problem: String
    var description: String { "line \(line), column \(column): \(problem)" }
}

extension JSONValue {
    /// The deepest nesting the parser itself accepts, whatever checked the document before.
    static let parserDepthLimit = 512

    /// Parse a whole document: one value, with nothing but white space around it.
    static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        var text = text
        text.makeContiguousUTF8()
        let result: Result<JSONValue, JSONSyntaxError> =
            text.utf8.withContiguousStorageIfAvailable { bytes in
                var p = JSONParser(bytes: bytes)
                do throws(JSONSyntaxError) {
                    p.skipSpace()
                    let v = try p.value(depth: 0)
                    p.skipSpace()
                    if p.at < bytes.count { throw p.error("unexpected text after the document's value") }
                    return .success(v)
                } catch {
                    return .failure(error)
                }
            } ?? .failure(JSONSyntaxError(line: 1, column: 1, problem: "the text is not contiguous UTF-8"))
        return try result.get()
    }
}

private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var at = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The 1-based line and column of `at`, counted only when an error is reported.
    func error(_ problem: String, at offset: Int? = nil) -> JSONSyntaxError {
        let end = min(offset ?? at, bytes.count)
        var line = 1, column = 1
        for i in 0..<end {
            if bytes[i] == 0x0A {
                line += 1
                column = 1
            } else if bytes[i] & 0xC0 != 0x80 {  // count characters, not UTF-8 continuation bytes
                column += 1
            }
        }
        return JSONSyntaxError(line: line, column: column, problem: problem)
    }

    mutating func skipSpace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x09, 0x0A, 0x0D: at += 1
            default: return
            }
        }
    }

    private func describe(_ b: UInt8) -> String {
        b >= 0x21 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard at < bytes.count else { throw error("the document ends where a value was expected") }
        switch bytes[at] {
        case 0x7B: return try object(depth: depth + 1)
        case 0x5B: return try array(depth: depth + 1)
        case 0x22: return .string(try string())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6E: try literal("null"); return .null
        case 0x2D, 0x30...0x39: return .number(try number())
        case let b: throw error("\(describe(b)) where a value was expected")
        }
    }

    private mutating func nested(_ depth: Int) throws(JSONSyntaxError) {
        if depth > JSONValue.parserDepthLimit {
            throw error("nests deeper than \(JSONValue.parserDepthLimit) levels")
        }
        at += 1  // the opening bracket
        skipSpace()
    }

    mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        try nested(depth)
        var members: [(String, JSONValue)] = []
        if at < bytes.count && bytes[at] == 0x7D {
            at += 1
            return .object(members)
        }
        while true {
            guard at < bytes.count, bytes[at] == 0x22 else {
                throw at < bytes.count
                    ? error("\(describe(bytes[at])) where a member name (a string) was expected") : error("the document ends inside an object")
            }
            let key = try string()
            skipSpace()
            guard at < bytes.count, bytes[at] == 0x3A else { throw error("expected ':' after the member name \"\(key)\"") }
            at += 1
            skipSpace()
            let v = try value(depth: depth)
            // A repeated name: the last one counts, as in JavaScript and Foundation's JSONDecoder.
            if members.count < 32 {
                if let i = members.firstIndex(where: { $0.0 == key }) { members.remove(at: i) }
            } else if members.contains(where: { $0.0 == key }) {
                members.removeAll { $0.0 == key }
            }
            members.append((key, v))
            skipSpace()
            guard at < bytes.count else { throw error("the document ends inside an object") }
            switch bytes[at] {
            case 0x2C:
                at += 1
                skipSpace()
            case 0x7D:
                at += 1
                return .object(members)
            case let b: throw error("\(describe(b)) where ',' or '}' was expected")
            }
        }
    }

    mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        try nested(depth)
        var elements: [JSONValue] = []
        if at < bytes.count && bytes[at] == 0x5D {
            at += 1
            return .array(elements)
        }
        while true {
            elements.append(try value(depth: depth))
            skipSpace()
            guard at < bytes.count else { throw error("the document ends inside a list") }
            switch bytes[at] {
            case 0x2C:
                at += 1
                skipSpace()
            case 0x5D:
                at += 1
                return .array(elements)
            case let b: throw error("\(describe(b)) where ',' or ']' was expected")
            }
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        guard at + n <= bytes.count, (0..<n).allSatisfy({ bytes[at + $0] == w[$0] }) else {
            throw error("not a JSON value (did you mean \(word)?)")
        }
        at += n
    }

    /// A string's value; `at` is on its opening quote. Text without escapes is copied once.
    mutating func string() throws(JSONSyntaxError) -> String {
        let start = at
        at += 1
        var runStart = at
        var out: [UInt8]? = nil
        while at < bytes.count {
            let b = bytes[at]
            if b == 0x22 {
                let run = UnsafeBufferPointer(rebasing: bytes[runStart..<at])
                at += 1
                guard var o = out else { return String(decoding: run, as: UTF8.self) }
                o.append(contentsOf: run)
                return String(decoding: o, as: UTF8.self)
            }
            if b < 0x20 { throw error("a control character (\(describe(b))) inside a string; write it escaped") }
            if b != 0x5C {
                at += 1
                continue
            }
            if out == nil { out = [] }
            out!.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<at]))
            at += 1
            guard at < bytes.count else { break }
            let e = bytes[at]
            at += 1
            switch e {
            case 0x22, 0x5C, 0x2F: out!.append(e)
            case 0x62: out!.append(0x08)
            case 0x66: out!.append(0x0C)
            case 0x6E: out!.append(0x0A)
            case 0x72: out!.append(0x0D)
            case 0x74: out!.append(0x09)
            case 0x75:
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {  // a high surrogate: its low half must follow
                    guard at + 1 < bytes.count, bytes[at] == 0x5C, bytes[at + 1] == 0x75 else {
                        throw error("a lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) in a string")
                    }
                    at += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("a high surrogate not followed by a low one") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw error("a lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) in a string")
                }
                out!.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
            default:
                throw error("\\\(Character(Unicode.Scalar(e))) is not a JSON escape", at: at - 2)
            }
            runStart = at
        }
        throw error("the string that starts here is never closed", at: start)
    }

    private mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard at + 4 <= bytes.count else { throw error("a \\u escape needs four hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[at]
            let d: UInt8
            switch b {
            case 0x30...0x39: d = b - 0x30
            case 0x41...0x46: d = b - 0x41 + 10
            case 0x61...0x66: d = b - 0x61 + 10
            default: throw error("a \\u escape needs four hex digits")
            }
            v = v << 4 | UInt32(d)
            at += 1
        }
        return v
    }

    /// A number as JSONValue keeps it: an integer exactly (UINT64 needs all 64 bits), including
    /// one written with a fraction or exponent that is still a whole number; anything else as
    /// Double prints it.
    mutating func number() throws(JSONSyntaxError) -> String {
        let start = at
        if bytes[at] == 0x2D { at += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.at
            while p.at < p.bytes.count, (0x30...0x39).contains(p.bytes[p.at]) { p.at += 1 }
            return p.at - s
        }
        let intDigits = digits(&self)
        guard intDigits > 0 else { throw error("a number needs digits", at: start) }
        if intDigits > 1 && bytes[at - intDigits] == 0x30 { throw error("a number may not start with 0", at: start) }
        var integral = true
        if at < bytes.count && bytes[at] == 0x2E {
            at += 1
            integral = false
            guard digits(&self) > 0 else { throw error("a number needs digits after '.'") }
        }
        if at < bytes.count && (bytes[at] == 0x65 || bytes[at] == 0x45) {
            at += 1
            integral = false
            if at < bytes.count && (bytes[at] == 0x2B || bytes[at] == 0x2D) { at += 1 }
            guard digits(&self) > 0 else { throw error("a number needs digits in its exponent") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
        if integral {
            if let u = UInt64(text) { return String(u) }
            if let i = Int64(text) { return String(i) }
        }
        guard let d = Double(text) else { throw error("not a number", at: start) }
        if d.rounded() == d {
            if let u = UInt64(exactly: d) { return String(u) }
            if let i = Int64(exactly: d) { return String(i) }
        }
        return String(d)
    }
}
