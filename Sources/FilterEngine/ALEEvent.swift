import FilterModel
import Foundation
import KernelABI
import KernelVocabulary

/// One ALE event as the kernel reported it (struct lfp_event), decoded. JSON names follow WFP's
/// net-event header and metadata fields where WFP has one (FWPM_NET_EVENT_HEADER3,
/// FWPS_METADATA_FIELD_*): `layer`, `actionType`, `filterId`, `transportEndpointHandle`,
/// `parentEndpointHandle`, `processId`, `ipProtocol`, `localAddress`, ...
public struct ALEEvent: Sendable, Encodable {
    /// The record as the kernel wrote it. Everything else is computed from it on demand, so the
    /// thread draining the ring only copies one 168-byte record per event (it must keep up with the kernel).
    public var raw: lfp_event
    /// The workload's name (resolved from `workloadId`), when lfp knows it.
    public var workload: String?
    /// Names for the ids, filled in by `EventNames` when the event is read (nil otherwise): the
    /// deciding filter's name and key, the executable's path (the ALE_APP_ID the kernel
    /// matched), the user's name.
    public var filterName: String?
    public var filterKey: UUID?
    public var appId: String?
    public var userName: String?

    public var sequence: UInt64 { raw.seq }
    public var timestampNs: UInt64 { raw.ts_ns }
    public var layerID: UInt16 { raw.layer }
    public var layer: Layer? { Layer(kernelID: raw.layer) }
    /// FWP_ACTION_PERMIT / FWP_ACTION_BLOCK / FWP_ACTION_NONE (notifications, layer default).
    public var actionType: String {
        switch UInt32(raw.action) {
        case LFP_ACTION_PERMIT.rawValue: return "FWP_ACTION_PERMIT"
        case LFP_ACTION_BLOCK.rawValue: return "FWP_ACTION_BLOCK"
        // held for a registered callout: the verdict follows when the daemon completes it
        case LFP_ACTION_CALLOUT.rawValue: return "FWP_ACTION_CALLOUT_TERMINATING"
        default: return "FWP_ACTION_NONE"
        }
    }
    public var filterId: UInt64 { raw.filter_id }
    public var transportEndpointHandle: UInt64 { raw.cookie }
    public var parentEndpointHandle: UInt64 { raw.parent_cookie }
    public var processId: UInt32 { raw.tgid }
    public var threadId: UInt32 { raw.pid }
    public var userId: UInt32 { raw.uid }
    public var groupId: UInt32 { raw.gid }
    public var cgroupId: UInt64 { raw.cgroup_id }
    public var workloadId: UInt32 { raw.workload_id }
    public var processName: String {
        withUnsafeBytes(of: raw.comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
    public var isV6: Bool { raw.family == 10 }
    public var ipVersion: String { isV6 ? "FWP_IP_VERSION_V6" : "FWP_IP_VERSION_V4" }
    public var ipProtocol: UInt8 { raw.protocol }
    public var localAddress: String? {
        UInt32(raw.evflags) & LFP_EVF_LOCAL_ADDR == 0
            ? nil
            : withUnsafeBytes(of: raw.local_addr_be) { ALEEvent.format(address: $0, v6: isV6) }
    }
    public var localPort: UInt16? { UInt32(raw.evflags) & LFP_EVF_LOCAL_PORT == 0 ? nil : raw.local_port }
    public var remoteAddress: String? {
        UInt32(raw.evflags) & LFP_EVF_REMOTE == 0
            ? nil
            : withUnsafeBytes(of: raw.remote_addr_be) { ALEEvent.format(address: $0, v6: isV6) }
    }
    public var remotePort: UInt16? { UInt32(raw.evflags) & LFP_EVF_REMOTE == 0 ? nil : raw.remote_port }
    /// What a blocked operation returned to the application, e.g. "EPERM".
    public var errno: String? { raw.error > 0 ? BlockErrno.name(of: raw.error) ?? "errno \(raw.error)" : nil }
    public var conditionFlags: UInt32 { raw.cond_flags }
    /// FWPM_CONDITION_IP_LOCAL_INTERFACE as the kernel saw it: the ifindex of the socket's bound
    /// device (socket hooks) or of the arrival device (inbound); nil when unknown (FWP_EMPTY).
    public var localInterface: UInt32? { raw.ifindex == 0 ? nil : raw.ifindex }
    public var policyGeneration: UInt64 { raw.generation }

    public var isBlock: Bool { UInt32(raw.action) == LFP_ACTION_BLOCK.rawValue }
    public var isPermit: Bool { UInt32(raw.action) == LFP_ACTION_PERMIT.rawValue }
    /// The kernel holds this operation until the daemon completes it (bpf/lib/pend.h).
    public var isPended: Bool { UInt32(raw.action) == LFP_ACTION_CALLOUT.rawValue }

    static let size = MemoryLayout<lfp_event>.size

    public init?(record: UnsafeRawBufferPointer) {
        guard record.count >= ALEEvent.size else { return nil }
        raw = record.loadUnaligned(as: lfp_event.self)
    }

    public init(_ e: lfp_event) { raw = e }

    static func format(address raw: UnsafeRawBufferPointer, v6: Bool) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        _ = inet_ntop(v6 ? AF_INET6 : AF_INET, raw.baseAddress, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }

    enum CodingKeys: String, CodingKey {
        case sequence, timestampNs, layer, actionType, filterId, transportEndpointHandle,
            parentEndpointHandle, processId, threadId, userId, groupId, cgroupId, processName,
            ipVersion, ipProtocol, localAddress, localPort, remoteAddress, remotePort, errno,
            conditionFlags, policyGeneration, workload, workloadId, localInterface, filterName, filterKey, appId, userName
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sequence, forKey: .sequence)
        try c.encode(timestampNs, forKey: .timestampNs)
        try c.encode(layer?.name ?? "LFP_LAYER_\(layerID)", forKey: .layer)
        try c.encode(actionType, forKey: .actionType)
        try c.encode(filterId, forKey: .filterId)
        try c.encode(transportEndpointHandle, forKey: .transportEndpointHandle)
        try c.encode(parentEndpointHandle, forKey: .parentEndpointHandle)
        try c.encode(processId, forKey: .processId)
        try c.encode(threadId, forKey: .threadId)
        try c.encode(userId, forKey: .userId)
        try c.encode(groupId, forKey: .groupId)
        try c.encode(cgroupId, forKey: .cgroupId)
        try c.encode(processName, forKey: .processName)
        try c.encode(ipVersion, forKey: .ipVersion)
        try c.encode(ipProtocol, forKey: .ipProtocol)
        try c.encodeIfPresent(localAddress, forKey: .localAddress)
        try c.encodeIfPresent(localPort, forKey: .localPort)
        try c.encodeIfPresent(remoteAddress, forKey: .remoteAddress)
        try c.encodeIfPresent(remotePort, forKey: .remotePort)
        try c.encodeIfPresent(errno, forKey: .errno)
        try c.encode(conditionFlags, forKey: .conditionFlags)
        try c.encode(policyGeneration, forKey: .policyGeneration)
        try c.encodeIfPresent(workload, forKey: .workload)
        try c.encode(workloadId, forKey: .workloadId)
        try c.encodeIfPresent(localInterface, forKey: .localInterface)
        try c.encodeIfPresent(filterName, forKey: .filterName)
        try c.encodeIfPresent(filterKey?.uuidString.lowercased(), forKey: .filterKey)
        try c.encodeIfPresent(appId, forKey: .appId)
        try c.encodeIfPresent(userName, forKey: .userName)
    }

    /// One line for humans: `seq layer verdict filter handle pid/comm proto local -> remote`.
    public func render() -> String {
        let proto = ipProtocol == 6 ? "tcp" : ipProtocol == 17 ? "udp" : "proto \(ipProtocol)"
        func ep(_ a: String?, _ p: UInt16?) -> String {
            guard let a else { return p.map { "*:\($0)" } ?? "*" }
            let host = a.contains(":") ? "[\(a)]" : a
            return "\(host):\(p.map(String.init) ?? "*")"
        }
        var s = "#\(sequence) \(layer?.name.replacingOccurrences(of: "FWPM_LAYER_", with: "") ?? "layer \(layerID)")"
        s += " \(actionType.replacingOccurrences(of: "FWP_ACTION_", with: ""))"
        if filterId != 0 { s += " filter=\(filterId)" }
        if let errno { s += " (\(errno))" }
        s += " handle=\(transportEndpointHandle)"
        if parentEndpointHandle != 0 { s += " parent=\(parentEndpointHandle)" }
        s += " pid=\(processId) comm=\(processName) uid=\(userId)"
        if let workload { s += " workload=\(workload)" }
        s += " \(proto) \(ep(localAddress, localPort))"
        if remoteAddress != nil { s += " -> \(ep(remoteAddress, remotePort))" }
        if let localInterface { s += " if=\(localInterface)" }
        return s
    }
}
