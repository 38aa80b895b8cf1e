import Foundation
import SWXMLHash

/// The XML that `netsh wfp show filters` (filters.xml: `<wfpdiag><filters>…`) and
/// `netsh wfp show state` (wfpstate.xml: `<wfpstate><layers><item><filters>…`) write, read into
/// the plain tree lfp's policy reader takes (dictionaries, arrays, strings, NSNull).
///
/// netsh's element names are the FWPM struct members, the same names lfp's policy schema uses,
/// so the conversion is generic: an element whose children are all `<item>` is an array, an
/// element with children a dictionary, a leaf its text (empty: null).
struct NetshDocument {
    /// `providers/item`, `subLayers/item`, `providerContexts/item` and every filter, as trees.
    var providers: [[String: Any]] = []
    var sublayers: [[String: Any]] = []
    var providerContexts: [[String: Any]] = []
    var callouts: [[String: Any]] = []
    var filters: [[String: Any]] = []
    /// Which command wrote it: "wfpstate" or "wfpdiag".
    var kind: String

    init(data: Data) throws {
        var text = String(decoding: data, as: UTF8.self)
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }  // netsh writes a UTF-8 BOM
        // netsh wfp show state writes two top-level elements (<wfpstate> then <firewallState>),
        // which no XML parser accepts as one document: drop the declaration and wrap them.
        if text.hasPrefix("<?xml"), let end = text.range(of: "?>") { text.removeSubrange(text.startIndex..<end.upperBound) }
        let root = XMLHash.config { $0.detectParsingErrors = true }.parse("<netsh>" + text + "</netsh>")
        if case .parsingError(let e) = root {
            throw NetshImportError.notXML(line: e.line, column: e.column)
        }
        let top = root["netsh"]
        if let state = top["wfpstate"].element {
            kind = "wfpstate"
            for layer in top["wfpstate"]["layers"]["item"].all {
                filters += layer["filters"]["item"].all.compactMap { NetshDocument.tree($0.element) as? [String: Any] }
                callouts += layer["callouts"]["item"].all.compactMap { NetshDocument.tree($0.element) as? [String: Any] }
            }
            read(state)
        } else if let diag = top["wfpdiag"].element {
            kind = "wfpdiag"
            filters = top["wfpdiag"]["filters"]["item"].all.compactMap { NetshDocument.tree($0.element) as? [String: Any] }
            read(diag)
        } else {
            throw NetshImportError.notNetsh(root: top.children.first?.element?.name)
        }
    }

    private mutating func read(_ e: XMLHashXMLElement) {
        func list(_ name: String) -> [[String: Any]] {
            guard let c = e.childElements.first(where: { $0.name == name }) else { return [] }
            return c.childElements.compactMap { NetshDocument.tree($0) as? [String: Any] }
        }
        providers = list("providers")
        sublayers = list("subLayers")
        providerContexts = list("providerContexts")
    }

    /// The generic conversion (see the type's comment). Attributes (`numItems`) are dropped:
    /// the arrays carry their own counts.
    static func tree(_ e: XMLHashXMLElement?) -> Any? {
        guard let e else { return nil }
        let kids = e.childElements
        if kids.isEmpty {
            let t = e.text.trimmingCharacters(in: .whitespacesAndNewlines)
            return t.isEmpty ? NSNull() : t
        }
        if kids.allSatisfy({ $0.name == "item" }) { return kids.map { tree($0) ?? NSNull() } }
        var d: [String: Any] = [:]
        for k in kids { d[k.name] = tree(k) ?? NSNull() }
        return d
    }
}

/// Why a file could not be imported at all (each object that cannot be is only skipped).
public enum NetshImportError: Error, Equatable, CustomStringConvertible {
    case notXML(line: Int, column: Int)
    case notNetsh(root: String?)
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .notXML(let line, let column):
            return "not well-formed XML (line \(line), column \(column)): expected the file `netsh wfp show filters` or `netsh wfp show state` writes"
        case .notNetsh(let root):
            return "the XML's root is <\(root ?? "nothing")>, not <wfpdiag> (netsh wfp show filters) or <wfpstate> (netsh wfp show state)"
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        }
    }
}

extension NetshImportError: LocalizedError {
    public var errorDescription: String? { description }
}
