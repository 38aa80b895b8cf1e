// Condition fields (FWPM_CONDITION_* plus the Linux-native LFP_CONDITION_*), their data types,
// where they exist, and what Linux can supply for them. The table is documented in README.md.

import Foundation

/// FWP_DATA_TYPE, restricted to the types that appear at the ALE layers.
public enum DataType: String, Hashable, Sendable, CaseIterable {
    case empty = "FWP_EMPTY"
    case uint8 = "FWP_UINT8"
    case uint16 = "FWP_UINT16"
    case uint32 = "FWP_UINT32"
    case uint64 = "FWP_UINT64"
    case byteArray16 = "FWP_BYTE_ARRAY16_TYPE"
    case byteBlob = "FWP_BYTE_BLOB_TYPE"
    case sid = "FWP_SID"
    case securityDescriptor = "FWP_SECURITY_DESCRIPTOR_TYPE"
    case v4AddrMask = "FWP_V4_ADDR_MASK"
    case v6AddrMask = "FWP_V6_ADDR_MASK"
    case range = "FWP_RANGE_TYPE"
    /// The incoming value of a security-descriptor field (the caller's token: uid + gids).
    case tokenInformation = "FWP_TOKEN_INFORMATION_TYPE"

    public var name: String { rawValue }

    var isUnsignedInteger: Bool { [.uint8, .uint16, .uint32, .uint64].contains(self) }
    /// R3.8 "sortable": integers, BYTE_ARRAY16, BYTE_BLOB.
    var isSortable: Bool { isUnsignedInteger || self == .byteArray16 || self == .byteBlob }

    public init?(name: String) {
        let up = name.uppercased()
        if let t = DataType(rawValue: up) { self = t; return }
        switch up {
        case "FWP_BYTE_ARRAY16": self = .byteArray16
        case "FWP_BYTE_BLOB": self = .byteBlob
        case "FWP_SECURITY_DESCRIPTOR": self = .securityDescriptor
        case "FWP_RANGE": self = .range
        case "FWP_SID_TYPE": self = .sid
        case "FWP_V4_ADDR_AND_MASK": self = .v4AddrMask
        case "FWP_V6_ADDR_AND_MASK": self = .v6AddrMask
        default: return nil
        }
    }
}

/// Where a field's incoming value comes from on Linux.
public enum LinuxSource: Hashable, Sendable {
    /// The eBPF fast path reads it in the kernel.
    case kernel(String)
    /// Only lfp's userspace can supply it (e.g. from its resolver cache); the kernel compiler
    /// must treat conditions on it as "callout required".
    case userspace(String)
    /// Linux has nothing that corresponds: filters using it are refused (FWP_E_CONDITION_NOT_FOUND).
    case unsupported(String)

    public var meaning: String {
        switch self {
        case .kernel(let s), .userspace(let s), .unsupported(let s): return s
        }
    }

    public var isSupported: Bool {
        if case .unsupported = self { return false }
        return true
    }
}

public enum ConditionField: String, CaseIterable, Hashable, Sendable, Codable, Comparable {
    case ipLocalAddress = "FWPM_CONDITION_IP_LOCAL_ADDRESS"
    case ipRemoteAddress = "FWPM_CONDITION_IP_REMOTE_ADDRESS"
    case ipLocalPort = "FWPM_CONDITION_IP_LOCAL_PORT"
    case ipRemotePort = "FWPM_CONDITION_IP_REMOTE_PORT"
    case ipProtocol = "FWPM_CONDITION_IP_PROTOCOL"
    case ipLocalAddressType = "FWPM_CONDITION_IP_LOCAL_ADDRESS_TYPE"
    case ipDestinationAddressType = "FWPM_CONDITION_IP_DESTINATION_ADDRESS_TYPE"
    case ipLocalInterface = "FWPM_CONDITION_IP_LOCAL_INTERFACE"
    case aleAppId = "FWPM_CONDITION_ALE_APP_ID"
    case aleOriginalAppId = "FWPM_CONDITION_ALE_ORIGINAL_APP_ID"
    case aleUserId = "FWPM_CONDITION_ALE_USER_ID"
    case aleRemoteUserId = "FWPM_CONDITION_ALE_REMOTE_USER_ID"
    case aleRemoteMachineId = "FWPM_CONDITION_ALE_REMOTE_MACHINE_ID"
    case alePromiscuousMode = "FWPM_CONDITION_ALE_PROMISCUOUS_MODE"
    case alePackageId = "FWPM_CONDITION_ALE_PACKAGE_ID"
    case aleSecurityAttributeFqbnValue = "FWPM_CONDITION_ALE_SECURITY_ATTRIBUTE_FQBN_VALUE"
    case aleSioFirewallSystemPort = "FWPM_CONDITION_ALE_SIO_FIREWALL_SYSTEM_PORT"
    case aleNapContext = "FWPM_CONDITION_ALE_NAP_CONTEXT"
    case aleEffectiveName = "FWPM_CONDITION_ALE_EFFECTIVE_NAME"
    case peerName = "FWPM_CONDITION_PEER_NAME"
    case flags = "FWPM_CONDITION_FLAGS"
    case direction = "FWPM_CONDITION_DIRECTION"
    case interfaceType = "FWPM_CONDITION_INTERFACE_TYPE"
    case tunnelType = "FWPM_CONDITION_TUNNEL_TYPE"
    case interfaceIndex = "FWPM_CONDITION_INTERFACE_INDEX"
    case subInterfaceIndex = "FWPM_CONDITION_SUB_INTERFACE_INDEX"
    case localInterfaceProfileId = "FWPM_CONDITION_LOCAL_INTERFACE_PROFILE_ID"
    case compartmentId = "FWPM_CONDITION_COMPARTMENT_ID"
    case reauthorizeReason = "FWPM_CONDITION_REAUTHORIZE_REASON"
    case originalIcmpType = "FWPM_CONDITION_ORIGINAL_ICMP_TYPE"
    case ipArrivalInterface = "FWPM_CONDITION_IP_ARRIVAL_INTERFACE"
    case arrivalInterfaceIndex = "FWPM_CONDITION_ARRIVAL_INTERFACE_INDEX"
    case arrivalInterfaceType = "FWPM_CONDITION_ARRIVAL_INTERFACE_TYPE"
    case arrivalTunnelType = "FWPM_CONDITION_ARRIVAL_TUNNEL_TYPE"
    case arrivalInterfaceProfileId = "FWPM_CONDITION_ARRIVAL_INTERFACE_PROFILE_ID"
    case ipNexthopInterface = "FWPM_CONDITION_IP_NEXTHOP_INTERFACE"
    case nexthopInterfaceIndex = "FWPM_CONDITION_NEXTHOP_INTERFACE_INDEX"
    case nexthopInterfaceType = "FWPM_CONDITION_NEXTHOP_INTERFACE_TYPE"
    case nexthopTunnelType = "FWPM_CONDITION_NEXTHOP_TUNNEL_TYPE"
    case nexthopInterfaceProfileId = "FWPM_CONDITION_NEXTHOP_INTERFACE_PROFILE_ID"
    case nexthopSubInterfaceIndex = "FWPM_CONDITION_NEXTHOP_SUB_INTERFACE_INDEX"
    case currentProfileId = "FWPM_CONDITION_CURRENT_PROFILE_ID"
    // Linux-native fields, valid at every ALE layer.
    case lfpUid = "LFP_CONDITION_UID"
    case lfpGid = "LFP_CONDITION_GID"
    case lfpCgroupId = "LFP_CONDITION_CGROUP_ID"
    case lfpWorkload = "LFP_CONDITION_WORKLOAD"

    /// The constant name.
    public var name: String { rawValue }

    /// Names that WFP defines as the same field (fwpmu.h `#define`s).
    public static let aliases: [String: ConditionField] = [
        "FWPM_CONDITION_ICMP_TYPE": .ipLocalPort,
        "FWPM_CONDITION_ICMP_CODE": .ipRemotePort,
        "FWPM_CONDITION_ALE_REAUTH_REASON": .reauthorizeReason,
    ]

    /// The field GUID. FWPM_* values come from fwpmu.h; LFP_* values are lfp's own (fixed,
    /// version-4 form, documented in README.md).
    public var guid: UUID {
        let s: String
        switch self {
        case .ipLocalAddress: s = "d9ee00de-c1ef-4617-bfe3-ffd8f5a08957"
        case .ipRemoteAddress: s = "b235ae9a-1d64-49b8-a44c-5ff3d9095045"
        case .ipLocalPort: s = "0c1ba1af-5765-453f-af22-a8f791ac775b"
        case .ipRemotePort: s = "c35a604d-d22b-4e1a-91b4-68f674ee674b"
        case .ipProtocol: s = "3971ef2b-623e-4f9a-8cb1-6e79b806b9a7"
        case .ipLocalAddressType: s = "6ec7f6c4-376b-45d7-9e9c-d337cedcd237"
        case .ipDestinationAddressType: s = "1ec1b7c9-4eea-4f5e-b9ef-76beaaaf17ee"
        case .ipLocalInterface: s = "4cd62a49-59c3-4969-b7f3-bda5d32890a4"
        case .aleAppId: s = "d78e1e87-8644-4ea5-9437-d809ecefc971"
        case .aleOriginalAppId: s = "0e6cd086-e1fb-4212-842f-8a9f993fb3f6"
        case .aleUserId: s = "af043a0a-b34d-4f86-979c-c90371af6e66"
        case .aleRemoteUserId: s = "f63073b7-0189-4ab0-95a4-6123cbfab862"
        case .aleRemoteMachineId: s = "1aa47f51-7f93-4508-a271-81abb00c9cab"
        case .alePromiscuousMode: s = "1c974776-7182-46e9-afd3-b02910e30334"
        case .alePackageId: s = "71bc78fa-f17c-4997-a602-6abb261f351c"
        case .aleSecurityAttributeFqbnValue: s = "37a57699-5883-4963-92b8-3e704688b0ad"
        case .aleSioFirewallSystemPort: s = "b9f4e088-cb98-4efb-a2c7-ad07332643db"
        case .aleNapContext: s = "46275a9d-c03f-4d77-b784-1c57f4d02753"
        case .aleEffectiveName: s = "b1277b9a-b781-40fc-9671-e5f1b989f34e"
        case .peerName: s = "9b539082-eb90-4186-a6cc-de5b63235016"
        case .flags: s = "632ce23b-5167-435c-86d7-e903684aa80c"
        case .direction: s = "8784c146-ca97-44d6-9fd1-19fb1840cbf7"
        case .interfaceType: s = "daf8cd14-e09e-4c93-a5ae-c5c13b73ffca"
        case .tunnelType: s = "77a40437-8779-4868-a261-f5a902f1c0cd"
        case .interfaceIndex: s = "667fd755-d695-434a-8af5-d3835a1259bc"
        case .subInterfaceIndex: s = "0cd42473-d621-4be3-ae8c-72a348d283e1"
        case .localInterfaceProfileId: s = "4ebf7562-9f18-4d06-9941-a7a625744d71"
        case .compartmentId: s = "35a791ab-04ac-4ff2-a6bb-da6cfac71806"
        case .reauthorizeReason: s = "11205e8c-11ae-457a-8a44-477026dd764a"
        case .originalIcmpType: s = "076dfdbe-c56c-4f72-ae8a-2cfe7e5c8286"
        case .ipArrivalInterface: s = "618a9b6d-386b-4136-ad6e-b51587cfb1cd"
        case .arrivalInterfaceIndex: s = "cc088db3-1792-4a71-b0f9-037d21cd828b"
        case .arrivalInterfaceType: s = "89f990de-e798-4e6d-ab76-7c9558292e6f"
        case .arrivalTunnelType: s = "511166dc-7a8c-4aa7-b533-95ab59fb0340"
        case .arrivalInterfaceProfileId: s = "cdfe6aab-c083-4142-8679-c08f95329c61"
        case .ipNexthopInterface: s = "93ae8f5b-7f6f-4719-98c8-14e97429ef04"
        case .nexthopInterfaceIndex: s = "138e6888-7ab8-4d65-9ee8-0591bcf6a494"
        case .nexthopInterfaceType: s = "97537c6c-d9a3-4767-a381-e942675cd920"
        case .nexthopTunnelType: s = "72b1a111-987b-4720-99dd-c7c576fa2d4c"
        case .nexthopInterfaceProfileId: s = "d7ff9a56-cdaa-472b-84db-d23963c1d1bf"
        case .nexthopSubInterfaceIndex: s = "ef8a6122-0577-45a7-9aaf-825fbeb4fb95"
        case .currentProfileId: s = "ab3033c9-c0e3-4759-937d-5758c65d4ae3"
        case .lfpUid: s = "1f9a0001-6c66-4070-8000-000000000001"
        case .lfpGid: s = "1f9a0001-6c66-4070-8000-000000000002"
        case .lfpCgroupId: s = "1f9a0001-6c66-4070-8000-000000000003"
        case .lfpWorkload: s = "1f9a0001-6c66-4070-8000-000000000004"
        }
        return UUID(uuidString: s)!
    }

    /// Accepts the constant name (any case; the `FWPM_CONDITION_` prefix may be left out), an alias
    /// such as FWPM_CONDITION_ICMP_TYPE, or the GUID string.
    public init?(name: String) {
        if let f = ConditionField(rawValue: name) { self = f; return }  // the usual spelling, no copies
        let t = name.trimmingCharacters(in: .whitespaces)
        if let u = UUID(uuidString: t.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))) {
            guard let f = ConditionField.allCases.first(where: { $0.guid == u }) else { return nil }
            self = f
            return
        }
        let up = t.uppercased()
        for cand in [up, "FWPM_CONDITION_" + up] {
            if let f = ConditionField(rawValue: cand) { self = f; return }
            if let f = ConditionField.aliases[cand] { self = f; return }
        }
        return nil
    }

    public init?(guid: UUID) {
        guard let f = ConditionField.allCases.first(where: { $0.guid == guid }) else { return nil }
        self = f
    }

    public var isLinuxNative: Bool { rawValue.hasPrefix("LFP_") }

    /// The FWP data type of the field's incoming value at `layer` (R3.15).
    public func dataType(at layer: Layer) -> DataType {
        switch self {
        case .ipLocalAddress, .ipRemoteAddress: return layer.isV6 ? .byteArray16 : .uint32
        case .ipLocalPort, .ipRemotePort, .originalIcmpType: return .uint16
        case .ipProtocol, .ipLocalAddressType, .ipDestinationAddressType, .alePromiscuousMode: return .uint8
        case .ipLocalInterface, .ipArrivalInterface, .ipNexthopInterface, .lfpCgroupId: return .uint64
        case .aleAppId, .aleOriginalAppId, .peerName, .aleEffectiveName, .aleSecurityAttributeFqbnValue,
            .lfpWorkload:
            return .byteBlob
        case .aleUserId, .aleRemoteUserId, .aleRemoteMachineId: return .securityDescriptor
        case .alePackageId: return .sid
        case .flags, .direction, .interfaceType, .tunnelType, .interfaceIndex, .subInterfaceIndex,
            .localInterfaceProfileId, .compartmentId, .reauthorizeReason, .arrivalInterfaceIndex,
            .arrivalInterfaceType, .arrivalTunnelType, .arrivalInterfaceProfileId, .nexthopInterfaceIndex,
            .nexthopInterfaceType, .nexthopTunnelType, .nexthopInterfaceProfileId, .nexthopSubInterfaceIndex,
            .currentProfileId, .aleSioFirewallSystemPort, .aleNapContext, .lfpUid, .lfpGid:
            return .uint32
        }
    }

    /// The fields AUTH_RECV_ACCEPT and AUTH_CONNECT share (R3.20), beyond the common ones.
    static let authorizationFields: Set<ConditionField> = [
        .ipLocalPort, .ipProtocol, .ipRemoteAddress, .ipRemotePort, .aleRemoteUserId,
        .aleRemoteMachineId, .interfaceType, .tunnelType, .interfaceIndex, .subInterfaceIndex,
        .localInterfaceProfileId, .reauthorizeReason, .originalIcmpType, .ipArrivalInterface,
        .arrivalInterfaceIndex, .arrivalInterfaceType, .arrivalTunnelType,
        .arrivalInterfaceProfileId, .ipNexthopInterface, .nexthopInterfaceIndex,
        .nexthopInterfaceType, .nexthopTunnelType, .nexthopInterfaceProfileId,
        .nexthopSubInterfaceIndex, .currentProfileId,
    ]

    /// True when WFP defines this field at `layer` (R3.20) or it is an LFP_* field.
    public func isAvailable(at layer: Layer) -> Bool {
        isLinuxNative || Self.availableAt[layer.kind]!.contains(self)
    }

    /// The WFP fields of each kind of layer, built once (a set per call was a visible part of
    /// validating a 100k-filter policy).
    static let availableAt: [Layer.Kind: Set<ConditionField>] = Dictionary(
        uniqueKeysWithValues: Layer.Kind.allCases.map { ($0, fieldsDefined(at: $0)) })

    private static func fieldsDefined(at kind: Layer.Kind) -> Set<ConditionField> {
        let common: Set<ConditionField> = [
            .aleAppId, .aleUserId, .ipLocalAddress, .ipLocalAddressType, .ipLocalInterface, .flags,
            .alePackageId, .aleSecurityAttributeFqbnValue, .compartmentId,
        ]
        let extra: Set<ConditionField>
        switch kind {
        case .resourceAssignment:
            extra = [
                .ipLocalPort, .ipProtocol, .alePromiscuousMode, .interfaceType, .tunnelType,
                .localInterfaceProfileId,
            ]
        case .authListen:
            extra = [.ipLocalPort, .interfaceType, .tunnelType, .localInterfaceProfileId]
        case .authRecvAccept:
            extra = ConditionField.authorizationFields.union([.aleSioFirewallSystemPort, .aleNapContext])
        case .authConnect:
            // R3.20: like RECV_ACCEPT without its two internal fields, plus the outbound ones.
            extra = ConditionField.authorizationFields.union([.ipDestinationAddressType, .peerName, .aleOriginalAppId, .aleEffectiveName])
        case .flowEstablished:
            extra = [
                .ipLocalPort, .ipProtocol, .ipRemoteAddress, .ipRemotePort, .ipDestinationAddressType,
                .aleRemoteUserId, .aleRemoteMachineId, .direction, .interfaceType, .tunnelType,
                .aleOriginalAppId,
            ]
        case .resourceRelease:
            extra = [.ipLocalPort, .ipProtocol]
        case .endpointClosure:
            extra = [.ipLocalPort, .ipProtocol, .ipRemoteAddress, .ipRemotePort]
        }
        return common.union(extra)
    }

    /// What Linux supplies for this field (the table in README.md).
    public var linuxSource: LinuxSource {
        switch self {
        case .ipLocalAddress:
            return .kernel("local IP address of the socket (host order for v4; v4-mapped at the V6 layers for dual-stack sockets); FWP_EMPTY when unbound")
        case .ipRemoteAddress: return .kernel("remote IP address (connect/sendmsg destination, accept source)")
        case .ipLocalPort: return .kernel("local port; for ICMP the ICMP type (FWPM_CONDITION_ICMP_TYPE)")
        case .ipRemotePort: return .kernel("remote port; for ICMP the ICMP code (FWPM_CONDITION_ICMP_CODE)")
        case .ipProtocol: return .kernel("IP protocol number of the socket (IPPROTO_TCP 6, IPPROTO_UDP 17, ...)")
        case .ipLocalAddressType:
            return .kernel(
                "NL_ADDRESS_TYPE of the local address, derived from the address alone (AddressType): 0 unspecified (0.0.0.0, ::), 4 broadcast (255.255.255.255), 3 multicast (224.0.0.0/4, ff00::/8), else 1 unicast; 2 anycast is never derived and a subnet-directed broadcast is unicast; FWP_EMPTY when the local address is"
            )
        case .ipDestinationAddressType:
            return .kernel("NL_ADDRESS_TYPE of the remote (destination) address, derived as for IP_LOCAL_ADDRESS_TYPE; FWP_EMPTY when the remote address is")
        case .ipLocalInterface:
            return .kernel(
                "ifindex (Linux has no interface LUID), as FWP_UINT64: the device the socket is bound to (SO_BINDTODEVICE) at RESOURCE_ASSIGNMENT, AUTH_CONNECT and AUTH_LISTEN, the device the packet arrived on at AUTH_RECV_ACCEPT; FWP_EMPTY for a socket bound to no device (its route is chosen after connect)"
            )
        case .aleAppId:
            return .kernel(
                "canonical absolute path of the process executable (/proc/PID/exe), UTF-8, case preserved; EQUAL/NOT_EQUAL compare file identity (device, inode) when both paths name existing files, so a symlink or hard link of the executable matches"
            )
        case .aleUserId:
            return .kernel("the socket owner's credentials: uid and gids, matched against a security descriptor whose SIDs are S-1-22-1-UID / S-1-22-2-GID")
        case .flags:
            return .kernel(
                "FWP_CONDITION_FLAG_* bits lfp can observe: IS_LOOPBACK, IS_REAUTHORIZE, IS_WILDCARD_BIND, IS_RAW_ENDPOINT, IS_IMPLICIT_BIND, IS_REASSEMBLED; others are never set"
            )
        case .direction: return .kernel("FWP_DIRECTION_OUTBOUND (0) or FWP_DIRECTION_INBOUND (1) of the connection")
        case .interfaceIndex, .arrivalInterfaceIndex: return .kernel("ifindex of the interface the packet arrived on")
        case .reauthorizeReason:
            return .kernel("FWP_CONDITION_REAUTHORIZE_REASON_* bits set by lfp when it re-classifies an established flow (policy change, classify completion)")
        case .peerName: return .userspace("host name the application resolved for the remote address, from lfp's resolver cache; not visible to the eBPF path")
        case .lfpUid: return .kernel("uid of the socket owner")
        case .lfpGid: return .kernel("primary gid of the socket owner")
        case .lfpCgroupId: return .kernel("cgroup v2 id of the socket's cgroup")
        case .lfpWorkload: return .kernel("lfp workload name the socket's cgroup is attached to (UTF-8 text)")
        case .aleOriginalAppId: return .unsupported("Linux has no proxy/original-application attribution")
        case .aleRemoteUserId, .aleRemoteMachineId: return .unsupported("remote IPsec/AuthIP identities do not exist on the Linux path")
        case .alePromiscuousMode: return .unsupported("promiscuous-mode requests are not classified at a socket hook")
        case .alePackageId: return .unsupported("Linux has no AppContainer package SIDs")
        case .aleSecurityAttributeFqbnValue: return .unsupported("Linux has no fully-qualified binary names (FQBN)")
        case .aleSioFirewallSystemPort, .aleNapContext: return .unsupported("Windows-internal field")
        case .aleEffectiveName: return .unsupported("no effective-name attribution on Linux")
        case .interfaceType, .tunnelType, .arrivalInterfaceType, .arrivalTunnelType, .nexthopInterfaceType,
            .nexthopTunnelType:
            return .unsupported("IANA interface/tunnel types are not exposed at the socket hooks")
        case .subInterfaceIndex, .nexthopSubInterfaceIndex, .ipArrivalInterface, .ipNexthopInterface,
            .nexthopInterfaceIndex:
            return .unsupported("next-hop/sub-interface data is not known at the socket hooks")
        case .localInterfaceProfileId, .arrivalInterfaceProfileId, .nexthopInterfaceProfileId, .currentProfileId:
            return .unsupported("Linux has no network location profiles (public/private/domain)")
        case .compartmentId: return .unsupported("routing compartments do not exist; use LFP_CONDITION_CGROUP_ID or LFP_CONDITION_WORKLOAD")
        case .originalIcmpType: return .unsupported("the original ICMP type of an error is not exposed at the socket hooks")
        }
    }

    /// Fields whose UINT32 values denote IPv4 addresses (written as dotted quads on export).
    var isAddress: Bool { self == .ipLocalAddress || self == .ipRemoteAddress }

    public static func < (a: ConditionField, b: ConditionField) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// FWP_MATCH_TYPE with WFP's raw values (R3.7).
public enum MatchType: UInt32, CaseIterable, Hashable, Sendable, Codable {
    case equal = 0
    case greater = 1
    case less = 2
    case greaterOrEqual = 3
    case lessOrEqual = 4
    case range = 5
    case flagsAllSet = 6
    case flagsAnySet = 7
    case flagsNoneSet = 8
    case equalCaseInsensitive = 9
    case notEqual = 10
    case prefix = 11
    case notPrefix = 12

    /// FWP_MATCH_TYPE_MAX: one past the last valid value.
    public static let max: UInt32 = 13

    public var name: String {
        switch self {
        case .equal: return "FWP_MATCH_EQUAL"
        case .greater: return "FWP_MATCH_GREATER"
        case .less: return "FWP_MATCH_LESS"
        case .greaterOrEqual: return "FWP_MATCH_GREATER_OR_EQUAL"
        case .lessOrEqual: return "FWP_MATCH_LESS_OR_EQUAL"
        case .range: return "FWP_MATCH_RANGE"
        case .flagsAllSet: return "FWP_MATCH_FLAGS_ALL_SET"
        case .flagsAnySet: return "FWP_MATCH_FLAGS_ANY_SET"
        case .flagsNoneSet: return "FWP_MATCH_FLAGS_NONE_SET"
        case .equalCaseInsensitive: return "FWP_MATCH_EQUAL_CASE_INSENSITIVE"
        case .notEqual: return "FWP_MATCH_NOT_EQUAL"
        case .prefix: return "FWP_MATCH_PREFIX"
        case .notPrefix: return "FWP_MATCH_NOT_PREFIX"
        }
    }

    public init?(name: String) {
        if let m = MatchType.allCases.first(where: { $0.name == name }) { self = m; return }
        let up = name.uppercased()
        guard let m = MatchType.allCases.first(where: { $0.name == up || $0.name == "FWP_MATCH_" + up }) else {
            return nil
        }
        self = m
    }

    /// Negative match types (true when the positive test fails).
    var isNegative: Bool { self == .notEqual || self == .notPrefix || self == .flagsNoneSet }
}
