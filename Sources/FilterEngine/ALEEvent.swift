import FilterModel
import Foundation
import KernelABI
import PolicyCompiler

/// One ALE event as the kernel reported it (struct lfp_event), decoded. JSON names follow WFP's
/// net-event header and metadata fields where WFP has one (FWPM_NET_EVENT_HEADER3,
/// FWPS_METADATA_FIELD_*): `layer`, `actionType`, `filterId`, `transportEndpointHandle`,
/// `parentEndpointHandle`, `processId`, `ipProtocol`, `localAddress`, ...
public struct ALEEvent: Sendable, Encodable, Equatable {
    public var sequence: UInt64
    public var timestampNs: UInt64
    public var layer: Layer?
    public var layerID: UInt16
    public var actionType: String        // FWP_ACTION_PERMIT / FWP_ACTION_BLOCK / FWP_ACTION_NONE
    public var filterId: UInt64
    public var transportEndpointHandle: UInt64
    public var parentEndpointHandle: UInt64
    public var processId: UInt32
    public var threadId: UInt32
    public var userId: UInt32
    public var groupId: UInt32
    public var cgroupId: UInt64
    public var processName: String
    public var ipVersion: String         // FWP_IP_VERSION_V4 / _V6
    public var ipProtocol: UInt8
    public var localAddress: String?
    public var localPort: UInt16?
    public var remoteAddress: String?
    public var remotePort: UInt16?
    public var errno: String?            // what a blocked operation returned, e.g. "EPERM"
    public var conditionFlags: UInt32
    public var policyGeneration: UInt64
    public var workload: String?         // the workload's name (from workloadId)
    public var workloadId: UInt32        // FNV-1a of the workload name, 0 if none

    public var isBlock: Bool { actionType == "FWP_ACTION_BLOCK" }
    public var isPermit: Bool { actionType == "FWP_ACTION_PERMIT" }

    static let size = MemoryLayout<lfp_event>.size

    public init?(record: UnsafeRawBufferPointer) {
        guard record.count >= ALEEvent.size else { return nil }
        let e = record.loadUnaligned(as: lfp_event.self)
        self.init(e)
    }

    public init(_ e: lfp_event) {
        sequence = e.seq
        timestampNs = e.ts_ns
        layerID = e.layer
        layer = Layer(kernelID: e.layer)
        switch UInt32(e.action) {
        case LFP_ACTION_PERMIT.rawValue: actionType = "FWP_ACTION_PERMIT"
        case LFP_ACTION_BLOCK.rawValue: actionType = "FWP_ACTION_BLOCK"
        default: actionType = "FWP_ACTION_NONE"
        }
        filterId = e.filter_id
        transportEndpointHandle = e.cookie
        parentEndpointHandle = e.parent_cookie
        processId = e.tgid
        threadId = e.pid
        userId = e.uid
        groupId = e.gid
        cgroupId = e.cgroup_id
        processName = withUnsafeBytes(of: e.comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let v6 = e.family == 10
        ipVersion = v6 ? "FWP_IP_VERSION_V6" : "FWP_IP_VERSION_V4"
        ipProtocol = e.protocol
        let flags = UInt32(e.evflags)
        if flags & LFP_EVF_LOCAL_ADDR != 0 {
            localAddress = withUnsafeBytes(of: e.local_addr_be) { ALEEvent.format(address: $0, v6: v6) }
        }
        if flags & LFP_EVF_LOCAL_PORT != 0 { localPort = e.local_port }
        if flags & LFP_EVF_REMOTE != 0 {
            remoteAddress = withUnsafeBytes(of: e.remote_addr_be) { ALEEvent.format(address: $0, v6: v6) }
            remotePort = e.remote_port
        }
        errno = e.error > 0 ? ALEEvent.errnoName(e.error) : nil
        conditionFlags = e.cond_flags
        policyGeneration = e.generation
        workloadId = e.workload_id
    }

    static func format(address raw: UnsafeRawBufferPointer, v6: Bool) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        _ = inet_ntop(v6 ? AF_INET6 : AF_INET, raw.baseAddress, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }

    static func errnoName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", EACCES: "EACCES", ECONNREFUSED: "ECONNREFUSED", ENETUNREACH: "ENETUNREACH",
            EHOSTUNREACH: "EHOSTUNREACH", ETIMEDOUT: "ETIMEDOUT", EADDRINUSE: "EADDRINUSE",
            EADDRNOTAVAIL: "EADDRNOTAVAIL", ECONNABORTED: "ECONNABORTED", ECONNRESET: "ECONNRESET",
        ]
        return names[code] ?? "errno \(code)"
    }

    enum CodingKeys: String, CodingKey {
        case sequence, timestampNs, layer, actionType, filterId, transportEndpointHandle,
             parentEndpointHandle, processId, threadId, userId, groupId, cgroupId, processName,
             ipVersion, ipProtocol, localAddress, localPort, remoteAddress, remotePort, errno,
             conditionFlags, policyGeneration, workload
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
        return s
    }
}
