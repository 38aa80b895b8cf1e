// Keys for objects a policy document leaves without one, derived from what names them instead of
// drawn at random (what FwpmFilterAdd0 does, R4.2), so that loading the same file again gives the
// same keys, and `lfp policy export`, a diff of two exports and the events' filterKey line up
// across reloads. (filterIds are stable for the same reason: each commit assigns them 1, 2, 3 ...
// in document order.)

import Foundation

public enum DerivedKey {
    /// A version 8 (vendor-defined, RFC 9562) UUID from `parts`: 128 bits of two FNV-1a 64
    /// passes with different offset bases over the parts, each followed by a NUL. Not a secret
    /// and not collision-proof against an adversary; a policy author who wants a particular key
    /// writes it.
    public static func make(_ parts: [String]) -> UUID {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x6c62_272e_07bb_0142
        let prime: UInt64 = 0x0000_0100_0000_01b3
        for part in parts {
            for byte in part.utf8 {
                a = (a ^ UInt64(byte)) &* prime
                b = (b ^ UInt64(byte)) &* prime
            }
            a = a &* prime  // the NUL after each part (x ^ 0 == x)
            b = b &* prime
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            bytes[i] = UInt8(truncatingIfNeeded: a >> (56 - 8 * i))
            bytes[8 + i] = UInt8(truncatingIfNeeded: b >> (56 - 8 * i))
        }
        bytes[6] = bytes[6] & 0x0F | 0x80  // version 8
        bytes[8] = bytes[8] & 0x3F | 0x80  // RFC 9562 variant
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
                bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

extension Policy {
    /// The document with a derived key on every provider, sublayer, callout, provider context
    /// and filter that has none. A filter's key comes from its provider, layer and name; the
    /// n-th filter of the same provider, layer and name (n > 0) adds n, so repeats stay apart
    /// and keep their keys as long as their order among themselves does.
    func withDerivedKeys() -> Policy {
        var p = self
        // Repeats are counted by the key their parts derive (a 16-byte hash key, not the parts:
        // hashing arrays of strings was a third of validating 100,000 filters).
        var seen: [UUID: Int] = [:]
        seen.reserveCapacity(p.filters.count + p.sublayers.count + p.providers.count)
        func derive(_ kind: String, _ parts: [String]) -> UUID {
            let base = [kind] + parts
            let key = DerivedKey.make(base)
            let n = seen[key, default: 0]
            seen[key] = n + 1
            return n == 0 ? key : DerivedKey.make(base + ["\(n)"])
        }
        for i in p.providers.indices where p.providers[i].providerKey.isZero {
            p.providers[i].providerKey = derive("provider", [p.providers[i].displayData.name ?? ""])
        }
        for i in p.sublayers.indices where p.sublayers[i].subLayerKey.isZero {
            let s = p.sublayers[i]
            p.sublayers[i].subLayerKey = derive("sublayer", [s.providerKey?.lowerString ?? "", s.displayData.name ?? ""])
        }
        for i in p.callouts.indices where p.callouts[i].calloutKey.isZero {
            let c = p.callouts[i]
            p.callouts[i].calloutKey = derive("callout", [c.providerKey?.lowerString ?? "", c.displayData.name ?? ""])
        }
        for i in p.providerContexts.indices where p.providerContexts[i].providerContextKey.isZero {
            let c = p.providerContexts[i]
            p.providerContexts[i].providerContextKey = derive("providerContext", [c.providerKey?.lowerString ?? "", c.displayData.name ?? ""])
        }
        for i in p.filters.indices where p.filters[i].filterKey.isZero {
            let f = p.filters[i]
            p.filters[i].filterKey = derive("filter", [f.providerKey?.lowerString ?? "", f.layerKey.name, f.displayData.name ?? ""])
        }
        return p
    }
}
