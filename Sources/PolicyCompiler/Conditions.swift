import FilterModel
import Foundation
import KernelABI
import KernelVocabulary

/// A 128-bit unsigned number as the kernel compares them: (hi, lo).
struct U128: Comparable, Hashable {
    var hi: UInt64
    var lo: UInt64
    static let zero = U128(hi: 0, lo: 0)
    static let max = U128(hi: .max, lo: .max)
    static func < (a: U128, b: U128) -> Bool { a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo }
    static func & (a: U128, b: U128) -> U128 { U128(hi: a.hi & b.hi, lo: a.lo & b.lo) }
    var successor: U128? { self == .max ? nil : (lo == .max ? U128(hi: hi + 1, lo: 0) : U128(hi: hi, lo: lo + 1)) }
    var predecessor: U128? { self == .zero ? nil : (lo == 0 ? U128(hi: hi - 1, lo: .max) : U128(hi: hi, lo: lo - 1)) }

    init(hi: UInt64, lo: UInt64) { self.hi = hi; self.lo = lo }
    init(_ v: UInt64) { self.init(hi: 0, lo: v) }
    init(bytes: [UInt8]) {
        var hi: UInt64 = 0, lo: UInt64 = 0
        for (i, b) in bytes.prefix(16).enumerated() {
            if i < 8 { hi = hi << 8 | UInt64(b) } else { lo = lo << 8 | UInt64(b) }
        }
        self.init(hi: hi, lo: lo)
    }
    /// A mask of `bits` leading ones out of `width` (32 for IPv4, 128 for IPv6).
    static func prefixMask(_ bits: Int, width: Int) -> U128 {
        let b = Swift.max(0, Swift.min(bits, width))
        if width == 32 { return U128(b == 0 ? 0 : UInt64(UInt32.max << (32 - b))) }
        let hi: UInt64 = b >= 64 ? .max : (b == 0 ? 0 : .max << (64 - b))
        let lo: UInt64 = b <= 64 ? 0 : (b >= 128 ? .max : .max << (128 - b))
        return U128(hi: hi, lo: lo)
    }
}

extension PolicyCompiler {
    /// A condition as kernel tests, in CNF: usually one group of one test; a security descriptor
    /// becomes its deny groups and its allow group; [] is always true.
    static func compile(_ c: FilterCondition, layer: Layer, filter: String) throws -> CNF {
        func fail(_ why: String) -> CompileError {
            CompileError(code: .invalidParameter, message: "filter '\(filter)': \(c.fieldKey.name) \(why)")
        }
        if c.fieldKey == .aleUserId, case .securityDescriptor(let acl) = c.conditionValue {
            return try compileACL(acl, match: c.matchType, fail: fail)
        }
        if c.fieldKey == .aleAppId, case .byteBlob(let bytes) = c.conditionValue {
            return try compileAppID(bytes, match: c.matchType, fail: fail)
        }
        guard let field = c.fieldKey.kernelField, c.fieldKey != .aleAppId else {
            throw fail(
                "is not supported by the kernel fast path yet (supported: addresses, address types, ports, protocol, IP_LOCAL_INTERFACE, FLAGS, ALE_USER_ID, ALE_APP_ID, LFP_CONDITION_*); `lfp classify` evaluates it"
            )
        }
        var k = lfp_cond()
        k.field = UInt8(field.rawValue)
        if case .empty = c.conditionValue {
            guard c.matchType == .equal else { throw fail("compares FWP_EMPTY with \(c.matchType.name)") }
            k.flags = UInt8(LFP_COND_MATCH_EMPTY)
            return [[k]]
        }
        var value: U128
        var mask = U128.max
        var lo: U128, hi: U128
        var negate = false
        if c.fieldKey == .lfpWorkload, case .byteBlob(let bytes) = c.conditionValue {
            var name = bytes
            while name.last == 0 { name.removeLast() }  // as FilterModel: trailing NULs are not part of the text
            value = U128(UInt64(workloadID(String(decoding: name, as: UTF8.self))))
        } else if let v = scalar(c.conditionValue) {
            value = v
        } else {
            value = .zero
        }
        switch (c.matchType, c.conditionValue) {
        case (.equal, .v4AddrMask(let addr, let m)), (.notEqual, .v4AddrMask(let addr, let m)):
            mask = U128(UInt64(m)); value = U128(UInt64(addr & m))
            lo = value; hi = value; negate = c.matchType == .notEqual
        case (.equal, .v6AddrMask(let addr, let p)), (.notEqual, .v6AddrMask(let addr, let p)):
            mask = U128.prefixMask(Int(p), width: 128); value = U128(bytes: addr) & mask
            lo = value; hi = value; negate = c.matchType == .notEqual
        case (.range, .range(let l, let h)):
            guard let a = scalar(l), let b = scalar(h) else { throw fail("has a range the kernel cannot compare") }
            lo = a; hi = b
        case (.equal, _): lo = value; hi = value
        case (.notEqual, _): lo = value; hi = value; negate = true
        case (.greater, _):
            guard let s = value.successor else { return [[never(field)]] }
            lo = s; hi = .max
        case (.greaterOrEqual, _): lo = value; hi = .max
        case (.less, _):
            guard let p = value.predecessor else { return [[never(field)]] }
            lo = .zero; hi = p
        case (.lessOrEqual, _): lo = .zero; hi = value
        case (.flagsAllSet, _): mask = value; lo = value; hi = value
        case (.flagsNoneSet, _): mask = value; lo = .zero; hi = .zero
        case (.flagsAnySet, _): mask = value; lo = .zero; hi = .zero; negate = true
        default:
            throw fail("with \(c.matchType.name) is not supported by the kernel fast path")
        }
        k.mask_hi = mask.hi; k.mask_lo = mask.lo
        k.lo_hi = lo.hi; k.lo_lo = lo.lo
        k.hi_hi = hi.hi; k.hi_lo = hi.lo
        if negate { k.flags |= UInt8(LFP_COND_NEGATE) }
        return [[k]]
    }

    /// A test no value passes (lo > hi), for e.g. `port > 65535`.
    static func never(_ field: lfp_field) -> lfp_cond {
        var k = lfp_cond()
        k.field = UInt8(field.rawValue)
        k.mask_hi = 0; k.mask_lo = 0
        k.lo_hi = 0; k.lo_lo = 1
        k.hi_hi = 0; k.hi_lo = 0
        return k
    }

    static func scalar(_ v: ConditionValue) -> U128? {
        switch v {
        case .uint8(let x): return U128(UInt64(x))
        case .uint16(let x): return U128(UInt64(x))
        case .uint32(let x): return U128(UInt64(x))
        case .uint64(let x): return U128(x)
        case .byteArray16(let b): return U128(bytes: b)
        default: return nil
        }
    }

    /// ALE_APP_ID: the kernel cannot read a path in its hooks, so it compares the executable's
    /// file identity: the policy's path is resolved (symlinks followed) to (device, inode) when
    /// the policy is committed. A binary replaced by a new file later needs a new commit, and
    /// hard links of it match too (documented).
    static func compileAppID(_ bytes: [UInt8], match: MatchType, fail: (String) -> CompileError) throws -> CNF {
        guard match == .equal || match == .notEqual else {
            throw fail("with \(match.name) is not supported by the kernel fast path (EQUAL and NOT_EQUAL are; `lfp classify` evaluates the rest)")
        }
        var b = bytes
        while b.last == 0 { b.removeLast() }
        let path = String(decoding: b, as: UTF8.self)
        let (dev, ino) = try appFileIdentity(path, fail: fail)  // FileIdentity.swift
        var k = lfp_cond()
        k.field = UInt8(LFP_FIELD_APP_ID.rawValue)
        k.mask_hi = .max; k.mask_lo = .max
        k.lo_hi = dev; k.hi_hi = dev
        k.lo_lo = ino; k.hi_lo = ino
        if match == .notEqual { k.flags |= UInt8(LFP_COND_NEGATE) }
        return [[k]]
    }

    /// ALE_USER_ID with a security descriptor (R3.16): the condition holds when no deny ACE and
    /// some allow ACE covers the socket's owner: one NOT-EQUAL group per deny ACE, and one OR
    /// group of the allow ACEs. The kernel knows the primary gid only (documented).
    static func compileACL(_ acl: UserACL, match: MatchType, fail: (String) -> CompileError) throws -> CNF {
        guard match == .equal else { throw fail("with \(match.name) is not supported by the kernel fast path") }
        func eq(_ field: lfp_field, _ v: UInt32, negate: Bool = false) -> lfp_cond {
            var k = lfp_cond()
            k.field = UInt8(field.rawValue)
            k.mask_hi = .max; k.mask_lo = .max
            k.lo_lo = UInt64(v); k.hi_lo = UInt64(v)
            if negate { k.flags |= UInt8(LFP_COND_NEGATE) }
            return k
        }
        if acl.deniesEveryone { return [[never(LFP_FIELD_UID)]] }
        var out: CNF =
            acl.deniedUIDs.sorted().map { [eq(LFP_FIELD_UID, $0, negate: true)] }
            + acl.deniedGIDs.sorted().map { [eq(LFP_FIELD_GID, $0, negate: true)] }
        if acl.allowsEveryone { return out }
        let allows = acl.allowedUIDs.sorted().map { eq(LFP_FIELD_UID, $0) } + acl.allowedGIDs.sorted().map { eq(LFP_FIELD_GID, $0) }
        out.append(allows.isEmpty ? [never(LFP_FIELD_UID)] : allows)  // an empty DACL grants nobody
        return out
    }
}
