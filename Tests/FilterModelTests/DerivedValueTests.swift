// Incoming values the model derives as the kernel does: address types from addresses.

import Foundation
import Testing

@testable import FilterModel

@Suite("Derived incoming values")
struct DerivedValueTests {
    @Test("NL_ADDRESS_TYPE from the address alone (the kernel's lfp_addr_type)")
    func addressTypes() throws {
        let v4: [(String, AddressType)] = [
            ("0.0.0.0", .unspecified), ("255.255.255.255", .broadcast), ("224.0.0.0", .multicast),
            ("239.255.255.255", .multicast), ("223.255.255.255", .unicast), ("240.0.0.0", .unicast),
            ("127.0.0.1", .unicast), ("10.1.255.255", .unicast),  // subnet-directed broadcast: unicast
            ("0.0.0.1", .unicast),
        ]
        for (text, want) in v4 { #expect(AddressType.of(v4: try #require(IPText.parseV4(text))) == want, "\(text)") }
        let v6: [(String, AddressType)] = [
            ("::", .unspecified), ("ff02::1", .multicast), ("ff00::", .multicast), ("fe80::1", .unicast), ("::1", .unicast),
            ("::ffff:224.0.0.1", .unicast), ("::ffff:0.0.0.0", .unicast), ("fec0::", .unicast),
        ]
        for (text, want) in v6 { #expect(AddressType.of(v6: try #require(IPText.parseV6(text))) == want, "\(text)") }
        #expect(AddressType.of(IncomingValue.empty) == nil)
        #expect(AddressType.of(.uint32(0xE000_0001)) == .multicast && AddressType.of(.byteArray16(IPText.parseV6("ff05::2")!)) == .multicast)
    }

    @Test("classify derives address types not given, keeps the ones given, and only where the field exists")
    func derivedInClassify() throws {
        let v = try IncomingValues.parse(
            layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=239.1.2.3", "FWPM_CONDITION_IP_LOCAL_ADDRESS=0.0.0.0"])
        let n = v.normalized(layer: .authConnectV4)
        #expect(n[.ipDestinationAddressType] == .uint8(3) && n[.ipLocalAddressType] == .uint8(0))
        let given = try IncomingValues.parse(
            layer: .authConnectV4,
            assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=239.1.2.3", "FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE=NlatUnicast"])
        #expect(given.normalized(layer: .authConnectV4)[.ipDestinationAddressType] == .uint8(1))
        let inbound = try IncomingValues.parse(layer: .authRecvAcceptV6, assignments: ["FWPM_CONDITION_IP_REMOTE_ADDRESS=ff02::1"])
        #expect(inbound.normalized(layer: .authRecvAcceptV6)[.ipDestinationAddressType] == nil)
        let empty = try IncomingValues.parse(layer: .authConnectV4, assignments: ["FWPM_CONDITION_IP_LOCAL_ADDRESS=FWP_EMPTY"])
        #expect(empty.normalized(layer: .authConnectV4)[.ipLocalAddressType] == nil)
    }
}
