import Foundation

/// The packets that complete a held TCP connect (docs/kernel-mechanisms.md §1-2, variant F):
/// the SYN the kernel kept, made current again, and the refusals a peer or a router could send.
/// Pure byte work on IPv4/IPv6 packets without extension headers, as cgroup_skb/egress captured
/// them (from the IP header); `RawInjector` sends them.
public enum PacketForge {
    static let tcp: UInt8 = 6
    static let icmp: UInt8 = 1

    static func isV4(_ p: [UInt8]) -> Bool { !p.isEmpty && p[0] >> 4 == 4 }
    static func l3Length(_ p: [UInt8]) -> Int { isV4(p) ? Int(p[0] & 0xf) * 4 : 40 }

    /// The captured SYN ready to be sent again: its TCP timestamp advanced by the time it spent
    /// held, less 1 ms and never backwards (the SYN-ACK's TSecr must pass the SYN-SENT PAWS check
    /// and give a sane RTT sample), and its checksum computed in full (a loopback skb carries
    /// CHECKSUM_PARTIAL at egress). nil when the bytes are not a whole TCP SYN.
    public static func resumedSYN(_ captured: [UInt8], heldMilliseconds: Int64) -> [UInt8]? {
        var p = captured
        let l3 = l3Length(p)
        guard p.count >= l3 + 20, protocolOf(p) == tcp, p[l3 + 13] & 0x02 != 0 else { return nil }
        let doff = Int(p[l3 + 12] >> 4) * 4
        guard doff >= 20, l3 + doff <= p.count else { return nil }
        let advance = UInt32(truncatingIfNeeded: max(heldMilliseconds - 1, 0))
        var i = l3 + 20
        while i < l3 + doff {
            let kind = p[i]
            if kind == 0 { break }
            if kind == 1 {
                i += 1
                continue
            }
            guard i + 1 < l3 + doff, p[i + 1] >= 2 else { break }
            if kind == 8, i + 10 <= l3 + doff {
                let tsval = readBE32(p, i + 2) &+ advance
                writeBE32(&p, i + 2, tsval)
            }
            i += Int(p[i + 1])
        }
        fixChecksum(&p)
        return p
    }

    /// The refusal of a held connection: a RST|ACK from the SYN's destination acknowledging
    /// it, so the connect fails with ECONNREFUSED (tcp_reset in SYN_SENT). nil when the bytes are
    /// not a TCP packet.
    public static func refusal(of syn: [UInt8]) -> [UInt8]? {
        let l3 = l3Length(syn)
        guard syn.count >= l3 + 20, protocolOf(syn) == tcp else { return nil }
        return rst(syn)
    }

    /// RST|ACK from the peer acknowledging the SYN (ack = ISN + 1): ECONNREFUSED.
    static func rst(_ syn: [UInt8]) -> [UInt8] {
        let l3 = l3Length(syn)
        var p = ipHeader(replyTo: syn, protocol: tcp, payload: 20)
        var t = [UInt8](repeating: 0, count: 20)
        t[0] = syn[l3 + 2]
        t[1] = syn[l3 + 3]  // source port = the SYN's destination port
        t[2] = syn[l3]
        t[3] = syn[l3 + 1]
        writeBE32(&t, 8, readBE32(syn, l3 + 4) &+ 1)
        t[12] = 5 << 4
        t[13] = 0x14  // RST|ACK
        p += t
        fixChecksum(&p)
        return p
    }

    /// An IP header from the SYN's destination back to its source.
    static func ipHeader(replyTo s: [UInt8], protocol proto: UInt8, payload: Int) -> [UInt8] {
        if isV4(s) {
            var h = [UInt8](repeating: 0, count: 20)
            h[0] = 0x45
            h[2] = UInt8((20 + payload) >> 8)
            h[3] = UInt8((20 + payload) & 0xff)
            h[8] = 64
            h[9] = proto
            h[12..<16] = s[16..<20]
            h[16..<20] = s[12..<16]
            return h  // the kernel fills the header checksum of a raw IPPROTO_RAW send
        }
        var h = [UInt8](repeating: 0, count: 40)
        h[0] = 0x60
        h[4] = UInt8(payload >> 8)
        h[5] = UInt8(payload & 0xff)
        h[6] = proto
        h[7] = 64
        h[8..<24] = s[24..<40]
        h[24..<40] = s[8..<24]
        return h
    }

    static func protocolOf(_ p: [UInt8]) -> UInt8 { isV4(p) ? (p.count > 9 ? p[9] : 0) : (p.count > 6 ? p[6] : 0) }

    /// The transport checksum of a TCP, ICMP or ICMPv6 packet, computed in place.
    static func fixChecksum(_ p: inout [UInt8]) {
        let l3 = l3Length(p)
        let proto = protocolOf(p)
        let l4 = p.count - l3
        let offset = l3 + (proto == tcp ? 16 : 2)
        guard p.count >= offset + 2 else { return }
        p[offset] = 0
        p[offset + 1] = 0
        var sum: UInt32 = 0
        if proto != icmp {  // ICMPv4 has no pseudo-header
            if isV4(p) { sum = add(sum, p[12..<20]) } else { sum = add(sum, p[8..<40]) }
            sum = add(sum, [0, proto, UInt8(l4 >> 8), UInt8(l4 & 0xff)])
        }
        sum = add(sum, p[l3...])
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        let c = ~UInt16(sum)
        p[offset] = UInt8(c >> 8)
        p[offset + 1] = UInt8(c & 0xff)
    }

    static func add<C: Collection>(_ sum: UInt32, _ bytes: C) -> UInt32 where C.Element == UInt8 {
        var s = sum
        var hi = true
        for b in bytes {
            s &+= hi ? UInt32(b) << 8 : UInt32(b)
            hi.toggle()
        }
        return s
    }

    static func readBE32(_ p: [UInt8], _ i: Int) -> UInt32 {
        UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3])
    }

    static func writeBE32(_ p: inout [UInt8], _ i: Int, _ v: UInt32) {
        p[i] = UInt8(v >> 24)
        p[i + 1] = UInt8((v >> 16) & 0xff)
        p[i + 2] = UInt8((v >> 8) & 0xff)
        p[i + 3] = UInt8(v & 0xff)
    }
}

/// Raw IPPROTO_RAW sockets that send forged packets into this network namespace. The daemon's
/// own packets are not held: egress holds only packets of a pended socket, and these sockets
/// never are.
final class RawInjector: @unchecked Sendable {
    private let lock = NSLock()
    private var fd4: Int32 = -1
    private var fd6: Int32 = -1

    deinit {
        if fd4 >= 0 { close(fd4) }
        if fd6 >= 0 { close(fd6) }
    }

    /// Send one IP packet (header included); throws the errno of socket() or sendto().
    func send(_ packet: [UInt8]) throws {
        let v4 = PacketForge.isV4(packet)
        let fd: Int32 = try lock.withLock {
            if v4, fd4 < 0 { fd4 = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW)) }
            if !v4, fd6 < 0 { fd6 = socket(AF_INET6, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW)) }
            let fd = v4 ? fd4 : fd6
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            return fd
        }
        let sent: Int = packet.withUnsafeBytes { bytes in
            if v4 {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes[16..<20]) }
                return withUnsafePointer(to: &sin) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes[24..<40]) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        if sent < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
