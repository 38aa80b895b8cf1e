// The daemon's socket: SwiftNIO on a Unix stream socket, length-prefixed JSON frames
// (NIOExtras' LengthFieldBasedFrameDecoder and LengthFieldPrepender), root peers only.

import FilterEngine
import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceProtocol

/// struct ucred (SO_PEERCRED), which Glibc's module does not export without _GNU_SOURCE.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// One connection: checks the peer (SO_PEERCRED), then hands requests to the service.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: FilterService
    private var client: UInt64?

    init(service: FilterService) { self.service = service }

    static func encode(_ reply: Reply, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        let data = (try? JSONEncoder().encode(reply)) ?? Data("{\"id\":0}".utf8)
        var b = allocator.buffer(capacity: data.count)
        b.writeBytes(data)
        return b
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let loop = context.eventLoop
        guard let provider = channel as? SocketOptionProvider else {
            context.close(promise: nil)
            return
        }
        let creds: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        creds.whenComplete { [self] result in
            guard case .success(let c) = result else {
                channel.close(promise: nil)
                return
            }
            let peer = Peer(pid: c.pid, uid: c.uid, gid: c.gid)
            // Only root manages the engine (the socket is 0600 as well; this holds even if an
            // operator loosens the file mode).
            guard c.uid == 0 else {
                service.audit.warning("refused a peer that is not root", metadata: ["peer": "\(peer)"])
                var r = Reply(id: 0)
                r.error = WireError(code: "LFP_E_ACCESS_DENIED", message: "only root may use the lfp daemon (peer uid \(c.uid))")
                channel.writeAndFlush(Self.encode(r, channel.allocator)).whenComplete { _ in channel.close(promise: nil) }
                return
            }
            let id = service.connect(
                peer: peer,
                send: { reply in
                    loop.execute { channel.writeAndFlush(ConnectionHandler.encode(reply, channel.allocator), promise: nil) }
                },
                writable: { channel.isWritable })
            loop.execute {
                self.client = id
                channel.read()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let client else { return }  // frames before the peer check are dropped
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        do {
            service.receive(client, try JSONDecoder().decode(Request.self, from: Data(bytes)))
        } catch {
            service.malformed(client, "\(error)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let client { service.disconnect(client) }
        self.client = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A framing error (a length past the limit): tell the peer, then drop the connection.
        if let client { service.malformed(client, "\(error)") }
        context.close(promise: nil)
    }
}

/// Drops frames longer than the protocol allows before they are buffered whole.
final class FrameLimit: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    struct TooLarge: Error, CustomStringConvertible {
        var length: Int
        var description: String { "a frame of \(length) bytes exceeds the limit (\(WireProtocol.maxFrameBytes))" }
    }
    private var pending = 0  // bytes of the current frame still to pass
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        // Checks each length prefix as it passes; frames may span reads.
        var view = b
        while view.readableBytes > 0 {
            if pending > 0 {
                let n = min(pending, view.readableBytes)
                view.moveReaderIndex(forwardBy: n)
                pending -= n
                continue
            }
            guard let len = view.readInteger(as: UInt32.self) else { break }  // a split prefix: rare, let it pass
            if Int(len) > WireProtocol.maxFrameBytes {
                context.fireErrorCaught(TooLarge(length: Int(len)))
                b.clear()
                return
            }
            pending = Int(len)
        }
        context.fireChannelRead(wrapInboundOut(b))
    }
}

/// The listening socket.
public final class DaemonServer {
    let group: MultiThreadedEventLoopGroup
    let channel: Channel
    public let path: String

    public init(service: FilterService, path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 128)
            .childChannelOption(ChannelOptions.autoRead, value: true)
            // A client more than 4 MiB behind is not writable: pushed events to it are dropped
            // and counted (netEventsLost), replies still queue.
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 1 << 20, high: 4 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        FrameLimit(),
                        ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes)),
                        LengthFieldPrepender(lengthFieldBitLength: .fourBytes),
                        ConnectionHandler(service: service),
                    ])
                }
            }
        // Created 0600 from the start (umask), so there is no moment a non-root peer could
        // connect.
        let old = umask(0o177)
        defer { umask(old) }
        channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
    }

    /// Runs until the channel closes (`stop`, or a signal handler that calls it).
    public func wait() throws { try channel.closeFuture.wait() }

    public func stop() {
        channel.close(promise: nil)
    }

    deinit {
        try? group.syncShutdownGracefully()
        unlink(path)
    }
}
