import FilterModel
import Foundation
import SWXMLHash

/// netsh writes the keys of Windows' built-in objects by name (`FWPM_SUBLAYER_MPSSVC_WF`,
/// `FWPM_PROVIDER_IKEEXT`) instead of their GUID. lfp's own built-in keeps its real GUID; every
/// other name becomes a GUID derived from the name alone (UUID version 8, two FNV-1a hashes), so
/// one name is one key in every import and the report can say which names were mapped.
enum WellKnownKeys {
    static let builtIn: [String: UUID] = [
        "FWPM_SUBLAYER_UNIVERSAL": Sublayer.universalKey
    ]

    /// A GUID in netsh's text (`{…}` or bare), or a symbolic name's key; nil for anything else.
    static func key(_ text: String) -> (key: UUID, symbolic: Bool)? {
        let t = text.trimmingCharacters(in: CharacterSet(charactersIn: "{} \t\n"))
        if let u = UUID(uuidString: t) { return (u, false) }
        guard t.hasPrefix("FWPM_"), t.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { return nil }
        return (builtIn[t] ?? derived(t), true)
    }

    static func derived(_ name: String) -> UUID {
        func fnv(_ seed: UInt64) -> UInt64 {
            var h = seed
            for b in name.utf8 {
                h ^= UInt64(b)
                h = h &* 0x100_0000_01b3
            }
            return h
        }
        var bytes =
            withUnsafeBytes(of: fnv(0xcbf2_9ce4_8422_2325).bigEndian, Array.init)
            + withUnsafeBytes(of: fnv(0x6c62_272e_07bb_0142).bigEndian, Array.init)
        bytes[6] = bytes[6] & 0x0f | 0x80  // version 8: custom
        bytes[8] = bytes[8] & 0x3f | 0x80  // RFC 4122 variant
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

extension XMLHashXMLElement {
    /// The element children, in order (text and CDATA left out).
    var childElements: [XMLHashXMLElement] { children.compactMap { $0 as? XMLHashXMLElement } }
}
