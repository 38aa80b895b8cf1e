import KernelABI

extension U128 {
    static prefix func ~ (a: U128) -> U128 { U128(hi: ~a.hi, lo: ~a.lo) }
    static func | (a: U128, b: U128) -> U128 { U128(hi: a.hi | b.hi, lo: a.lo | b.lo) }
    /// a + 1, wrapping (the callers check for .max first).
    var plusOne: U128 { successor ?? .zero }
    /// 2^bits - 1.
    static func ones(_ bits: Int) -> U128 { ~U128.prefixMask(128 - bits, width: 128) }
}

/// A set of values of one variable, as sorted, disjoint, non-adjacent closed intervals, plus
/// whether FWP_EMPTY (no value) belongs to it.
struct IntervalSet: Equatable {
    struct Interval: Equatable {
        var lo: U128
        var hi: U128
    }
    var ranges: [Interval]
    var empty: Bool

    static let none = IntervalSet(ranges: [], empty: false)
    static func span(_ lo: U128, _ hi: U128) -> IntervalSet {
        lo <= hi ? IntervalSet(ranges: [Interval(lo: lo, hi: hi)], empty: false) : .none
    }

    var isUnsatisfiable: Bool { ranges.isEmpty && !empty }

    /// Every value in [0, max] not in the set; FWP_EMPTY is never in a complement (a NOT test
    /// on a missing value fails, R3.12).
    func complement(max: U128) -> IntervalSet {
        var out: [Interval] = []
        var next: U128? = .zero
        for r in ranges {
            guard let n = next, n <= max else { break }
            if r.lo > n { out.append(Interval(lo: n, hi: Swift.min(r.lo.predecessor!, max))) }
            next = r.hi == .max ? nil : r.hi.plusOne
        }
        if let n = next, n <= max { out.append(Interval(lo: n, hi: max)) }
        return IntervalSet(ranges: out, empty: false)
    }

    func union(_ o: IntervalSet) -> IntervalSet {
        let all = (ranges + o.ranges).sorted { $0.lo < $1.lo }
        var out: [Interval] = []
        for r in all {
            if var last = out.last, last.hi == .max || r.lo <= last.hi.plusOne {
                if r.hi > last.hi { last.hi = r.hi }
                out[out.count - 1] = last
            } else {
                out.append(r)
            }
        }
        return IntervalSet(ranges: out, empty: empty || o.empty)
    }

    func intersection(_ o: IntervalSet) -> IntervalSet {
        var out: [Interval] = []
        var i = 0, j = 0
        while i < ranges.count && j < o.ranges.count {
            let lo = Swift.max(ranges[i].lo, o.ranges[j].lo)
            let hi = Swift.min(ranges[i].hi, o.ranges[j].hi)
            if lo <= hi { out.append(Interval(lo: lo, hi: hi)) }
            if ranges[i].hi < o.ranges[j].hi { i += 1 } else { j += 1 }
        }
        return IntervalSet(ranges: out, empty: empty && o.empty)
    }
}
