import Foundation
import Testing

/// Every rule number (R1.4, Q7) and kernel-mechanisms section (§5) the code cites is defined in
/// the repository's own docs/, so a reader of a clone can follow every citation.
@Suite("Citations resolve inside the repository")
struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func sources() -> [(String, String)] {
        var out: [(String, String)] = []
        for dir in ["Sources", "bpf", "Tests", "README.md"] {
            let base = root.appendingPathComponent(dir)
            let paths: [URL]
            if dir.hasSuffix(".md") {
                paths = [base]
            } else {
                let e = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)
                paths = (e?.allObjects as? [URL] ?? []).filter { ["swift", "h", "c", "md", "yaml"].contains($0.pathExtension) }
            }
            for p in paths where !p.path.contains("/build/") {
                if let text = try? String(contentsOf: p, encoding: .utf8) { out.append((p.path, text)) }
            }
        }
        return out
    }

    static func matches(_ pattern: String, in text: String) -> [String] {
        let re = try! NSRegularExpression(pattern: pattern)
        return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }

    @Test("every R and Q number cited is defined in docs/wfp-semantics.md")
    func rules() throws {
        let doc = try String(contentsOf: Self.root.appendingPathComponent("docs/wfp-semantics.md"), encoding: .utf8)
        let defined = Set(Self.matches(#"\*\*((?:R\d+\.\d+)|(?:Q\d+))\*\*"#, in: doc))
        var cited = 0
        for (path, text) in Self.sources() {
            for id in Self.matches(#"\b(R\d+\.\d+|Q(?:[1-9]|1[01]))\b"#, in: text) {
                cited += 1
                #expect(defined.contains(id), "\(id), cited in \(path), is not defined in docs/wfp-semantics.md")
            }
        }
        #expect(cited > 100, "the scan found the citations (\(cited))")
    }

    @Test("every kernel-mechanisms section cited exists in docs/kernel-mechanisms.md")
    func kernelSections() throws {
        let doc = try String(contentsOf: Self.root.appendingPathComponent("docs/kernel-mechanisms.md"), encoding: .utf8)
        let sections = Set(Self.matches(#"(?m)^#+ §(\w+)"#, in: doc))
        var cited = 0
        for (path, text) in Self.sources() {
            #expect(!text.contains("shared" + "/reference"), "\(path) cites a document outside the repository")
            for s in Self.matches(#"kernel-mechanisms(?:\.md)? §(\w+)"#, in: text) {
                cited += 1
                #expect(sections.contains(s), "§\(s), cited in \(path), is not in docs/kernel-mechanisms.md")
            }
        }
        #expect(cited >= 4)
    }
}
