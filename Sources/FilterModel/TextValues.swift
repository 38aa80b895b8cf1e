// Text forms of values: numbers (decimal/hex), IPv4/IPv6 addresses, flag names, app ids.

import Foundation

enum NumberText {
    /// Parses decimal, 0x hex, 0o octal or 0b binary (underscores allowed).
    static func parse(_ text: String) -> UInt64? {
        // Plain decimal, by far the most common form (a 100k-filter policy holds 400k numbers):
        // the standard parse first, without the trimming and lowercasing copies below.
        if let v = UInt64(text) { return v }
        var t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
        if t.hasPrefix("+") { t.removeFirst() }
        let low = t.lowercased()
        if low.hasPrefix("0x") { return UInt64(low.dropFirst(2), radix: 16) }
        if low.hasPrefix("0o") { return UInt64(low.dropFirst(2), radix: 8) }
        if low.hasPrefix("0b") { return UInt64(low.dropFirst(2), radix: 2) }
        return UInt64(low, radix: 10)
    }

    /// Why `text` is not a number up to `max`, in words: out of range (a number, too large for
    /// `typeName`) or not a number at all. "is not a number" for 70000 as a port misled users.
    static func refusal(_ text: String, max: UInt64, typeName: String) -> String {
        if let v = parse(text) {
            return v <= max ? "" : "\(text) is out of range for \(typeName) (at most \(max))"
        }
        var t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "").lowercased()
        if t.hasPrefix("+") { t.removeFirst() }
        let (digits, radix): (Substring, Int) =
            t.hasPrefix("0x")
            ? (t.dropFirst(2), 16)
            : t.hasPrefix("0o")
                ? (t.dropFirst(2), 8)
                : t.hasPrefix("0b") ? (t.dropFirst(2), 2) : (Substring(t), 10)
        if !digits.isEmpty && digits.allSatisfy({ $0.hexDigitValue.map { $0 < radix } ?? false }) {
            return "\(text) is out of range for \(typeName) (at most \(max))"
        }
        return "'\(text)' is not a number (decimal or 0x hex)"
    }
}

public enum IPText {
    /// Dotted quad -> host-order UInt32.
    public static func parseV4(_ text: String) -> UInt32? {
        dottedQuad(text) ?? dottedQuad(text.trimmingCharacters(in: .whitespaces))
    }

    /// a.b.c.d exactly (one to three ASCII digits per part, each at most 255), straight from the
    /// UTF-8: a 100k-filter policy holds 100k of them.
    static func dottedQuad(_ text: String) -> UInt32? {
        var v: UInt32 = 0, part: UInt32 = 0, partDigits = 0, dots = 0
        for b in text.utf8 {
            if b == 0x2E {
                guard partDigits > 0, dots < 3 else { return nil }
                v = v << 8 | part
                part = 0
                partDigits = 0
                dots += 1
            } else if b >= 0x30 && b <= 0x39 {
                part = part * 10 + UInt32(b - 0x30)
                partDigits += 1
                guard partDigits <= 3, part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard dots == 3, partDigits > 0 else { return nil }
        return v << 8 | part
    }

    public static func formatV4(_ v: UInt32) -> String {
        "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
    }

    /// IPv6 text (RFC 4291 forms, including an embedded dotted quad) -> 16 bytes.
    public static func parseV6(_ text: String) -> [UInt8]? {
        var t = text.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("[") && t.hasSuffix("]") { t = String(t.dropFirst().dropLast()) }
        if let pct = t.firstIndex(of: "%") { t = String(t[..<pct]) }
        guard t.contains(":") else { return nil }
        if let lastColon = t.lastIndex(of: ":"), t[t.index(after: lastColon)...].contains(".") {
            guard let v4 = parseV4(String(t[t.index(after: lastColon)...])) else { return nil }
            t = String(t[...lastColon]) + String(v4 >> 16, radix: 16) + ":" + String(v4 & 0xFFFF, radix: 16)
        }
        let halves = t.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for g in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var words: [UInt16]
        let wantWords = 8
        if halves.count == 2 {
            guard let back = groups(halves[1]) else { return nil }
            let fill = wantWords - head.count - back.count
            guard fill >= 1 else { return nil }
            words = head + Array(repeating: 0, count: fill) + back
        } else {
            words = head
        }
        guard words.count == wantWords else { return nil }
        var bytes: [UInt8] = []
        for w in words { bytes += [UInt8(w >> 8), UInt8(w & 0xFF)] }
        return bytes
    }

    /// 16 bytes -> canonical IPv6 text (RFC 5952, no embedded v4 form except v4-mapped).
    public static func formatV6(_ b: [UInt8]) -> String {
        guard b.count == 16 else { return b.map { String(format: "%02x", $0) }.joined() }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF {
            return "::ffff:\(b[12]).\(b[13]).\(b[14]).\(b[15])"
        }
        let w = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if w[i] == 0 {
                var j = i
                while j < 8 && w[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(w[0..<8]) }
        return hex(w[0..<bestStart]) + "::" + hex(w[(bestStart + bestLen)..<8])
    }

    /// v4 address as a v4-mapped IPv6 address (R3.22, dual-stack sockets).
    public static func v4Mapped(_ v: UInt32) -> [UInt8] {
        Array(repeating: 0, count: 10) + [0xFF, 0xFF, UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    static func prefixEqual(_ a: [UInt8], _ b: [UInt8], _ bits: Int) -> Bool {
        guard a.count == 16, b.count == 16 else { return false }
        var left = min(bits, 128)
        var i = 0
        while left > 0 {
            let take = min(8, left)
            let mask: UInt8 = take == 8 ? 0xFF : ~(0xFF >> UInt8(take))
            if a[i] & mask != b[i] & mask { return false }
            left -= take
            i += 1
        }
        return true
    }

    /// v4 mask from a prefix length.
    static func v4Mask(prefix: Int) -> UInt32 {
        prefix <= 0 ? 0 : (prefix >= 32 ? 0xFFFF_FFFF : ~(0xFFFF_FFFF >> UInt32(prefix)))
    }

    /// Number of leading one bits when the mask is contiguous, else nil.
    static func v4PrefixLength(_ mask: UInt32) -> Int? {
        let n = mask.leadingZeroBitCount == 0 ? (~mask).leadingZeroBitCount : 0
        return v4Mask(prefix: n) == mask ? n : nil
    }
}

/// FWP_CONDITION_FLAG_* (R3.17) and other named bit sets used in condition values.
public enum ConditionFlagNames {
    public static let flags: [(String, UInt32)] = [
        ("FWP_CONDITION_FLAG_IS_LOOPBACK", 0x1),
        ("FWP_CONDITION_FLAG_IS_IPSEC_SECURED", 0x2),
        ("FWP_CONDITION_FLAG_IS_REAUTHORIZE", 0x4),
        ("FWP_CONDITION_FLAG_IS_WILDCARD_BIND", 0x8),
        ("FWP_CONDITION_FLAG_IS_RAW_ENDPOINT", 0x10),
        ("FWP_CONDITION_FLAG_IS_FRAGMENT", 0x20),
        ("FWP_CONDITION_FLAG_IS_FRAGMENT_GROUP", 0x40),
        ("FWP_CONDITION_FLAG_IS_IPSEC_NATT_RECLASSIFY", 0x80),
        ("FWP_CONDITION_FLAG_REQUIRES_ALE_CLASSIFY", 0x100),
        ("FWP_CONDITION_FLAG_IS_IMPLICIT_BIND", 0x200),
        ("FWP_CONDITION_FLAG_IS_REASSEMBLED", 0x400),
        ("FWP_CONDITION_FLAG_IS_NAME_APP_SPECIFIED", 0x4000),
        ("FWP_CONDITION_FLAG_IS_PROMISCUOUS", 0x8000),
        ("FWP_CONDITION_FLAG_IS_AUTH_FW", 0x10000),
        ("FWP_CONDITION_FLAG_IS_RECLASSIFY", 0x20000),
        ("FWP_CONDITION_FLAG_IS_PROXY_CONNECTION", 0x200000),
        ("FWP_CONDITION_FLAG_IS_APPCONTAINER_LOOPBACK", 0x400000),
        ("FWP_CONDITION_FLAG_IS_NON_APPCONTAINER_LOOPBACK", 0x800000),
        ("FWP_CONDITION_FLAG_IS_HONORING_POLICY_AUTHORIZE", 0x2000000),
    ]

    public static let reauthorizeReasons: [(String, UInt32)] = [
        ("FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE", 0x1),
        ("FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE", 0x2),
        ("FWP_CONDITION_REAUTHORIZE_REASON_NEW_NEXTHOP_INTERFACE", 0x4),
        ("FWP_CONDITION_REAUTHORIZE_REASON_PROFILE_CROSSING", 0x8),
        ("FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION", 0x10),
        ("FWP_CONDITION_REAUTHORIZE_REASON_IPSEC_PROPERTIES_CHANGED", 0x20),
        ("FWP_CONDITION_REAUTHORIZE_REASON_MID_STREAM_INSPECTION", 0x40),
        ("FWP_CONDITION_REAUTHORIZE_REASON_SOCKET_PROPERTY_CHANGED", 0x80),
        ("FWP_CONDITION_REAUTHORIZE_REASON_NEW_INBOUND_MCAST_BCAST_PACKET", 0x100),
    ]

    static let protocols: [(String, UInt8)] = [
        ("IPPROTO_ICMP", 1), ("IPPROTO_IGMP", 2), ("IPPROTO_TCP", 6), ("IPPROTO_UDP", 17),
        ("IPPROTO_ICMPV6", 58), ("IPPROTO_SCTP", 132), ("IPPROTO_RAW", 255),
    ]

    static let directions: [(String, UInt32)] = [("FWP_DIRECTION_OUTBOUND", 0), ("FWP_DIRECTION_INBOUND", 1)]

    static let addressTypes: [(String, UInt8)] = [
        ("NlatUnspecified", 0), ("NlatUnicast", 1), ("NlatAnycast", 2), ("NlatMulticast", 3), ("NlatBroadcast", 4),
    ]

    /// Parses "NAME|NAME|0x10" with the given name table; nil if a part is unknown.
    static func parseBits(_ text: String, table: [(String, UInt32)]) -> UInt32? {
        var v: UInt32 = 0
        for raw in text.split(separator: "|") {
            let p = raw.trimmingCharacters(in: .whitespaces)
            if let n = NumberText.parse(p), n <= UInt64(UInt32.max) { v |= UInt32(n); continue }
            let up = p.uppercased()
            guard let e = table.first(where: { $0.0 == up || $0.0.hasSuffix("_" + up) }) else { return nil }
            v |= e.1
        }
        return v
    }

    /// Names for the bits of `v` (unknown bits as one hex number).
    static func formatBits(_ v: UInt32, table: [(String, UInt32)]) -> String {
        if v == 0 { return "0" }
        var rest = v
        var parts: [String] = []
        for (n, b) in table where rest & b == b && b != 0 {
            parts.append(n)
            rest &= ~b
        }
        if rest != 0 { parts.append(String(format: "0x%X", rest)) }
        return parts.joined(separator: "|")
    }
}

/// ALE_APP_ID on Linux: the executable's absolute path, lexically canonicalised
/// ("." and ".." resolved, repeated "/" collapsed, no trailing "/"). Case is preserved
/// (Linux paths are case-sensitive; R3.15 / C37). Symlinks are not resolved in the text: matching
/// compares file identities instead (AppIdentity.swift), as the kernel does.
public enum AppId {
    public static func canonical(_ path: String) -> String {
        guard path.hasPrefix("/") else { return path }
        var out: [Substring] = []
        for comp in path.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == "." { continue }
            if comp == ".." { if !out.isEmpty { out.removeLast() }; continue }
            out.append(comp)
        }
        return "/" + out.joined(separator: "/")
    }

    /// The byte blob lfp uses for an app id.
    public static func blob(_ path: String) -> [UInt8] { Array(canonical(path).utf8) }
}
