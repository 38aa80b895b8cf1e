// Work over independent elements, in chunks on every core, with the result of one pass in order.

import Foundation

enum ChunkedWork {
    /// `body` over the chunks of `0..<count`, concurrently, joined in chunk order. When chunks
    /// fail, the error of the first failing chunk is thrown: the error a pass in order would
    /// have met first, since each chunk stops at its own first error. Below `chunkSize`
    /// elements everything runs on the caller's thread.
    static func map<T>(count: Int, chunkSize: Int, _ body: (Range<Int>) throws -> [T]) throws -> [T] {
        guard count > chunkSize else { return try body(0..<count) }
        let chunks = (count + chunkSize - 1) / chunkSize
        let results = Slots<[T]>(count: chunks)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let range = c * chunkSize..<min(count, (c + 1) * chunkSize)
            results.set(c, Result { try body(range) })
        }
        var out: [T] = []
        out.reserveCapacity(count)
        for r in results.take() { out += try r.get() }
        return out
    }

    /// One result per chunk, each set once by its own thread.
    private final class Slots<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [Result<T, Error>?]
        init(count: Int) { slots = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<T, Error>) { lock.withLock { slots[i] = r } }
        /// Every chunk's result, in order; called after concurrentPerform returned.
        func take() -> [Result<T, Error>] { lock.withLock { slots.map { $0! } } }
    }
}
