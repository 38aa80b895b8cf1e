// The incoming values of one classify (field -> FWP_VALUE0), and their text form.

import Foundation

public struct IncomingValues: Hashable, Sendable, CustomStringConvertible {
    public var values: [ConditionField: IncomingValue]

    public init(_ values: [ConditionField: IncomingValue] = [:]) {
        self.values = values
    }

    /// The value of `field`; nil means not supplied (treated as FWP_EMPTY).
    public subscript(field: ConditionField) -> IncomingValue? {
        get { values[field] }
        set { values[field] = newValue }
    }

    public var description: String {
        values.keys.sorted().map { "\($0.name)=\(values[$0]!)" }.joined(separator: " ")
    }

    /// Parses CLI assignments such as "FWPM_CONDITION_IP_REMOTE_PORT=22",
    /// "FWPM_CONDITION_IP_REMOTE_ADDRESS=10.1.2.3", "FWPM_CONDITION_ALE_APP_ID=/usr/bin/curl",
    /// "FWPM_CONDITION_ALE_USER_ID=1000" (or "1000:100,27" for uid:gids),
    /// "FWPM_CONDITION_FLAGS=FWP_CONDITION_FLAG_IS_LOOPBACK|FWP_CONDITION_FLAG_IS_REAUTHORIZE".
    public static func parse(layer: Layer, assignments: [String]) throws -> IncomingValues {
        var out = IncomingValues()
        for a in assignments {
            guard let eq = a.firstIndex(of: "=") else {
                throw FWPError(.policySyntax, "--field '\(a)': expected NAME=VALUE")
            }
            let name = String(a[..<eq]), text = String(a[a.index(after: eq)...])
            guard let field = ConditionField(name: name) else {
                throw FWPError(.conditionNotFound, "--field '\(a)': unknown condition field '\(name)'")
            }
            guard field.isAvailable(at: layer) else {
                throw FWPError(.conditionNotFound, "--field '\(a)': \(field.name) is not a field of \(layer.name)")
            }
            out[field] = try parseValue(field: field, layer: layer, text: text, context: "--field '\(a)'")
        }
        return out
    }

    /// Parses a mapping of field names to text values (the fixtures' `fields`).
    public static func parse(layer: Layer, fields: [String: String]) throws -> IncomingValues {
        try parse(layer: layer, assignments: fields.keys.sorted().map { "\($0)=\(fields[$0]!)" })
    }

    /// One incoming value from text, typed by the field's data type at `layer`.
    public static func parseValue(field: ConditionField, layer: Layer, text: String, context: String) throws -> IncomingValue {
        let t = text.trimmingCharacters(in: .whitespaces)
        func bad(_ why: String) -> FWPError { FWPError(.policySyntax, "\(context): \(why)") }
        if t.uppercased() == "FWP_EMPTY" { return .empty }
        switch field {
        case .aleUserId:
            // uid, or uid:gid,gid...
            let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
            guard let uid = NumberText.parse(parts[0]), uid <= UInt64(UInt32.max) else { throw bad("expected a uid (or uid:gid,gid), got '\(t)'") }
            var gids: [UInt32] = []
            if parts.count == 2 {
                for g in parts[1].split(separator: ",") {
                    guard let n = NumberText.parse(String(g)), n <= UInt64(UInt32.max) else { throw bad("bad gid '\(g)'") }
                    gids.append(UInt32(n))
                }
            }
            return .token(UserToken(uid: UInt32(uid), gids: gids))
        case .aleAppId, .aleOriginalAppId:
            return .byteBlob(AppId.blob(t))
        default:
            break
        }
        switch field.dataType(at: layer) {
        case .uint8:
            var table: [(String, UInt32)] = []
            if field == .ipProtocol {
                table = ConditionFlagNames.protocols.map { ($0.0, UInt32($0.1)) } + [("TCP", 6), ("UDP", 17), ("ICMP", 1), ("ICMPV6", 58)]
            }
            if field == .ipLocalAddressType || field == .ipDestinationAddressType {
                table = ConditionFlagNames.addressTypes.map { ($0.0.uppercased(), UInt32($0.1)) }
            }
            if let n = NumberText.parse(t), n <= 0xFF { return .uint8(UInt8(n)) }
            if let e = table.first(where: { $0.0 == t.uppercased() }) { return .uint8(UInt8(e.1)) }
            if NumberText.parse(t) != nil { throw bad(NumberText.refusal(t, max: 0xFF, typeName: "FWP_UINT8")) }
            throw bad("expected an FWP_UINT8, got '\(t)'")
        case .uint16:
            guard let n = NumberText.parse(t), n <= 0xFFFF else {
                let words = NumberText.refusal(t, max: 0xFFFF, typeName: "FWP_UINT16")
                throw bad(words.contains("out of range") ? words : "expected an FWP_UINT16, got '\(t)'")
            }
            return .uint16(UInt16(n))
        case .uint32:
            if field.isAddress, let v = IPText.parseV4(t) { return .uint32(v) }
            let table: [(String, UInt32)]
            switch field {
            case .flags: table = ConditionFlagNames.flags
            case .reauthorizeReason: table = ConditionFlagNames.reauthorizeReasons
            case .direction: table = ConditionFlagNames.directions
            default: table = []
            }
            if let v = ConditionFlagNames.parseBits(t, table: table) { return .uint32(v) }
            throw bad("expected an FWP_UINT32\(field.isAddress ? " or a dotted quad" : "")\(table.isEmpty ? "" : " or names joined with |"), got '\(t)'")
        case .uint64:
            guard let n = NumberText.parse(t) else {
                let words = NumberText.refusal(t, max: .max, typeName: "FWP_UINT64")
                throw bad(words.contains("out of range") ? words : "expected an FWP_UINT64, got '\(t)'")
            }
            return .uint64(n)
        case .byteArray16:
            if let b = IPText.parseV6(t) { return .byteArray16(b) }
            if let v = IPText.parseV4(t) { return .byteArray16(IPText.v4Mapped(v)) }  // R3.22
            throw bad("expected an IPv6 address, got '\(t)'")
        case .byteBlob:
            return .byteBlob(Array(t.utf8))
        default:
            throw bad("\(field.name) cannot be given on the command line")
        }
    }

    /// The values arbitration really sees: LFP_CONDITION_UID/GID and ALE_USER_ID are kept
    /// consistent (each is derived from the other when only one is given); the address types
    /// not given are derived from the addresses as the kernel derives them (AddressType):
    /// IP_LOCAL_ADDRESS_TYPE from IP_LOCAL_ADDRESS, IP_DESTINATION_ADDRESS_TYPE from
    /// IP_REMOTE_ADDRESS at the layers that have it.
    func normalized(layer: Layer? = nil) -> IncomingValues {
        var v = self
        if v[.ipLocalAddressType] == nil, let a = v[.ipLocalAddress], let t = AddressType.of(a) {
            v[.ipLocalAddressType] = .uint8(t.rawValue)
        }
        if v[.ipDestinationAddressType] == nil, layer.map(ConditionField.ipDestinationAddressType.isAvailable(at:)) ?? true,
            let a = v[.ipRemoteAddress], let t = AddressType.of(a)
        {
            v[.ipDestinationAddressType] = .uint8(t.rawValue)
        }
        if case .token(let t)? = v[.aleUserId] {
            if v[.lfpUid] == nil { v[.lfpUid] = .uint32(t.uid) }
            if v[.lfpGid] == nil, let g = t.gids.first { v[.lfpGid] = .uint32(g) }
        } else if v[.aleUserId] == nil, case .uint32(let uid)? = v[.lfpUid] {
            var gids: [UInt32] = []
            if case .uint32(let g)? = v[.lfpGid] { gids = [g] }
            v[.aleUserId] = .token(UserToken(uid: uid, gids: gids))
        }
        return v
    }
}
