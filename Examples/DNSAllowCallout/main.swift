// An example callout (docs/callouts.md): permit connections only to the addresses a DNS name
// resolves to. Run it as root next to `lfp daemon`:
//
//   lfp-example-dns-callout <calloutKey> <dns-name> [--ttl SECONDS]
//
// and name its calloutKey in a terminating callout filter, e.g.
//
//   filters:
//     - displayData: { name: only example.com for curl }
//       layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
//       filterCondition:
//         - { fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: /usr/bin/curl } }
//       action: { type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: <calloutKey> }
//
// It shows the three things a real callout does: answer at once when it knows (the name's
// addresses are cached and fresh), pend when it must wait for something slow (a DNS lookup:
// FwpsPendOperation0), and answer the reauthorization that follows its completion from the
// state it kept per endpoint handle (R6.5).

import Foundation
import LFPClient

struct Options {
    var key: UUID
    var name: String
    var ttl: TimeInterval = 30

    static func parse(_ args: [String]) -> Options? {
        guard args.count >= 2, let key = UUID(uuidString: args[0]) else { return nil }
        var o = Options(key: key, name: args[1])
        if let i = args.firstIndex(of: "--ttl"), i + 1 < args.count, let t = TimeInterval(args[i + 1]) { o.ttl = t }
        return o
    }
}

/// The name's addresses, looked up at most once per TTL.
final class Resolver: @unchecked Sendable {
    let name: String
    let ttl: TimeInterval
    private let lock = NSLock()
    private var addresses: Set<String> = []
    private var fetched = Date.distantPast

    init(name: String, ttl: TimeInterval) {
        self.name = name
        self.ttl = ttl
    }

    /// The cached addresses, or nil when they are stale.
    var fresh: Set<String>? {
        lock.withLock { Date().timeIntervalSince(fetched) < ttl ? addresses : nil }
    }

    /// Look the name up (getaddrinfo: slow, so never on the classify path).
    func refresh() -> Set<String> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        var found: Set<String> = []
        if getaddrinfo(name, nil, &hints, &res) == 0 {
            var p = res
            while let ai = p {
                var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(ai.pointee.ai_addr, ai.pointee.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                    found.insert(String(cString: host))
                }
                p = ai.pointee.ai_next
            }
            freeaddrinfo(res)
        }
        lock.withLock {
            addresses = found
            fetched = Date()
        }
        return found
    }
}

guard let options = Options.parse(Array(CommandLine.arguments.dropFirst())) else {
    FileHandle.standardError.write(Data("usage: lfp-example-dns-callout <calloutKey> <dns-name> [--ttl SECONDS]\n".utf8))
    exit(2)
}
let resolver = Resolver(name: options.name, ttl: options.ttl)
/// Decisions taken while an operation was pended, by endpoint handle, for its reauthorization.
let decided = NSLock()
nonisolated(unsafe) var decisions: [UInt64: Bool] = [:]
let lookups = DispatchQueue(label: "dns lookups", attributes: .concurrent)

do {
    let session = try LFPSession.open(name: "dns-allow callout")
    let id = try session.registerCallout(key: options.key) { request in
        let remote = request.fields["FWPM_CONDITION_IP_REMOTE_ADDRESS"] ?? ""
        if request.isReauthorization, let h = request.endpointHandle {
            let permit = decided.withLock { decisions.removeValue(forKey: h) } ?? false
            return permit ? .permit() : .block
        }
        if let known = resolver.fresh {
            return known.contains(remote) ? .permit() : .block
        }
        // Stale: pend, look the name up off the classify path, then complete.
        guard let op = try? request.pendOperation(), let h = request.endpointHandle else {
            return resolver.refresh().contains(remote) ? .permit() : .block  // cannot pend: answer now
        }
        lookups.async {
            let permit = resolver.refresh().contains(remote)
            decided.withLock { decisions[h] = permit }
            try? op.complete()
        }
        return .pend(op)
    }
    print("dns-allow callout \(options.key.uuidString.lowercased()) registered as calloutId \(id): permitting \(options.name)")
    fflush(stdout)
    dispatchMain()
} catch {
    FileHandle.standardError.write(Data("lfp-example-dns-callout: \(error)\n".utf8))
    exit(1)
}
