// Prometheus metrics of `lfp daemon --metrics HOST:PORT`: swift-metrics types backed by
// swift-prometheus's registry, served over HTTP by SwiftNIO (GET /metrics).
//
// Counted as they happen: classifications by layer and action, commits (a latency histogram).
// Read at each scrape: per-filter hits of the top filters, each ring's events submitted,
// delivered and dropped, map fill, and the workloads with their health.

import FilterEngine
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

final class DaemonMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let lock = NSLock()
    private var classifications: [String: Metrics.Counter] = [:]
    /// Kernel counters seen at the last scrape (swift-metrics counters only grow by deltas).
    private var lastRing: [String: UInt64] = [:]
    let commits: Metrics.Timer
    /// How many filters `lfp_filter_hits_total` shows (the most hit).
    static let topFilters = 20

    init() {
        var f = PrometheusMetricsFactory(registry: registry)
        f.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        factory = f
        commits = Metrics.Timer(label: "lfp_commit_seconds", factory: factory)
    }

    /// One classification the kernel reported (an event).
    func classified(layer: String, action: String) {
        let key = layer + "|" + action
        lock.lock()
        let c =
            classifications[key]
            ?? {
                let c = Metrics.Counter(label: "lfp_classifications_total", dimensions: [("layer", layer), ("action", action)], factory: factory)
                classifications[key] = c
                return c
            }()
        lock.unlock()
        c.increment()
    }

    /// The scrape: kernel and engine state read now, then the exposition text.
    func scrape(_ service: FilterService) -> [UInt8] {
        let pump = service.pump.withLockedValue { $0 }
        let hits = pump.counters.sorted { $0.hits > $1.hits }.prefix(Self.topFilters)
        for h in hits {
            Metrics.Gauge(label: "lfp_filter_hits", dimensions: [("filter_id", "\(h.filterId)")], factory: factory).record(Double(h.hits))
        }
        if let status = try? service.engine.status() {
            lock.lock()
            for s in status.subscribers {
                for (name, value) in [("submitted", s.submitted), ("dropped", s.dropped)] {
                    let key = "\(s.slot)|\(name)"
                    let delta = value &- (lastRing[key] ?? 0)
                    lastRing[key] = value
                    Metrics.Counter(label: "lfp_ring_events_\(name)_total", dimensions: [("ring", "\(s.slot)")], factory: factory)
                        .increment(by: Int64(clamping: delta))
                }
            }
            lock.unlock()
            for m in status.maps {
                Metrics.Gauge(label: "lfp_map_used", dimensions: [("map", m.name)], factory: factory).record(Double(m.used))
                Metrics.Gauge(label: "lfp_map_capacity", dimensions: [("map", m.name)], factory: factory).record(Double(m.capacity))
            }
            for w in status.workloads {
                Metrics.Gauge(label: "lfp_workload_healthy", dimensions: [("workload", w.name)], factory: factory).record(w.healthy ? 1 : 0)
            }
            Metrics.Gauge(label: "lfp_policy_generation", factory: factory).record(Double(status.policyGeneration))
        }
        // Events the daemon read from the kernel (once each) and events it dropped for tails
        // that did not read (each tail's loss is also in its own stream).
        Metrics.Gauge(label: "lfp_daemon_events_read", factory: factory).record(Double(pump.read))
        Metrics.Gauge(label: "lfp_daemon_events_lost_by_tails", factory: factory).record(Double(pump.lost))
        Metrics.Gauge(label: "lfp_sessions", factory: factory).record(Double(service.queue.sync { service.clients.values.filter { $0.session != nil }.count }))
        // Callouts (docs/callouts.md): operations the kernel held for them, completed, and
        // completed with the default verdict (pend timeout, host gone, nobody deciding).
        let pends = service.dispatcher.counts.withLockedValue { $0 }
        Metrics.Gauge(label: "lfp_callout_held_total", factory: factory).record(Double(pends.held))
        Metrics.Gauge(label: "lfp_callout_completed_total", factory: factory).record(Double(pends.completed))
        Metrics.Gauge(label: "lfp_callout_default_verdicts_total", factory: factory).record(Double(pends.timedOut))
        Metrics.Gauge(label: "lfp_callouts_registered", factory: factory).record(Double(service.hosting.withLockedValue { $0.callouts.count }))
        return registry.emitToBuffer()
    }
}

/// GET /metrics on the address the daemon was given.
final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let service: FilterService
    private var uri = ""

    init(service: FilterService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri = head.uri
        case .body: break
        case .end:
            let found = uri == "/metrics"
            let body = found ? service.metrics.scrape(service) : Array("not found: try /metrics\n".utf8)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: "\(body.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers))), promise: nil)
            var b = context.channel.allocator.buffer(capacity: body.count)
            b.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(b))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }
}

final class MetricsServer {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let channel: Channel

    /// `address`: HOST:PORT (e.g. 127.0.0.1:9464).
    init(service: FilterService, address: String) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw WireMetricsError.badAddress(address)
        }
        let host = String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(service: service))
                }
            }
            .bind(host: host, port: port).wait()
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

enum WireMetricsError: Error, CustomStringConvertible {
    case badAddress(String)
    var description: String {
        switch self {
        case .badAddress(let a): return "--metrics: expected HOST:PORT (e.g. 127.0.0.1:9464), not '\(a)'"
        }
    }
}
