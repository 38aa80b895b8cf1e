import FilterModel
import Foundation
import KernelABI
import KernelVocabulary

/// Generated policies for the classifier at scale: many sublayers, thousands of filters, every
/// match type the kernel evaluates (EQUAL, NOT_EQUAL, the ordered comparisons, RANGE, v4 and v6
/// masks including non-contiguous v4 ones, FLAGS_*, FWP_EMPTY), several fields ORed and ANDed,
/// hard and soft permits, at v4 and v6 layers; and inputs drawn at the conditions' edges. The
/// address types are never given to the model: both sides derive them from the addresses, which
/// the inputs draw from every NL_ADDRESS_TYPE class.
struct ScalePolicy {
    static let layers: [Layer] = [.authConnectV4, .authConnectV6, .authRecvAcceptV4, .resourceAssignmentV6]
    static let kernelFlags: [UInt32] = [0x1, 0x4, 0x8, 0x10, 0x200]
    static let fields: [ConditionField] = [
        .ipRemoteAddress, .ipLocalAddress, .ipRemotePort, .ipLocalPort, .ipProtocol, .flags, .lfpUid, .lfpGid, .lfpCgroupId,
        .ipLocalAddressType, .ipDestinationAddressType, .ipLocalInterface,
    ]
    /// Interface indexes the conditions name (one beyond the kernel's 32-bit ifindex).
    static let interfaces: [UInt64] = [1, 2, 3, 7, 1000, 0xFFFF_FFFF, 0x1_0000_0001]
    /// Addresses of every NL_ADDRESS_TYPE class: unspecified, broadcast, multicast, unicast edges.
    static let specialV4: [UInt32] = [0, 0xFFFF_FFFF, 0xE000_0000, 0xE000_0001, 0xEFFF_FFFF, 0xDFFF_FFFF, 0xF000_0000, 0x7F00_0001]
    static let specialV6: [U2] = [
        U2(hi: 0, 0), U2(hi: 0xFF02_0000_0000_0000, 1), U2(hi: 0xFF00_0000_0000_0000, 0), U2(hi: 0xFEFF_FFFF_FFFF_FFFF, .max),
        U2(hi: 0, 1), U2(hi: 0, 0x0000_FFFF_E000_0001),
    ]

    var policy: Policy
    /// Per layer and field: values at the edges of the conditions (inputs are drawn from them).
    var edges: [Layer: [ConditionField: [U2]]] = [:]

    /// A 128-bit value (hi, lo), as the kernel compares them.
    struct U2: Hashable {
        var hi: UInt64
        var lo: UInt64
        var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * $0)) } }
        init(hi: UInt64 = 0, _ lo: UInt64) { self.hi = hi; self.lo = lo }
        init(bytes b: [UInt8]) {
            hi = b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            lo = b[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
        }
        var plus1: U2 { lo == .max ? U2(hi: hi &+ 1, 0) : U2(hi: hi, lo + 1) }
        var minus1: U2 { lo == 0 ? U2(hi: hi &- 1, .max) : U2(hi: hi, lo - 1) }
    }

    static func generate(_ rng: inout DiffRNG, filters n: Int, sublayers k: Int = 8) -> ScalePolicy {
        var sublayers: [Sublayer] = []
        for i in 0..<k {
            let key = UUID(uuidString: String(format: "5ca1e000-0000-4000-8000-%012x", i))!
            sublayers.append(Sublayer(subLayerKey: key, displayData: DisplayData(name: "sl\(i)"), weight: UInt16(rng.int(0x100...0xFFFF))))
        }
        var out = ScalePolicy(policy: Policy(sublayers: sublayers))
        // Shared value pools, so conditions overlap and inputs hit several filters at once.
        let v4Nets: [UInt32] = (0..<6).map { _ in UInt32(rng.int(1...223)) << 24 | UInt32(rng.int(0...255)) << 16 }
        let v6Nets: [UInt64] = (0..<4).map { _ in 0x2001_0db8_0000_0000 | UInt64(rng.int(0...0xFFFF)) << 16 }
        let ports = (0..<24).map { _ in rng.int(1...65535) } + [22, 53, 80, 443]
        let ids: [UInt32] = [0, 1, 1000, 1001, 65534, UInt32(rng.int(2...60000))]
        var filters: [Filter] = []
        filters.reserveCapacity(n)
        for f in 0..<n {
            let layer = rng.chance(55) ? Layer.authConnectV4 : rng.pick(layers)
            let v6 = layer.kernelID % 2 == 1
            var conds: [FilterCondition] = []
            let block = rng.chance(50)
            let count = !block && rng.chance(3) ? 0 : rng.pick([1, 1, 2, 2, 2, 3, 3, 4])
            let available = fields.filter { $0.isAvailable(at: layer) }
            var used: [ConditionField] = []
            for _ in 0..<count {
                let field = !used.isEmpty && rng.chance(15) ? rng.pick(used) : rng.pick(available)  // repeated: an OR
                used.append(field)
                var e: [U2] = []
                conds.append(condition(field, v6: v6, &rng, v4Nets: v4Nets, v6Nets: v6Nets, ports: ports, ids: ids, edges: &e))
                out.edges[layer, default: [:]][field, default: []] += e
            }
            var flags: FilterFlags = []
            if !block && rng.chance(20) { flags.insert(.clearActionRight) }
            let weight: ConditionValue =
                switch rng.int(4) {
                case 0: .uint8(UInt8(rng.int(0...15)))
                case 1: .empty
                default: .uint64(UInt64(rng.int(0...1_000_000)))
                }
            filters.append(
                Filter(
                    displayData: DisplayData(name: "f\(f)"), flags: flags, layerKey: layer,
                    subLayerKey: rng.chance(10) ? .zero : rng.pick(sublayers).subLayerKey, weight: weight,
                    filterCondition: conds, action: block ? .block : .permit))
        }
        out.policy.filters = filters
        return out
    }

    static func condition(
        _ field: ConditionField, v6: Bool, _ rng: inout DiffRNG, v4Nets: [UInt32], v6Nets: [UInt64], ports: [Int], ids: [UInt32],
        edges: inout [U2]
    ) -> FilterCondition {
        func interval(_ lo: U2, _ hi: U2) { edges += [lo.minus1, lo, hi, hi.plus1] }
        if [.ipLocalAddress, .ipLocalPort, .lfpUid, .ipLocalInterface, .ipLocalAddressType].contains(field) && rng.chance(3) {
            return FilterCondition(fieldKey: field, matchType: .equal, conditionValue: .empty)
        }
        let ordered: [MatchType] = [.greater, .less, .greaterOrEqual, .lessOrEqual]
        switch field {
        case .ipRemoteAddress where !v6, .ipLocalAddress where !v6:
            let a = rng.pick(v4Nets) | UInt32(rng.int(0...0xFFFF))
            switch rng.int(20) {
            case 0..<7:
                interval(U2(UInt64(a)), U2(UInt64(a)))
                return FilterCondition(fieldKey: field, matchType: rng.chance(85) ? .equal : .notEqual, conditionValue: .uint32(a))
            case 7..<13:
                let bits = rng.int(0...32)
                let mask: UInt32 = bits == 0 ? 0 : ~(UInt32.max >> UInt32(bits)) | (bits == 32 ? .max : 0)
                interval(U2(UInt64(a & mask)), U2(UInt64(a | ~mask)))
                return FilterCondition(
                    fieldKey: field, matchType: rng.chance(85) ? .equal : .notEqual, conditionValue: .v4AddrMask(addr: a, mask: mask))
            case 13:
                let mask: UInt32 = rng.pick([0xFF00_FF00, 0x00FF_00FF, 0xF0F0_F0F0])  // not a prefix
                edges += [U2(UInt64(a)), U2(UInt64(a & mask)), U2(UInt64(a | ~mask))]
                return FilterCondition(fieldKey: field, matchType: .equal, conditionValue: .v4AddrMask(addr: a, mask: mask))
            case 14..<17:
                let b = a &+ UInt32(rng.pick([0, 1, 255, 65535, rng.int(0...0xFF_FFFF)]))
                let (lo, hi) = (min(a, b), max(a, b))
                interval(U2(UInt64(lo)), U2(UInt64(hi)))
                return FilterCondition(fieldKey: field, matchType: .range, conditionValue: .range(low: .uint32(lo), high: .uint32(hi)))
            default:
                interval(U2(UInt64(a)), U2(UInt64(a)))
                return FilterCondition(fieldKey: field, matchType: rng.pick(ordered), conditionValue: .uint32(a))
            }
        case .ipRemoteAddress, .ipLocalAddress:
            let a = U2(hi: rng.pick(v6Nets), UInt64(rng.pick([1, 2, 0x53, rng.int(0...0xFFFF)])))
            switch rng.int(10) {
            case 0..<4:
                interval(a, a)
                return FilterCondition(fieldKey: field, matchType: rng.chance(85) ? .equal : .notEqual, conditionValue: .byteArray16(a.bytes))
            case 4..<8:
                let p = rng.pick([0, 16, 32, 48, 56, 64, 96, 112, 120, 127, 128])
                let net =
                    p == 0
                    ? U2(hi: 0, 0)
                    : p <= 64
                        ? U2(hi: a.hi & ~(UInt64.max >> UInt64(p)) | (p == 64 ? a.hi : 0), 0)
                        : U2(hi: a.hi, p == 128 ? a.lo : a.lo & ~(UInt64.max >> UInt64(p - 64)))
                interval(net, a)
                edges += [U2(hi: net.hi, .max), U2(hi: net.hi &+ 1, 0)]
                return FilterCondition(
                    fieldKey: field, matchType: rng.chance(85) ? .equal : .notEqual, conditionValue: .v6AddrMask(addr: a.bytes, prefixLength: UInt8(p)))
            default:
                let b = U2(hi: a.hi, a.lo &+ UInt64(rng.int(0...1000)))
                interval(a, b)
                return FilterCondition(
                    fieldKey: field, matchType: .range, conditionValue: .range(low: .byteArray16(a.bytes), high: .byteArray16(b.bytes)))
            }
        case .ipRemotePort, .ipLocalPort:
            let p = rng.chance(80) ? rng.pick(ports) : rng.int(0...65535)
            switch rng.int(10) {
            case 0..<5:
                interval(U2(UInt64(p)), U2(UInt64(p)))
                return FilterCondition(fieldKey: field, matchType: rng.chance(80) ? .equal : .notEqual, conditionValue: .uint16(UInt16(p)))
            case 5..<8:
                let q = min(65535, p + rng.pick([0, 1, 10, 1000]))
                interval(U2(UInt64(p)), U2(UInt64(q)))
                return FilterCondition(fieldKey: field, matchType: .range, conditionValue: .range(low: .uint16(UInt16(p)), high: .uint16(UInt16(q))))
            default:
                interval(U2(UInt64(p)), U2(UInt64(p)))
                return FilterCondition(fieldKey: field, matchType: rng.pick(ordered), conditionValue: .uint16(UInt16(p)))
            }
        case .ipProtocol:
            let p = UInt8(rng.pick([6, 17, 1, 58]))
            interval(U2(UInt64(p)), U2(UInt64(p)))
            return FilterCondition(fieldKey: field, matchType: rng.chance(80) ? .equal : .notEqual, conditionValue: .uint8(p))
        case .flags:
            var bits: UInt32 = 0
            for f in kernelFlags where rng.chance(35) { bits |= f }
            if bits == 0 { bits = rng.pick(kernelFlags) }
            return FilterCondition(fieldKey: field, matchType: rng.pick([.flagsAllSet, .flagsAnySet, .flagsNoneSet]), conditionValue: .uint32(bits))
        case .ipLocalAddressType, .ipDestinationAddressType:
            let t = UInt8(rng.pick([0, 1, 1, 3, 3, 4, 2]))
            if rng.chance(20) {
                let u = min(4, t + UInt8(rng.int(0...2)))
                interval(U2(UInt64(t)), U2(UInt64(u)))
                return FilterCondition(fieldKey: field, matchType: .range, conditionValue: .range(low: .uint8(t), high: .uint8(u)))
            }
            interval(U2(UInt64(t)), U2(UInt64(t)))
            return FilterCondition(
                fieldKey: field, matchType: rng.pick([.equal, .equal, .equal, .notEqual] + ordered), conditionValue: .uint8(t))
        case .ipLocalInterface:
            let v = rng.pick(interfaces)
            if rng.chance(15) {
                let w = v &+ UInt64(rng.int(0...8))
                interval(U2(v), U2(max(v, w)))
                return FilterCondition(fieldKey: field, matchType: .range, conditionValue: .range(low: .uint64(v), high: .uint64(max(v, w))))
            }
            interval(U2(v), U2(v))
            return FilterCondition(fieldKey: field, matchType: rng.pick([.equal, .equal, .notEqual] + ordered), conditionValue: .uint64(v))
        case .lfpCgroupId:
            let v = UInt64(rng.pick([1, 2, 0x1000, 0xFFFF_FFFF_0001]))
            interval(U2(v), U2(v))
            return FilterCondition(fieldKey: field, matchType: rng.chance(80) ? .equal : .notEqual, conditionValue: .uint64(v))
        default:  // uid, gid
            let v = rng.pick(ids)
            if rng.chance(25) {
                let w = v &+ UInt32(rng.int(0...1000))
                interval(U2(UInt64(v)), U2(UInt64(max(v, w))))
                return FilterCondition(fieldKey: field, matchType: .range, conditionValue: .range(low: .uint32(v), high: .uint32(max(v, w))))
            }
            interval(U2(UInt64(v)), U2(UInt64(v)))
            return FilterCondition(fieldKey: field, matchType: rng.pick([.equal, .equal, .notEqual] + ordered), conditionValue: .uint32(v))
        }
    }

    /// An input at `layer`: fields from the edges (mostly), sometimes anything, sometimes FWP_EMPTY.
    func input(_ rng: inout DiffRNG, layer: Layer) -> lfp_event {
        var e = lfp_event()
        let v6 = layer.kernelID % 2 == 1
        e.family = UInt16(v6 ? AF_INET6 : AF_INET)
        let pool = edges[layer] ?? [:]
        func value(_ f: ConditionField, width: Int) -> U2 {
            if let p = pool[f], !p.isEmpty, rng.chance(85) {
                let v = rng.pick(p)
                return width >= 128 ? v : U2(hi: 0, width == 64 ? v.lo : v.lo & ((1 << UInt64(width)) - 1))
            }
            let r = rng.next()
            return width >= 128 ? U2(hi: 0x2001_0db8_0000_0000 | (rng.next() & 0xFFFF_0000), r) : U2(hi: 0, width == 64 ? r : r & ((1 << UInt64(width)) - 1))
        }
        func setAddr(_ a: U2, _ dst: inout (UInt32, UInt32, UInt32, UInt32)) {
            if v6 {
                dst = (
                    UInt32(truncatingIfNeeded: a.hi >> 32).bigEndian, UInt32(truncatingIfNeeded: a.hi).bigEndian,
                    UInt32(truncatingIfNeeded: a.lo >> 32).bigEndian, UInt32(truncatingIfNeeded: a.lo).bigEndian
                )
            } else {
                dst = (UInt32(truncatingIfNeeded: a.lo).bigEndian, 0, 0, 0)
            }
        }
        /// An address: mostly from the edges, sometimes from a special class (address types).
        func address(_ f: ConditionField) -> U2 {
            guard rng.chance(20) else { return value(f, width: v6 ? 128 : 32) }
            return v6 ? rng.pick(Self.specialV6) : U2(UInt64(rng.pick(Self.specialV4)))
        }
        var flags: UInt8 = 0
        if !rng.chance(12) {
            flags |= UInt8(LFP_EVF_LOCAL_ADDR)
            setAddr(address(.ipLocalAddress), &e.local_addr_be)
        }
        if !rng.chance(12) {
            flags |= UInt8(LFP_EVF_LOCAL_PORT)
            e.local_port = UInt16(value(.ipLocalPort, width: 16).lo)
        }
        if !rng.chance(8) {
            flags |= UInt8(LFP_EVF_REMOTE)
            setAddr(address(.ipRemoteAddress), &e.remote_addr_be)
            e.remote_port = UInt16(value(.ipRemotePort, width: 16).lo)
        }
        if !rng.chance(8) {
            flags |= UInt8(LFP_EVF_OWNER)
            e.uid = UInt32(value(.lfpUid, width: 32).lo)
            e.gid = UInt32(value(.lfpGid, width: 32).lo)
        }
        e.evflags = flags
        e.protocol = UInt8(value(.ipProtocol, width: 8).lo)
        e.cgroup_id = value(.lfpCgroupId, width: 64).lo
        e.ifindex = rng.chance(25) ? 0 : UInt32(truncatingIfNeeded: value(.ipLocalInterface, width: 32).lo)  // 0: FWP_EMPTY
        var cf: UInt32 = 0
        for f in Self.kernelFlags where rng.chance(30) { cf |= f }
        e.cond_flags = cf
        return e
    }

    /// The same incoming values as the model takes them (FWP_EMPTY = absent).
    static func incoming(_ e: lfp_event, layer: Layer) -> IncomingValues {
        var v = IncomingValues()
        let v6 = layer.kernelID % 2 == 1
        func addr(_ a: (UInt32, UInt32, UInt32, UInt32)) -> IncomingValue {
            if !v6 { return .uint32(UInt32(bigEndian: a.0)) }
            let words = [a.0, a.1, a.2, a.3].map { UInt32(bigEndian: $0) }
            return .byteArray16(words.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * $0)) } })
        }
        let fields = Set(Self.fields.filter { $0.isAvailable(at: layer) })
        func put(_ f: ConditionField, _ value: IncomingValue) { if fields.contains(f) { v[f] = value } }
        if e.evflags & UInt8(LFP_EVF_LOCAL_ADDR) != 0 { put(.ipLocalAddress, addr(e.local_addr_be)) }
        if e.evflags & UInt8(LFP_EVF_LOCAL_PORT) != 0 { put(.ipLocalPort, .uint16(e.local_port)) }
        if e.evflags & UInt8(LFP_EVF_REMOTE) != 0 {
            put(.ipRemoteAddress, addr(e.remote_addr_be))
            put(.ipRemotePort, .uint16(e.remote_port))
        }
        if e.evflags & UInt8(LFP_EVF_OWNER) != 0 {
            put(.lfpUid, .uint32(e.uid))
            put(.lfpGid, .uint32(e.gid))
        }
        put(.ipProtocol, .uint8(e.protocol))
        put(.flags, .uint32(e.cond_flags))
        put(.lfpCgroupId, .uint64(e.cgroup_id))
        if e.ifindex != 0 { put(.ipLocalInterface, .uint64(UInt64(e.ifindex))) }
        // no address types: the model derives them from the addresses, as the kernel does
        return v
    }
}
