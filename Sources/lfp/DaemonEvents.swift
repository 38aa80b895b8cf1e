// `lfp events` through the daemon: its history (--since) and live tails fanned out from the
// daemon's one kernel subscription.

import ArgumentParser
import FilterEngine
import FilterModel
import Foundation
import LFPClient

extension DaemonRoute {
    static var isRunning: Bool { DaemonLock.holder(EngineConfiguration.fromEnvironment()) != nil }
}

struct DaemonEvents {
    let command: EventsCommand

    /// The JSON of event `sequence` from the daemon's history (`lfp classify --event SEQ`).
    static func recorded(sequence: UInt64) throws -> String {
        let session = try DaemonRoute.required("lfp classify --event")
        let needle = "\"sequence\":\(sequence),"
        guard let e = try session.netEvents(since: Date(timeIntervalSince1970: 0)).last(where: { $0.json.contains(needle) }) else {
            throw EngineError.noSuchEvent(sequence)
        }
        return e.json
    }

    /// "90s", "10m", "2h", "1d" or plain seconds.
    static func seconds(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let u = text.last, let mult = units[u], let n = Double(text.dropLast()), n >= 0 { return n * mult }
        return Double(text).flatMap { $0 >= 0 ? $0 : nil }
    }

    /// Whether an event (its JSON object) passes --layer and --workload.
    func wanted(_ json: String) -> Bool {
        guard command.layer != nil || command.workload != nil else { return true }
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return false }
        if let l = command.layer, let want = Layer(name: l), o["layer"] as? String != want.name { return false }
        if let w = command.workload, o["workload"] as? String != w { return false }
        return true
    }

    func emit(_ e: LFPSession.NetEvent) throws -> Bool {
        try StreamOutput.write(Data(((command.json ? e.json : e.text) + "\n").utf8))
    }

    func run() async throws {
        guard let session = try DaemonRoute.session(name: "lfp events") else {
            throw LFPClientError.daemonNotRunning(socket: "(none)")
        }
        StreamOutput.deferBrokenPipe()
        if let since = command.since {
            var n = 0
            for e in try session.netEvents(since: Date().addingTimeInterval(-(Self.seconds(since) ?? 0))) where wanted(e.json) {
                guard try emit(e) else { StreamOutput.exitForBrokenPipe() }
                n += 1
                if let c = command.count, n >= c { break }
            }
            return
        }
        let (stream, continuation) = AsyncStream<LFPSession.NetEvent?>.makeStream()
        try session.subscribeNetEvents { continuation.yield($0) }
        let limit = command.duration ?? (command.follow ? nil : 1.0)
        if let limit { DispatchQueue.global().asyncAfter(deadline: .now() + limit) { continuation.finish() } }
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { continuation.finish() }
            s.resume()
            return s
        }
        defer { sources.forEach { $0.cancel() } }
        var seen = 0
        for await item in stream {
            guard let e = item else { break }  // the daemon went away
            guard wanted(e.json) else { continue }
            guard try emit(e) else { StreamOutput.exitForBrokenPipe() }
            seen += 1
            if let c = command.count, seen >= c { break }
        }
        session.close()
    }
}
