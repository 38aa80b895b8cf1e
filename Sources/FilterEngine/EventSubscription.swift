import BPFKit
import Foundation
import KernelABI

/// One event tail: its own ring buffer in a subscriber slot of lfp_subs. The kernel copies every
/// event into every subscriber's ring, so tails in different processes never steal each
/// other's events. A slot is owned through an flock on `<state>/subscribers/N.lock`: the kernel
/// drops the lock when the owner dies, so a crashed tail's slot is reclaimed by the next one.
public final class EventSubscription: @unchecked Sendable {
    public let slot: UInt32
    /// Every event, in ring order. Delivered in batches (one per drain round of the reader
    /// thread), so the thread that must keep up with the kernel never synchronises per event.
    public let events: ALEEventStream
    /// What the reader thread owns; the closures hold it, not the subscription, so a
    /// subscription released without cancel() can still stop its thread safely.
    private let sink = Sink()
    private let maps: KernelMaps
    private let ring: BPFMap
    private var reader: RingBufferReader?
    private let lockFD: Int32
    private let maskLock: String
    private let lock = NSLock()
    private var cancelled = false
    private var final: Accounting?

    /// Totals for this subscription's ring: every event the kernel tried to put in it was
    /// either received here or counted as dropped.
    public struct Accounting: Sendable, Equatable {
        public var submitted: UInt64  // sequence numbers handed out
        public var received: UInt64  // read from the ring (delivered + shed)
        public var dropped: UInt64  // per-CPU drop counters, summed
        /// Read from the ring but discarded here because the consumer fell more than
        /// `bufferEvents` behind: the tail's memory stays bounded and the kernel never waits.
        public var shed: UInt64 = 0
    }

    /// Events held for a consumer that has not taken them yet, at most.
    public let bufferEvents: Int

    init(
        config: EngineConfiguration, maps: KernelMaps, ringBytes: UInt32, pollTimeoutMs: Int32, bufferEvents: Int,
        decorate: @escaping @Sendable (inout [ALEEvent]) -> Void
    ) throws {
        self.maps = maps
        self.bufferEvents = bufferEvents
        try StateTree.makeDirectory(config.subscriberLocks)  // in the state directory subscribe() checked
        var claimed: (UInt32, Int32)?
        // Another tail starting at the same moment holds every free slot's lock for an instant
        // while it sweeps: try a few times before calling the slots full.
        for attempt in 0..<20 where claimed == nil {
            if attempt > 0 { usleep(10_000) }
            for s in 0..<UInt32(LFP_MAX_SUBSCRIBERS) {
                let fd = open(config.subscriberLocks + "/\(s).lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
                guard fd >= 0 else { continue }
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { close(fd); continue }
                // A free slot may still hold the ring of a tail that died: stop feeding it.
                EventSubscription.setActive(false, slot: s, maps: maps, lockPath: config.subscriberLocks + "/mask.lock")
                try? maps.subs.delete(key: s)
                if claimed == nil {
                    claimed = (s, fd)
                } else {
                    flock(fd, LOCK_UN); close(fd)
                }
            }
        }
        guard let (slot, fd) = claimed else {
            throw EngineError.subscriberSlotsFull(Int(LFP_MAX_SUBSCRIBERS))
        }
        self.slot = slot
        self.lockFD = fd
        self.maskLock = config.subscriberLocks + "/mask.lock"
        do {
            usleep(20_000)  // a program that looked the dead ring up just before the delete finishes
            ring = try BPFMap.createRingBuffer(name: "lfp_tail_\(slot)", bytes: ringBytes)
            // Reset the counters before the ring is visible: the kernel counts only while it is.
            try maps.subSeq.update(key: slot, value: UInt64(0))
            try maps.subDrops.updatePerCPU(key: slot, value: 0)
        } catch {
            flock(fd, LOCK_UN); close(fd)
            throw error
        }
        var continuation: AsyncStream<[ALEEvent]>.Continuation!
        let sinkForTake = sink
        events = ALEEventStream(
            batches: AsyncStream(bufferingPolicy: .unbounded) { continuation = $0 },
            taken: { sinkForTake.taken($0) })
        let cont = continuation!
        let sink = self.sink
        do {
            let reader = try RingBufferReader(
                ring: ring, pollTimeoutMs: pollTimeoutMs,
                handler: { raw in
                    if let e = ALEEvent(record: raw) { sink.pending.append(e) }
                },
                onRoundEnd: {
                    guard !sink.pending.isEmpty else { return }
                    // The round's array goes to the consumer whole; the next round starts a
                    // small one. (removeAll(keepingCapacity:) on an array the batch still shares
                    // allocates a new buffer of the largest round's capacity, every round.)
                    var batch = sink.pending
                    sink.pending = []
                    sink.pending.reserveCapacity(Sink.roundCapacity)
                    sink.add(batch.count)
                    // A consumer too far behind: shed this round rather than grow (a stalled
                    // `lfp events` reached 1 GB); the loss is counted in this tail's stats.
                    guard sink.admit(batch.count, limit: bufferEvents) else { return }
                    decorate(&batch)
                    cont.yield(batch)
                })
            self.reader = reader
            try maps.subs.update(key: slot, mapFD: ring.fd)
            EventSubscription.setActive(true, slot: slot, maps: maps, lockPath: maskLock)
            reader.start()
        } catch {
            cont.finish()
            flock(fd, LOCK_UN); close(fd)
            throw error
        }
        let c = cont
        c.onTermination = { [weak self] _ in self?.cancel() }
        finish = { c.finish() }
    }

    private var finish: () -> Void = {}

    /// Set or clear this slot's bit in lfp_sub_mask. Every tail read-modify-writes the same
    /// value, so they take turns through an flock.
    static func setActive(_ active: Bool, slot: UInt32, maps: KernelMaps, lockPath: String) {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        defer { flock(fd, LOCK_UN) }
        let mask = (try? maps.subMask.lookup(key: UInt32(0), as: UInt32.self)) ?? 0
        let bit = UInt32(1) << slot
        let next = active ? mask | bit : mask & ~bit
        if next != mask { try? maps.subMask.update(key: UInt32(0), value: next) }
    }

    /// The reader thread's side: the current drain round's events and the received count.
    private final class Sink: @unchecked Sendable {
        var pending: [ALEEvent] = []  // reader thread only
        private let lock = NSLock()
        private var received: UInt64 = 0
        static let roundCapacity = 4096
        init() { pending.reserveCapacity(Self.roundCapacity) }
        private var buffered = 0
        private var shedCount: UInt64 = 0
        func add(_ n: Int) { lock.lock(); received += UInt64(n); lock.unlock() }
        var count: UInt64 { lock.lock(); defer { lock.unlock() }; return received }
        var shed: UInt64 { lock.lock(); defer { lock.unlock() }; return shedCount }
        /// Room for `n` more events in the consumer's buffer? Counted as shed when not.
        func admit(_ n: Int, limit: Int) -> Bool {
            lock.lock(); defer { lock.unlock() }
            if buffered + n > limit { shedCount += UInt64(n); return false }
            buffered += n
            return true
        }
        func taken(_ n: Int) { lock.lock(); buffered -= n; lock.unlock() }
    }

    /// Stop receiving: remove the ring from the kernel's list, deliver what is already in it,
    /// end the stream and release the slot.
    public func cancel() {
        // Whole, once: a second caller (the broken-pipe watcher racing the writer) waits here
        // until the slot is really released, instead of returning while it is still held.
        cancelling.lock()
        defer { cancelling.unlock() }
        lock.lock()
        if cancelled { lock.unlock(); return }
        cancelled = true
        lock.unlock()
        EventSubscription.setActive(false, slot: slot, maps: maps, lockPath: maskLock)
        try? maps.subs.delete(key: slot)
        usleep(20_000)  // a program that looked the ring up just before the delete finishes its write
        reader?.stop()
        finish()
        let totals = try? accounting()
        lock.lock(); final = totals; lock.unlock()
        flock(lockFD, LOCK_UN)
        close(lockFD)
    }

    private let cancelling = NSRecursiveLock()  // finish() re-enters cancel() through onTermination

    deinit { cancel() }

    /// While running: a live reading. After cancel(): the final totals, taken before the slot
    /// was released.
    public func accounting() throws -> Accounting {
        lock.lock()
        if let final { lock.unlock(); return final }
        lock.unlock()
        let submitted = try maps.subSeq.lookup(key: slot, as: UInt64.self) ?? 0
        let dropped = try maps.subDrops.lookupPerCPU(key: slot).reduce(0, &+)
        lock.lock(); defer { lock.unlock() }
        return Accounting(submitted: submitted, received: sink.count, dropped: dropped, shed: sink.shed)
    }
}

/// The events of a subscription, one at a time, over the batches the reader thread hands over.
public struct ALEEventStream: AsyncSequence, Sendable {
    public typealias Element = ALEEvent
    let batches: AsyncStream<[ALEEvent]>
    let taken: @Sendable (Int) -> Void

    public struct AsyncIterator: AsyncIteratorProtocol {
        var inner: AsyncStream<[ALEEvent]>.AsyncIterator
        let taken: @Sendable (Int) -> Void
        var batch: [ALEEvent] = []
        var index = 0

        public mutating func next() async -> ALEEvent? {
            while index >= batch.count {
                guard let b = await inner.next() else { return nil }
                taken(b.count)
                batch = b
                index = 0
            }
            defer { index += 1 }
            return batch[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inner: batches.makeAsyncIterator(), taken: taken) }
}
