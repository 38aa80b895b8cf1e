import Foundation
import Testing

@testable import FilterModel

/// lfp's own JSON parser (JSONParser.swift) against RFC 8259 and against Foundation's
/// JSONSerialization, which it replaced for speed.
@Suite("JSON parser")
struct JSONParserTests {
    /// A JSONValue as plain Foundation-like values, to compare with JSONSerialization's.
    static func plain(_ v: JSONValue) -> String {
        switch v {
        case .object(let kv): return "{" + kv.sorted { $0.0 < $1.0 }.map { "\($0.0.debugDescription):\(plain($0.1))" }.joined(separator: ",") + "}"
        case .array(let a): return "[" + a.map(plain).joined(separator: ",") + "]"
        case .string(let s): return s.debugDescription
        case .number(let n): return "#" + (Double(n).map { String($0) } ?? n)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }

    static func plain(foundation v: Any) -> String {
        switch v {
        case let d as [String: Any]: return "{" + d.keys.sorted().map { "\($0.debugDescription):\(plain(foundation: d[$0]!))" }.joined(separator: ",") + "}"
        case let a as [Any]: return "[" + a.map { plain(foundation: $0) }.joined(separator: ",") + "]"
        case let s as String: return s.debugDescription
        case is NSNull: return "null"
        case let b as Bool where type(of: v) == Bool.self || type(of: v) == Policy.jsonBooleanType: return b ? "true" : "false"
        case let n as NSNumber: return "#" + String(n.doubleValue)
        default: return "?"
        }
    }

    func error(_ text: String) -> JSONSyntaxError? {
        do {
            _ = try JSONValue.parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test("values: escapes, surrogate pairs, numbers kept exactly, a repeated name's last value")
    func values() throws {
        guard
            case .object(let kv) = try JSONValue.parse(
                #" {"a": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "b": [1, -2, 18446744073709551615, -9223372036854775808, 1.5, 1e3, 2.50E+1, 0], "c": true, "d": false, "e": null, "a2": {}, "a3": [] , "k": 1, "k": 2} "#
            )
        else {
            Issue.record("not an object")
            return
        }
        let d = Dictionary(kv, uniquingKeysWith: { _, _ in .null })
        #expect(kv.count == 8, "the repeated name counts once")
        guard case .string(let s) = d["a"], case .array(let nums) = d["b"], case .number(let k) = d["k"] else {
            Issue.record("shapes")
            return
        }
        #expect(s == "x\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}")
        #expect(k == "2", "the last value of a repeated name")
        let texts = nums.map { v -> String in if case .number(let n) = v { return n } else { return "?" } }
        #expect(texts == ["1", "-2", "18446744073709551615", "-9223372036854775808", "1.5", "1000", "25", "0"])
    }

    @Test("syntax errors name the line and column and what was wrong")
    func errors() {
        let cases: [(String, Int, Int, String)] = [
            ("{\"a\": }", 1, 7, "where a value was expected"),
            ("{\n  \"a\": 1,\n}", 3, 1, "member name"),
            ("[1 2]", 1, 4, "',' or ']'"),
            ("{\"a\" 1}", 1, 6, "':'"),
            ("\"abc", 1, 1, "never closed"),
            ("\"a\u{1}b\"", 1, 3, "control character"),
            ("\"\\x\"", 1, 2, "not a JSON escape"),
            ("\"\\ud800\"", 1, 8, "lone surrogate"),
            ("\"\\udc00\"", 1, 8, "lone surrogate"),
            ("[01]", 1, 2, "may not start with 0"),
            ("[1.]", 1, 4, "digits after '.'"),
            ("[1e]", 1, 4, "exponent"),
            ("[-]", 1, 2, "needs digits"),
            ("[tru]", 1, 2, "did you mean true"),
            ("{} {}", 1, 4, "after the document's value"),
            ("", 1, 1, "ends where a value was expected"),
            ("[1,", 1, 4, "ends where a value was expected"),
            ("{\"é\": x}", 1, 7, "where a value was expected"),
        ]
        for (text, line, column, words) in cases {
            guard let e = error(text) else {
                Issue.record("\(text.debugDescription) parsed")
                continue
            }
            #expect(e.line == line && e.column == column, "\(text.debugDescription): \(e)")
            #expect(e.problem.contains(words), "\(text.debugDescription): \(e)")
        }
        let deep = String(repeating: "[", count: JSONValue.parserDepthLimit + 1) + String(repeating: "]", count: JSONValue.parserDepthLimit + 1)
        #expect(error(deep)?.problem.contains("nests deeper") == true, "the parser bounds its own recursion")
    }

    @Test("a policy's JSON syntax error is FWP's syntax error, with the place")
    func policyError() {
        #expect(throws: FWPError.self) { try Policy.parse("{\"filters\": [}") }
        do {
            _ = try Policy.parse("{\n\"filters\": [}", sourceName: "p.json")
        } catch let e as FWPError {
            #expect(e.code == .policySyntax)
            #expect(e.message == "p.json: JSON syntax error: line 2, column 13: '}' where a value was expected")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// Random documents, read by both parsers: the same values. Seeded, so a failure repeats.
    @Test("random documents: the same values as JSONSerialization", arguments: 0..<4)
    func differential(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        for _ in 0..<300 {
            let text = Self.document(&rng, depth: 0)
            let ours = Self.plain(try JSONValue.parse(text))
            let theirs = Self.plain(foundation: try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
            #expect(ours == theirs, "\(text)")
        }
    }

    static func document(_ rng: inout SplitMix, depth: Int) -> String {
        let pick = depth > 3 ? 2 + rng.next() % 5 : rng.next() % 7
        switch pick {
        case 0:
            let n = Int(rng.next() % 5)
            return "{" + (0..<n).map { i in "\(string(&rng, salt: i)) : \(document(&rng, depth: depth + 1))" }.joined(separator: ",\n") + "}"
        case 1: return "[ " + (0..<Int(rng.next() % 5)).map { _ in document(&rng, depth: depth + 1) }.joined(separator: " , ") + "]"
        case 2: return string(&rng, salt: 0)
        case 3: return ["0", "-1", "42", "4294967295", "1.25", "-0.5", "3e2", "1E-2"][Int(rng.next() % 8)]
        case 4: return "true"
        case 5: return "false"
        default: return "null"
        }
    }

    static func string(_ rng: inout SplitMix, salt: Int) -> String {
        let pieces = ["a", "é", "\\n", "\\\"", "\\u0041", "\\ud83d\\ude00", "😀", " ", "\\\\", "\\/", "key\(salt)"]
        return "\"" + (0..<Int(rng.next() % 6)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined() + "k\(salt)\""
    }
}

/// A small seeded generator (SplitMix64), so a failing document can be regenerated.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
