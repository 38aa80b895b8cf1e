// The client's end of the daemon's socket (SwiftNIO, the same framing as the daemon).

import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import ServiceProtocol

/// Errors of the client itself; the daemon's refusals arrive as FWPError (WFP codes) or
/// `remote` (lfp's codes).
public enum LFPClientError: Error, Equatable, CustomStringConvertible {
    /// No daemon listens on the socket.
    case daemonNotRunning(socket: String)
    /// The daemon answered with an error that has no WFP code (LFP_E_*).
    case remote(WireError)
    /// The connection ended before the answer.
    case connectionLost
    /// No answer within the time a request may take.
    case timedOut(seconds: Int)

    public var code: String {
        switch self {
        case .daemonNotRunning: return "LFP_E_NO_DAEMON"
        case .remote(let e): return e.code
        case .connectionLost: return "LFP_E_CONNECTION_LOST"
        case .timedOut: return "LFP_E_TIMEOUT"
        }
    }

    public var description: String {
        switch self {
        case .daemonNotRunning(let s): return "no lfp daemon listens on \(s) (start it with `lfp daemon`)"
        case .remote(let e): return e.description
        case .connectionLost: return "the lfp daemon closed the connection"
        case .timedOut(let s): return "the lfp daemon did not answer within \(s) s"
        }
    }
}

final class ReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NSLock()
    private var pending: [UInt64: EventLoopPromise<Reply>] = [:]
    private var closed = false
    var onPush: (@Sendable (Reply) -> Void)?
    /// Pushes for a callout host (invocations, notifications, flow deletions, prompts).
    var onCalloutPush: (@Sendable (Reply) -> Void)?

    func expect(_ id: UInt64, _ promise: EventLoopPromise<Reply>) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if closed { return false }
        pending[id] = promise
        return true
    }

    private func take(_ id: UInt64) -> EventLoopPromise<Reply>? {
        lock.lock(); defer { lock.unlock() }
        return pending.removeValue(forKey: id)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        guard let bytes = b.readBytes(length: b.readableBytes), let reply = try? JSONDecoder().decode(Reply.self, from: Data(bytes)) else {
            return
        }
        if reply.id != 0, let p = take(reply.id) {
            p.succeed(reply)
        } else if reply.id == 0, reply.error != nil {
            // A refusal of the connection or of a frame: it answers whatever waits.
            lock.lock()
            let all = pending
            pending = [:]
            lock.unlock()
            for p in all.values { p.succeed(reply) }
            if all.isEmpty { onPush?(reply) }
        } else if reply.invocation != nil || reply.notification != nil || reply.flowDeleted != nil || reply.prompt != nil {
            onCalloutPush?(reply)
        } else {
            onPush?(reply)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        lock.lock()
        closed = true
        let all = pending
        pending = [:]
        lock.unlock()
        for p in all.values { p.fail(LFPClientError.connectionLost) }
        onPush?(Reply(id: UInt64.max))  // end of pushes
        onCalloutPush?(Reply(id: UInt64.max))
    }
}

/// One connection: numbered requests, replies matched by id, pushes to a handler.
final class Connection: @unchecked Sendable {
    let channel: Channel
    let handler: ReplyHandler
    private let lock = NSLock()
    private var nextId: UInt64 = 1
    let requestTimeout: Int

    init(socket: String, requestTimeout: Int) throws {
        self.requestTimeout = requestTimeout
        let handler = ReplyHandler()
        self.handler = handler
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes)),
                        LengthFieldPrepender(lengthFieldBitLength: .fourBytes),
                        handler,
                    ])
                }
            }
        do {
            channel = try bootstrap.connect(unixDomainSocketPath: socket).wait()
        } catch {
            throw LFPClientError.daemonNotRunning(socket: socket)
        }
    }

    /// Sends `request` and waits for its reply (at most `requestTimeout` seconds).
    func call(_ request: Request) throws -> Reply {
        var r = request
        lock.lock()
        r.id = nextId
        nextId += 1
        lock.unlock()
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        guard handler.expect(r.id, promise) else {
            promise.fail(LFPClientError.connectionLost)  // a promise must be completed (NIO checks)
            throw LFPClientError.connectionLost
        }
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(Int64(requestTimeout))) { [requestTimeout] in
            promise.fail(LFPClientError.timedOut(seconds: requestTimeout))
        }
        let data = try JSONEncoder().encode(r)
        var b = channel.allocator.buffer(capacity: data.count)
        b.writeBytes(data)
        channel.writeAndFlush(b, promise: nil)
        defer { timeout.cancel() }
        return try promise.futureResult.wait()
    }

    /// Send `request` without waiting for a reply (a callout's answer has none).
    func post(_ request: Request) {
        guard let data = try? JSONEncoder().encode(request) else { return }
        var b = channel.allocator.buffer(capacity: data.count)
        b.writeBytes(data)
        channel.writeAndFlush(b, promise: nil)
    }

    func close() {
        try? channel.close().wait()
    }
}
