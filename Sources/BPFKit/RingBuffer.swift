import CLibBPF
import Foundation

/// Consumes one BPF ring buffer on a dedicated thread (never on the concurrency pool: the poll
/// blocks). Producers use batched wake-ups, so the thread also drains on every timeout:
/// `ring_buffer__poll` alone never consumes a ring that was not woken (docs/kernel-mechanisms.md §5).
public final class RingBufferReader: @unchecked Sendable {
    public typealias Handler = (UnsafeRawBufferPointer) -> Void

    private final class Box {
        let handler: Handler
        init(_ handler: @escaping Handler) { self.handler = handler }
    }

    private let ring: BPFMap
    private let rb: OpaquePointer
    private let box: Box
    private let onRoundEnd: (() -> Void)?
    private let lock = NSLock()
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    public let pollTimeoutMs: Int32

    /// - Parameters:
    ///   - ring: a BPF_MAP_TYPE_RINGBUF map (kept alive by the reader).
    ///   - pollTimeoutMs: the longest an event waits in a quiet ring before it is delivered.
    ///   - handler: called on the reader thread for every record, in ring order.
    ///   - onRoundEnd: called on the reader thread after each drain round, so a consumer can
    ///     hand over a whole batch at once instead of synchronising per record.
    public init(
        ring: BPFMap, pollTimeoutMs: Int32 = 50, handler: @escaping Handler,
        onRoundEnd: (() -> Void)? = nil
    ) throws {
        self.ring = ring
        self.box = Box(handler)
        self.onRoundEnd = onRoundEnd
        self.pollTimeoutMs = pollTimeoutMs
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        rb = try bpfPointer("ring_buffer__new", ring.name) {
            ring_buffer__new(
                ring.fd,
                { ctx, data, size in
                    guard let ctx, let data else { return 0 }
                    let box = Unmanaged<Box>.fromOpaque(ctx).takeUnretainedValue()
                    box.handler(UnsafeRawBufferPointer(start: data, count: size))
                    return 0
                }, ctx, nil)
        }
    }

    deinit {
        stop()
        ring_buffer__free(rb)
    }

    /// Start the reader thread.
    public func start() {
        lock.lock(); defer { lock.unlock() }
        guard thread == nil else { return }
        let t = Thread { [self] in
            while !isStopping {
                _ = ring_buffer__poll(rb, pollTimeoutMs)
                _ = ring_buffer__consume(rb)
                onRoundEnd?()
            }
            _ = ring_buffer__consume(rb)  // what arrived before stop() is still delivered
            onRoundEnd?()
            finished.signal()
        }
        t.name = "lfp-ring-\(ring.name)"
        thread = t
        t.start()
    }

    private var isStopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopping
    }

    /// Stop the thread after a final drain; returns when it has exited.
    public func stop() {
        lock.lock()
        let running = thread != nil && !stopping
        stopping = true
        lock.unlock()
        if running { finished.wait() }
    }
}
