// FWPM_CONDITION_IP_LOCAL_ADDRESS_TYPE and FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE: the
// NL_ADDRESS_TYPE of an address, derived from the address alone.

/// NL_ADDRESS_TYPE. The kernel derives it from the address in its hooks (lfp_addr_type in
/// bpf/lib/classify.h, enum lfp_addr_type in lfp_abi.h) and the model derives it here by the same
/// rule, so `lfp classify` and the kernel agree:
///
/// * IPv4: 0.0.0.0 unspecified, 255.255.255.255 broadcast, 224.0.0.0/4 multicast, else unicast;
/// * IPv6: :: unspecified, ff00::/8 multicast, else unicast (an IPv4-mapped address at a V6
///   layer is unicast: dual-stack IPv4 traffic is classified at the V4 layers).
///
/// Only the address is looked at, never the interfaces or routes: anycast is never derived, and a
/// subnet-directed broadcast (10.1.255.255 on a /16) is unicast, because the hook cannot know the
/// subnet.
public enum AddressType: UInt8, CaseIterable, Sendable {
    case unspecified = 0
    case unicast = 1
    case anycast = 2
    case multicast = 3
    case broadcast = 4

    /// The type of an IPv4 address (host order).
    public static func of(v4 a: UInt32) -> AddressType {
        if a == 0 { return .unspecified }
        if a == 0xFFFF_FFFF { return .broadcast }
        return a >> 28 == 0xE ? .multicast : .unicast
    }

    /// The type of an IPv6 address (16 bytes, network order).
    public static func of(v6 a: [UInt8]) -> AddressType {
        if a.allSatisfy({ $0 == 0 }) { return .unspecified }
        return a.first == 0xFF ? .multicast : .unicast
    }

    /// The type of an incoming IP_LOCAL_ADDRESS / IP_REMOTE_ADDRESS value; nil when it is
    /// FWP_EMPTY (or not an address).
    public static func of(_ v: IncomingValue) -> AddressType? {
        switch v {
        case .uint32(let a): return of(v4: a)
        case .byteArray16(let b) where b.count == 16: return of(v6: b)
        default: return nil
        }
    }
}
