// ALE_USER_ID on Linux: an SDDL security descriptor whose SIDs name uids and gids.
//
// uid N  <-> S-1-22-1-N (the "Unix User" SID form Samba uses)
// gid N  <-> S-1-22-2-N ("Unix Group")
// WD / S-1-1-0 (Everyone) matches every token; SY / S-1-5-18 (LocalSystem) is uid 0.
//
// The condition matches when an access check of the token against the DACL grants
// FWP_ACTRL_MATCH_FILTER (0x1, written "CC" in SDDL) (R3.16). The DACL is evaluated in canonical
// order (every explicit deny ACE before every allow ACE, the order Windows itself builds DACLs in),
// whatever order the SDDL lists them in, so the result is exactly expressible as sets:
//     match(uid, gids) = no SID of the token is denied  AND  some SID of the token is allowed.

import Foundation

/// FWP_ACTRL_MATCH_FILTER.
public let FWP_ACTRL_MATCH_FILTER: UInt32 = 0x1

/// A parsed ALE_USER_ID security descriptor in uid/gid form, for the kernel compiler.
public struct UserACL: Hashable, Sendable, CustomStringConvertible {
    /// Who an ACE names.
    public enum Principal: Hashable, Sendable {
        case everyone
        case uid(UInt32)
        case gid(UInt32)
    }

    public struct ACE: Hashable, Sendable {
        public var allow: Bool
        public var principal: Principal
        /// The access mask the ACE carries (only FWP_ACTRL_MATCH_FILTER matters here).
        public var accessMask: UInt32
    }

    /// The SDDL text as written (re-emitted on export).
    public var sddl: String
    /// True when the descriptor has no DACL at all ("no D: part"): a NULL DACL grants everyone.
    public var nullDACL: Bool
    /// ACEs in order (only those that carry FWP_ACTRL_MATCH_FILTER).
    public var aces: [ACE]

    public var allowedUIDs: Set<UInt32> { Set(aces.compactMap { $0.allow ? $0.principal.uid : nil }) }
    public var deniedUIDs: Set<UInt32> { Set(aces.compactMap { !$0.allow ? $0.principal.uid : nil }) }
    public var allowedGIDs: Set<UInt32> { Set(aces.compactMap { $0.allow ? $0.principal.gid : nil }) }
    public var deniedGIDs: Set<UInt32> { Set(aces.compactMap { !$0.allow ? $0.principal.gid : nil }) }
    /// An allow ACE for Everyone (or a NULL DACL).
    public var allowsEveryone: Bool { nullDACL || aces.contains { $0.allow && $0.principal == .everyone } }
    /// A deny ACE for Everyone: the descriptor never grants.
    public var deniesEveryone: Bool { aces.contains { !$0.allow && $0.principal == .everyone } }

    /// The access check of R3.16 for a token with `uid` and group ids `gids`.
    public func grants(uid: UInt32, gids: [UInt32]) -> Bool {
        if nullDACL { return true }
        func applies(_ p: Principal) -> Bool {
            switch p {
            case .everyone: return true
            case .uid(let u): return u == uid
            case .gid(let g): return gids.contains(g)
            }
        }
        // Canonical order: explicit deny ACEs are evaluated before allow ACEs.
        if aces.contains(where: { !$0.allow && applies($0.principal) }) { return false }
        return aces.contains(where: { $0.allow && applies($0.principal) })
    }

    public var description: String { sddl }

    /// Parses SDDL. `selfRelative: false` models a descriptor handed over in absolute form,
    /// which WFP refuses (R3.14).
    public static func parse(sddl: String, selfRelative: Bool = true) throws -> UserACL {
        func bad(_ why: String) -> FWPError {
            FWPError(.invalidSecurityDescriptor, "security descriptor '\(sddl)': \(why)")
        }
        if !selfRelative {
            throw bad("must be self-relative (SE_SELF_RELATIVE); an absolute descriptor is refused")
        }
        var s = Substring(sddl.trimmingCharacters(in: .whitespaces))
        var dacl: [ACE]? = nil
        while !s.isEmpty {
            guard s.count >= 2, s[s.index(after: s.startIndex)] == ":" else {
                throw bad("expected O:, G:, D: or S: at '\(s)'")
            }
            let part = s.first!.uppercased()
            s = s.dropFirst(2)
            switch part {
            case "O", "G":
                // Owner/group SID: skip up to the next component.
                let end = s.firstIndex(where: { $0 == ":" }).map { s.index($0, offsetBy: -1) } ?? s.endIndex
                s = s[end...]
            case "D", "S":
                var aces: [ACE] = []
                // Optional ACL flags (P, AI, AR, NO_ACCESS_CONTROL ...) before the first "(".
                while let c = s.first, c != "(" {
                    if c == ":" { break }
                    if s.count >= 2, s[s.index(after: s.startIndex)] == ":" { break }
                    s = s.dropFirst()
                }
                while s.first == "(" {
                    guard let close = s.firstIndex(of: ")") else { throw bad("unterminated ACE") }
                    let body = s[s.index(after: s.startIndex)..<close]
                    s = s[s.index(after: close)...]
                    if part == "D", let ace = try parseACE(String(body), bad) { aces.append(ace) }
                }
                if part == "D" { dacl = aces }
            default:
                throw bad("unknown component '\(part):'")
            }
        }
        guard let list = dacl else {
            return UserACL(sddl: sddl, nullDACL: true, aces: [])
        }
        return UserACL(sddl: sddl, nullDACL: false, aces: list)
    }

    private static func parseACE(_ body: String, _ bad: (String) -> FWPError) throws -> ACE? {
        let f = body.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard f.count >= 6 else { throw bad("ACE '(\(body))' needs 6 fields") }
        let allow: Bool
        switch f[0].uppercased() {
        case "A": allow = true
        case "D": allow = false
        default: throw bad("ACE type '\(f[0])' is not supported (only A and D)")
        }
        let mask = try parseRights(f[2], bad)
        guard mask & FWP_ACTRL_MATCH_FILTER != 0 else { return nil }
        let principal = try parsePrincipal(f[5], bad)
        return ACE(allow: allow, principal: principal, accessMask: mask)
    }

    private static func parseRights(_ r: String, _ bad: (String) -> FWPError) throws -> UInt32 {
        let t = r.trimmingCharacters(in: .whitespaces).uppercased()
        if t.hasPrefix("0X") {
            guard let v = UInt32(t.dropFirst(2), radix: 16) else { throw bad("bad access mask '\(r)'") }
            return v
        }
        if let v = UInt32(t) { return v }
        var mask: UInt32 = 0
        var i = t.startIndex
        while i < t.endIndex {
            guard let j = t.index(i, offsetBy: 2, limitedBy: t.endIndex) else { throw bad("bad rights '\(r)'") }
            switch t[i..<j] {
            case "CC": mask |= 0x1
            case "GA": mask |= 0x1000_0000 | FWP_ACTRL_MATCH_FILTER
            case "GR", "GX", "GW", "RC", "SD", "WD", "WO", "DC", "LC", "SW", "RP", "WP", "DT", "LO", "CR":
                mask |= 0  // carried but irrelevant to FWP_ACTRL_MATCH_FILTER
            default: throw bad("unknown right '\(t[i..<j])'")
            }
            i = j
        }
        return mask
    }

    private static func parsePrincipal(_ sid: String, _ bad: (String) -> FWPError) throws -> Principal {
        let t = sid.trimmingCharacters(in: .whitespaces).uppercased()
        switch t {
        case "WD", "S-1-1-0": return .everyone
        case "SY", "S-1-5-18": return .uid(0)
        default: break
        }
        if t.hasPrefix("S-1-22-1-"), let n = UInt32(t.dropFirst(9)) { return .uid(n) }
        if t.hasPrefix("S-1-22-2-"), let n = UInt32(t.dropFirst(9)) { return .gid(n) }
        throw bad("SID '\(sid)' has no Linux meaning (use S-1-22-1-UID, S-1-22-2-GID, WD or SY)")
    }

    /// Builds the SDDL for a set of uids/gids (allow ACEs only, or deny-then-allow).
    public static func make(
        allowUIDs: [UInt32] = [], allowGIDs: [UInt32] = [], denyUIDs: [UInt32] = [],
        denyGIDs: [UInt32] = []
    ) -> UserACL {
        var s = "D:"
        for u in denyUIDs { s += "(D;;CC;;;S-1-22-1-\(u))" }
        for g in denyGIDs { s += "(D;;CC;;;S-1-22-2-\(g))" }
        for u in allowUIDs { s += "(A;;CC;;;S-1-22-1-\(u))" }
        for g in allowGIDs { s += "(A;;CC;;;S-1-22-2-\(g))" }
        return try! parse(sddl: s)
    }
}

extension UserACL.Principal {
    public var uid: UInt32? { if case .uid(let u) = self { return u }; return nil }
    public var gid: UInt32? { if case .gid(let g) = self { return g }; return nil }
}

/// The incoming value of ALE_USER_ID: the socket owner's credentials.
public struct UserToken: Hashable, Sendable, CustomStringConvertible {
    public var uid: UInt32
    /// Primary gid first, then supplementary gids.
    public var gids: [UInt32]

    public init(uid: UInt32, gids: [UInt32] = []) {
        self.uid = uid
        self.gids = gids
    }

    public var description: String {
        gids.isEmpty ? "uid=\(uid)" : "uid=\(uid) gids=\(gids.map(String.init).joined(separator: ","))"
    }
}
