// `lfp daemon`: take the daemon lock, restore the engine, read the kernel's events once and fan
// them out, and serve the socket until SIGTERM or SIGINT.

import FilterEngine
import FilterModel
import Foundation
import KernelABI
import Logging
import ServiceProtocol

public enum Daemon {
    /// Runs the daemon; returns when it is told to stop. `ready` runs once the socket accepts
    /// connections (the CLI prints it; systemd's Type=notify is not needed for a socket).
    public static func run(engine: Engine, options: DaemonOptions, logger: Logger, ready: () -> Void = {}) throws {
        let lock = try DaemonLock(engine.config, socket: options.socketPath)
        defer { withExtendedLifetime(lock) {} }
        let service = try FilterService(engine: engine, options: options, logger: logger)
        try service.start()
        if let dir = options.policyDirectory {
            let d = PolicyDirectory(path: dir, service: service)
            service.policyDirectory = d
            try d.start()
        }
        let pump = try service.startEventPump()
        defer { pump.cancel() }
        // Lost pins must not end enforcement: hold every pinned object, pin again what goes
        // missing (PinKeeper), every second.
        let pinTimer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "lfp.daemon.pins"))
        pinTimer.schedule(deadline: .now(), repeating: .seconds(1))
        pinTimer.setEventHandler {
            do {
                let again = try service.pins.check()
                if !again.isEmpty { service.audit.warning("pins were lost: pinned again", metadata: ["paths": "\(again)"]) }
            } catch {
                logger.error("checking lfp's pins failed", metadata: ["error": "\(error)"])
            }
        }
        pinTimer.resume()
        defer { pinTimer.cancel() }
        let server = try DaemonServer(service: service, path: options.socketPath)
        let metricsServer = try options.metricsAddress.map { try MetricsServer(service: service, address: $0) }
        defer { metricsServer?.stop() }
        let signals = [SIGTERM, SIGINT, SIGHUP].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { server.stop() }
            s.resume()
            return s
        }
        defer { signals.forEach { $0.cancel() } }
        logger.notice("listening", metadata: ["socket": "\(options.socketPath)", "pid": "\(getpid())"])
        ready()
        try server.wait()
        logger.notice("stopping")
    }
}

extension FilterService {
    /// One kernel subscription for the daemon: each event crosses into userspace once, then
    /// goes to the history and to every client that subscribed (FwpmNetEventSubscribe0).
    func startEventPump() throws -> EventSubscription {
        let sub = try engine.subscribe()
        Task.detached { [self] in
            for await e in sub.events {
                if e.isPended {
                    dispatcher.kernelHeld(e)  // its verdict is delivered when it completes
                } else if let l = e.layer {
                    if e.raw.kind == UInt8(LFP_EV_CLASSIFY.rawValue), dispatcher.inspected.withLockedValue({ $0.contains(l) }) {
                        dispatcher.inspect(e)
                    }
                    if dispatcher.notified.withLockedValue({ $0.contains(l) }) { dispatcher.notification(e) }
                    if l.kind == .resourceRelease {
                        if dispatcher.deferTeardown(e) { continue }  // its closure is pended
                        finishTeardown(e)
                        continue
                    }
                }
                deliver(e)
            }
        }
        return sub
    }

    /// An endpoint's RESOURCE_RELEASE: the flowDeleteFn calls of its flow contexts (R5.16), then
    /// the event.
    func finishTeardown(_ e: ALEEvent) {
        bfe.flowEnded(flowId: e.transportEndpointHandle)  // one lookup; nothing to do for most flows
        deliver(e)
    }

    /// Events as JSON (`lfp events --json`, sorted keys): configured once, shared by the pump and
    /// the callout dispatcher (encoding does not change it).
    static let eventEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    /// One event to the counters, the history and the subscribers.
    func deliver(_ e: ALEEvent) {
        // Each event is one classification at its layer; its filterId decided it.
        let listening = pump.withLockedValue { p in
            if e.filterId != 0 && !e.isPended { p.hits[e.filterId, default: 0] += 1 }
            p.read += 1
            return p.subscribers > 0
        }
        metrics.classified(layer: e.layer?.name ?? "LFP_LAYER_\(e.layerID)", action: e.actionType)
        let keep = e.isBlock || history.keepAllows
        guard listening || keep, let data = try? Self.eventEncoder.encode(e) else { return }
        let json = String(decoding: data, as: UTF8.self)
        let text = e.render()
        if keep { history.append(json, text: text) }
        if listening { pushNetEvent(json, text) }
    }

    /// The verdict of a held operation, as the classify event of its reauthorization (or of its
    /// first classification when a callout answered at once): the kernel reported only the hold.
    func deliverDecision(_ held: ALEEvent, action: ActionType, filterId: UInt64, errno: Int32, reauthorized: Bool) {
        var raw = held.raw
        raw.action = UInt8(action == .block ? LFP_ACTION_BLOCK.rawValue : LFP_ACTION_PERMIT.rawValue)
        raw.filter_id = filterId
        raw.error = action == .block ? errno : 0
        if reauthorized { raw.cond_flags |= UInt32(LFP_FLAG_IS_REAUTHORIZE) }
        raw.ts_ns = HeldOperations.monotonicNs()
        var e = held
        e.raw = raw
        deliver(e)
    }

    private func pushNetEvent(_ json: String, _ text: String) {
        queue.async { [self] in
            var r = Reply(id: 0)
            r.netEvents = [json]
            r.netEventText = [text]
            for c in clients.values where c.netEvents {
                // A tail that stopped reading loses events (counted), it does not grow the daemon.
                guard c.writable() else {
                    c.eventsLost += 1
                    pump.withLockedValue { $0.lost += 1 }
                    continue
                }
                var mine = r
                if c.eventsLost > 0 { mine.netEventsLost = c.eventsLost }
                c.send(mine)
            }
        }
    }
}
