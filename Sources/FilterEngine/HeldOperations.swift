import BPFKit
import Foundation
import KernelABI

/// The key of a held flow (struct lfp_flow_key): the socket cookie and the remote end, with
/// IPv4-mapped peers as IPv4, as the kernel keys lfp_pends and lfp_flows.
public struct HeldFlowKey: Hashable, Sendable, CustomStringConvertible {
    public var cookie: UInt64
    public var family: UInt16
    /// 16 bytes, network order; IPv4 in the first 4.
    public var remoteAddress: [UInt8]
    public var remotePort: UInt16

    public init(raw: lfp_flow_key) {
        cookie = raw.cookie
        family = raw.family
        remoteAddress = withUnsafeBytes(of: raw.remote_be) { Array($0) }
        remotePort = raw.remote_port
    }

    /// The flow an AUTH_CONNECT event reports (the kernel built its key from the same fields).
    public init(event: ALEEvent) {
        cookie = event.raw.cookie
        family = event.raw.family
        remoteAddress = withUnsafeBytes(of: event.raw.remote_addr_be) { Array($0) }
        remotePort = event.raw.remote_port
    }

    public var raw: lfp_flow_key {
        var k = lfp_flow_key()
        k.cookie = cookie
        k.family = family
        k.remote_port = remotePort
        withUnsafeMutableBytes(of: &k.remote_be) { $0.copyBytes(from: remoteAddress.prefix(16)) }
        return k
    }

    public var description: String {
        let v6 = family == UInt16(AF_INET6)
        let addr = remoteAddress.withUnsafeBytes { ALEEvent.format(address: $0, v6: v6) }
        return "cookie \(cookie) → \(v6 ? "[\(addr)]" : addr):\(remotePort)"
    }
}

/// One operation the kernel holds for a callout (an lfp_pends entry).
public struct HeldOperation: Sendable {
    public var key: HeldFlowKey
    public var filterId: UInt64
    public var generation: UInt64
    /// CLOCK_MONOTONIC ns when the hold began.
    public var startNs: UInt64
    public var ipProtocol: UInt8
    public var layerID: UInt16
    /// Still waiting for a verdict (not yet completed).
    public var waiting: Bool
    /// The SYN is not re-injected: a permit waits for the kernel's own retransmission
    /// (LFP_PEND_F_KERNEL_RETRY: a socket mark, bound device or TCP-MD5/AO key).
    public var kernelRetry: Bool
}

/// The verdict that completes a held operation.
public enum HeldVerdict: Sendable, Hashable {
    case permit
    /// `errno` is the filter's choice: what a blocked flow's later datagrams return. A TCP
    /// connect is refused by the peer's forged RST (ECONNREFUSED, PacketForge.refusal).
    case block(errno: Int32)
}

/// Completes operations the kernel holds (bpf/lib/pend.h): writes the verdict and sends the
/// packets that make the application notice at once. One per daemon; thread-safe (map
/// operations are atomic per entry, the injector locks its sockets).
public final class HeldOperations: @unchecked Sendable {
    let maps: KernelMaps
    let engine: Engine
    let injector = RawInjector()
    /// How long a block waits for the kernel to capture the SYN it must refuse (a verdict can be
    /// ready before the SYN has left connect()); retried on a timer, never slept on.
    static let captureRetries = 200
    static let captureRetryInterval = DispatchTimeInterval.milliseconds(2)

    init(maps: KernelMaps, engine: Engine) {
        self.maps = maps
        self.engine = engine
    }

    /// Every held operation, waiting or completed but not yet released.
    public func all() throws -> [HeldOperation] {
        try maps.pends.keys(as: lfp_flow_key.self).compactMap { k in
            try maps.pends.lookup(key: k, as: lfp_pend.self).map { HeldOperation(key: HeldFlowKey(raw: k), pend: $0) }
        }
    }

    public func operation(_ key: HeldFlowKey) throws -> HeldOperation? {
        try maps.pends.lookup(key: key.raw, as: lfp_pend.self).map { HeldOperation(key: key, pend: $0) }
    }

    /// What completing did.
    public enum Outcome: Sendable, Equatable {
        /// The verdict is in force. For a blocked TCP connect, `refusal` is the errno the refusal
        /// carries, nil when the SYN was not captured yet (a retry sends it).
        case completed(refusal: Int32?)
        /// No such held operation: the socket was released, or it was completed before.
        case gone
    }

    /// Complete a held operation. A permit re-injects the captured SYN (an outbound one: connect()
    /// returns about 0.2 ms later; an inbound one reaches the listener at once, R6.7) and forgets
    /// the entry; a block keeps the entry (every retransmission stays dropped until the socket
    /// goes) and refuses the connection with a forged RST or ICMP error, sent to whichever end
    /// sent the SYN. Datagrams held meanwhile are lost (R6.5). `done` runs once the refusal is
    /// sent or given up.
    @discardableResult
    public func complete(
        _ key: HeldFlowKey, _ verdict: HeldVerdict, filterId: UInt64? = nil,
        done: (@Sendable (Int32?) -> Void)? = nil
    ) throws -> Outcome {
        guard var pend = try maps.pends.lookup(key: key.raw, as: lfp_pend.self) else {
            done?(nil)
            return .gone
        }
        let action: UInt32
        switch verdict {
        case .permit:
            action = LFP_ACTION_PERMIT.rawValue
            pend.state = UInt8(LFP_PEND_PERMIT.rawValue)
        case .block:
            action = LFP_ACTION_BLOCK.rawValue
            pend.state = UInt8(LFP_PEND_BLOCK.rawValue)
        }
        try maps.pends.update(key: key.raw, value: pend, flags: 2 /* BPF_EXIST: never recreate an entry its release removed */)
        // The flow's verdict for later datagrams (sendmsg) and replies (ingress).
        var flow = lfp_flow()
        flow.filter_id = filterId ?? pend.filter_id
        flow.generation = UInt32(truncatingIfNeeded: pend.generation)
        flow.action = UInt8(action)
        if case .block(let e) = verdict { flow.block_errno = UInt8(clamping: max(e, 1)) }
        // Inbound (AUTH_RECV_ACCEPT) flows are held by their lfp_flows entry; outbound TCP by
        // the pend entry alone.
        let inbound = UInt32(pend.layer) == LFP_LAYER_AUTH_RECV_ACCEPT_V4.rawValue || UInt32(pend.layer) == LFP_LAYER_AUTH_RECV_ACCEPT_V6.rawValue
        if pend.protocol != PacketForge.tcp || inbound { try maps.flows.update(key: key.raw, value: flow) }

        // A socket with a mark, a bound device or a TCP-MD5/AO key: its SYN cannot be re-sent by
        // the daemon's raw socket (LFP_PEND_F_KERNEL_RETRY).
        let kernelRetry = UInt32(pend.flags) & LFP_PEND_F_KERNEL_RETRY != 0
        switch verdict {
        case .permit:
            if pend.protocol == PacketForge.tcp, !kernelRetry, let syn = Self.captured(pend) {
                let held = Int64(Self.monotonicNs() &- pend.packet_ns) / 1_000_000
                if let resumed = PacketForge.resumedSYN(syn, heldMilliseconds: held) {
                    try? injector.send(resumed)  // if this fails, the kernel's retransmission goes
                }
            }
            try maps.pends.delete(key: key.raw)
            done?(nil)
            return .completed(refusal: nil)
        case .block:
            guard pend.protocol == PacketForge.tcp else {
                done?(nil)
                return .completed(refusal: nil)
            }
            if kernelRetry {
                // No forged packet reaches it for sure (a device-bound socket ignores an ICMP
                // error arriving on lo): the reauthorization pass destroys it (ECONNABORTED).
                try maps.destroy.update(key: key.cookie, value: UInt8(1))
                let r = engine.reauthorize()
                done?(r.endedConnections > 0 ? ECONNABORTED : nil)
                return .completed(refusal: r.endedConnections > 0 ? ECONNABORTED : nil)
            }
            if let sent = refuse(key) {
                done?(sent)
                return .completed(refusal: sent)
            }
            retryRefusal(key, left: Self.captureRetries, done: done)
            return .completed(refusal: nil)
        }
    }

    /// Forge the refusal from the captured SYN: the peer's RST, so connect() fails with
    /// ECONNREFUSED; nil when no SYN is captured yet. A RST rather than an ICMP error: the
    /// socket's backlog takes a RST even while the socket is busy in a system call, while an ICMP
    /// error then becomes a soft error, and in repeated trials about 4 % of connects refused by
    /// ICMP ended closed without an errno (docs/callouts.md).
    private func refuse(_ key: HeldFlowKey) -> Int32? {
        guard let pend = try? maps.pends.lookup(key: key.raw, as: lfp_pend.self), let syn = Self.captured(pend),
            let packet = PacketForge.refusal(of: syn)
        else { return nil }
        return (try? injector.send(packet)) == nil ? nil : ECONNREFUSED
    }

    private func retryRefusal(_ key: HeldFlowKey, left: Int, done: (@Sendable (Int32?) -> Void)?) {
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.captureRetryInterval) { [self] in
            guard (try? maps.pends.lookup(key: key.raw, as: lfp_pend.self)) != nil else {
                done?(nil)  // released meanwhile: nothing left to refuse
                return
            }
            if let sent = refuse(key) {
                done?(sent)
            } else if left > 1 {
                retryRefusal(key, left: left - 1, done: done)
            } else {
                done?(nil)  // stays held and dropped until the application gives up
            }
        }
    }

    /// End a live connection (a callout blocked it when a commit reauthorized it): the
    /// reauthorization iterators destroy it (ECONNABORTED). Returns whether one was ended.
    @discardableResult
    public func end(cookie: UInt64) throws -> Bool {
        try maps.destroy.update(key: cookie, value: UInt8(1))
        let r = engine.reauthorize()
        try? maps.destroy.delete(key: cookie)  // gone already, or not found by the pass
        return r.endedConnections > 0
    }

    static func captured(_ p: lfp_pend) -> [UInt8]? {
        guard p.packet_ns != 0, p.packet_len >= 20, Int(p.packet_len) <= Int(LFP_PEND_CAPTURE) else { return nil }
        return withUnsafeBytes(of: p.packet) { Array($0.prefix(Int(p.packet_len))) }
    }

    /// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns() (lfp_pend, lfp_event).
    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

extension HeldOperation {
    init(key: HeldFlowKey, pend: lfp_pend) {
        self.key = key
        filterId = pend.filter_id
        generation = pend.generation
        startNs = pend.start_ns
        ipProtocol = pend.protocol
        layerID = pend.layer
        waiting = UInt32(pend.state) == LFP_PEND_WAITING.rawValue
        kernelRetry = UInt32(pend.flags) & LFP_PEND_F_KERNEL_RETRY != 0
    }
}

extension Engine {
    /// The operations the kernel holds for callouts, and the means to complete them.
    public func heldOperations() throws -> HeldOperations {
        try requireRoot("complete held operations")
        return HeldOperations(maps: try KernelMaps.open(config, create: false), engine: self)
    }
}
