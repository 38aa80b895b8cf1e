import KernelABI

/// The cells every diagram of one commit writes into (the future lfp_policy inner map), with
/// identical leaves shared.
final class CellSink {
    var cells: [lfp_cell]
    private var leaves: [Leaf: UInt32] = [:]

    struct Leaf: Hashable {
        var filterId: UInt64 = 0
        var order: UInt32 = .max
        var blockErrno: Int32 = 0
        var action: UInt8 = UInt8(LFP_ACTION_NONE.rawValue)
        var stop = false
    }

    var nodes = 0, edges = 0
    var leafCount: Int { leaves.count }

    /// The index the first cell will have in its map: 0 for a map of its own; where a delta
    /// goes in the base map's spare cells (its refs are that map's indices).
    let origin: UInt32

    init(reserved: Int, origin: UInt32 = 0) {
        cells = Array(repeating: lfp_cell(), count: reserved)
        self.origin = origin
    }

    /// The map index of the next cell appended.
    var next: UInt32 { origin + UInt32(cells.count) }

    /// Drop the leaves at or past `mark` (a diagram that overflowed and was taken back).
    func forgetLeaves(from mark: Int) {
        leaves = leaves.filter { Int($0.value) < Int(origin) + mark }
    }

    /// filterId -> the cells of its leaves (an incremental commit tombstones a deleted filter's).
    func leavesByFilter() -> [UInt64: [UInt32]] {
        var out: [UInt64: [UInt32]] = [:]
        for (l, i) in leaves where l.filterId != 0 { out[l.filterId, default: []].append(i) }
        return out
    }

    func leaf(_ l: Leaf) -> UInt32 {
        if let i = leaves[l] { return i | LFP_REF_LEAF }
        let i = next
        var c = lfp_leaf()
        c.filter_id = l.filterId
        c.order = l.order
        c.block_errno = l.blockErrno
        c.action = l.action
        c.stop = l.stop ? 1 : 0
        cells.append(lfp_cell(leaf: c))
        leaves[l] = i
        return i | LFP_REF_LEAF
    }
}

/// A diagram that grew past its budget: the caller splits its rules into smaller groups.
struct DiagramOverflow: Error {}

/// Builds one multi-terminal interval decision diagram over a group of rules (evaluation order).
///
/// A node branches on one variable: the values of the variable are cut at every boundary of the
/// rules still alive, and each piece leads to the diagram of the rules that accept it. Variables
/// are taken in a fixed order (fields that most rules test first); a rule's constraints on the
/// variables already passed are settled, so a sub-diagram is named by (next variable, rules
/// alive) and identical ones are built once. Rules that cannot decide any more are pruned on the
/// way (WFP's first match per sublayer and hard stop), which keeps sub-diagrams small.
final class DiagramBuilder {
    struct Rule {
        var leaf: CellSink.Leaf
        var sublayer: UInt16
        var hard: Bool
        var constraints: [(pos: Int32, set: IntervalSet)]  // sorted by pos
        var lastPos: Int32
    }
    struct MemoKey: Hashable {
        var pos: Int32
        var rules: [Int32]
    }

    let rules: [Rule]
    let variables: [Variable]
    let fieldEnd: [Int32]  // position -> first position past its field's variables
    let sink: CellSink
    let cellBudget: Int
    var workBudget: Int
    private var memo: [MemoKey: UInt32] = [:]
    private var memoSingle: [Int64: UInt32] = [:]  // (position << 32 | the one rule alive) -> ref
    /// Sets of sublayers without a Set per call (most calls see one or two rules, and a Set
    /// each was a fifth of the build): a sublayer is in the set marked `mark` when its slot
    /// holds `mark`. Each use takes a fresh mark and ends before the recursion goes deeper.
    private var closedMark: [UInt32], seenMark: [UInt32]
    private var mark: UInt32 = 0

    init(rules input: [ClassifierRule], sink: CellSink, cellBudget: Int, workBudget: Int) {
        // Variable order: fields tested by the most rules first (then by how many distinct
        // boundaries they have), each field's variables together (FWP_EMPTY settles all of them).
        var perField: [UInt8: (rules: Int, bounds: Set<U128>, vars: Set<Variable>)] = [:]
        var seenBy = [Int](repeating: -1, count: 256)  // field -> the last rule that tested it
        for (index, r) in input.enumerated() {
            for (v, s) in r.constraints {
                var e = perField[v.field] ?? (0, [], [])
                if seenBy[Int(v.field)] != index {
                    seenBy[Int(v.field)] = index
                    e.rules += 1
                }
                if e.bounds.count < 4096 { for iv in s.ranges { e.bounds.insert(iv.lo) } }
                e.vars.insert(v)
                perField[v.field] = e
            }
        }
        let fields = perField.keys.sorted {
            let a = perField[$0]!, b = perField[$1]!
            return (a.rules, a.bounds.count, Int($1)) > (b.rules, b.bounds.count, Int($0))
        }
        var vars: [Variable] = []
        var ends: [Int32] = []
        for f in fields {
            let vs = perField[f]!.vars.sorted { ($0.mask == Variable.full ? 0 : 1, $0.mask) < ($1.mask == Variable.full ? 0 : 1, $1.mask) }
            vars += vs
            ends += Array(repeating: Int32(vars.count), count: vs.count)
        }
        let position = Dictionary(uniqueKeysWithValues: vars.enumerated().map { ($1, Int32($0)) })
        variables = vars
        fieldEnd = ends
        rules = input.map { r in
            let cons = r.constraints.map { (pos: position[$0.variable]!, set: $0.set) }.sorted { $0.pos < $1.pos }
            return Rule(
                leaf: CellSink.Leaf(
                    filterId: r.filterId, order: r.order, blockErrno: r.blockErrno, action: r.action, stop: r.hard),
                sublayer: r.sublayer, hard: r.hard, constraints: cons, lastPos: cons.last?.pos ?? -1)
        }
        self.sink = sink
        self.cellBudget = cellBudget
        self.workBudget = workBudget
        let sublayers = Int(input.map(\.sublayer).max() ?? 0) + 1
        closedMark = Array(repeating: 0, count: sublayers)
        seenMark = Array(repeating: 0, count: sublayers)
    }

    /// A fresh mark: every sublayer is out of both sets.
    private func freshMark() -> UInt32 {
        mark &+= 1
        if mark == 0 {  // wrapped: clear the slots once every 2^32 uses
            for i in closedMark.indices { closedMark[i] = 0; seenMark[i] = 0 }
            mark = 1
        }
        return mark
    }

    func build() throws -> UInt32 {
        try build(Array(0..<Int32(rules.count)), from: 0)
    }

    /// The leaf when every rule alive matches: WFP's walk over them (rules 3-5 of classify.h).
    private func arbitrate(_ alive: [Int32]) -> CellSink.Leaf {
        let m = freshMark()
        var out = CellSink.Leaf()
        for i in alive {
            let r = rules[Int(i)]
            if seenMark[Int(r.sublayer)] == m { continue }  // its sublayer already decided
            seenMark[Int(r.sublayer)] = m
            out = r.leaf
            out.stop = r.hard
            if r.hard { break }
        }
        return out
    }

    private func build(_ input: [Int32], from pos: Int32) throws -> UInt32 {
        // Prune: after a rule that matches whatever remains (free), the rest of its sublayer
        // cannot decide (rule 3); if it is also its sublayer's first rule alive and hard, nothing
        // after it can (rule 5).
        var alive: [Int32] = []
        alive.reserveCapacity(input.count)
        let m = freshMark()
        var next = Int32.max
        for i in input {
            let r = rules[Int(i)]
            let sub = Int(r.sublayer)
            if closedMark[sub] == m { continue }
            alive.append(i)
            let first = seenMark[sub] != m
            seenMark[sub] = m
            if r.lastPos < pos {
                closedMark[sub] = m
                if first && r.hard { break }
            } else if let c = r.constraints.first(where: { $0.pos >= pos }) {
                next = min(next, c.pos)
            }
        }
        if next == .max { return sink.leaf(arbitrate(alive)) }
        // Most sub-diagrams have one rule alive: those are memoized under one integer, which
        // hashes in a fraction of the time an array does.
        let single = alive.count == 1 ? Int64(next) << 32 | Int64(alive[0]) : -1
        let key = single >= 0 ? nil : MemoKey(pos: next, rules: alive)
        if let key, let ref = memo[key] { return ref }
        if key == nil, let ref = memoSingle[single] { return ref }
        func remember(_ ref: UInt32) {
            if let key { memo[key] = ref } else { memoSingle[single] = ref }
        }
        workBudget -= alive.count
        if workBudget < 0 || sink.cells.count > cellBudget { throw DiagramOverflow() }

        let x = next
        let end = fieldEnd[Int(x)]
        // FWP_EMPTY: the field has no value, so every variable of it is settled at once.
        let emptyAlive = alive.filter { i in
            rules[Int(i)].constraints.allSatisfy { $0.pos < x || $0.pos >= end || $0.set.empty }
        }
        let emptyRef = try build(emptyAlive, from: end)

        // Values: cut at every boundary; each piece's rules are the unconstrained ones plus the
        // ones whose interval covers it.
        var free: [Int32] = []
        var events: [(at: U128, add: Bool, rule: Int32)] = []
        for i in alive {
            guard let c = rules[Int(i)].constraints.first(where: { $0.pos == x }) else {
                free.append(i)
                continue
            }
            for iv in c.set.ranges {
                events.append((iv.lo, true, i))
                if let after = iv.hi.successor { events.append((after, false, i)) }
            }
        }
        events.sort { $0.at < $1.at }
        var active: [Int32] = []  // sorted
        var edges: [(lo: U128, ref: UInt32)] = []
        var cursor = U128.zero
        var e = 0
        while true {
            while e < events.count && events[e].at == cursor {
                let ev = events[e]
                if ev.add {
                    let p = active.firstIndex { $0 > ev.rule } ?? active.count
                    active.insert(ev.rule, at: p)
                } else if let p = active.firstIndex(of: ev.rule) {
                    active.remove(at: p)
                }
                e += 1
            }
            let child = DiagramBuilder.merge(free, active)
            let ref = try build(child, from: x + 1)
            if edges.last?.ref != ref { edges.append((cursor, ref)) }
            guard e < events.count else { break }
            cursor = events[e].at
        }
        if edges.count == 1 && edges[0].ref == emptyRef {
            remember(emptyRef)
            return emptyRef
        }
        let index = sink.next
        var node = lfp_node()
        node.field = variables[Int(x)].field
        node.mask_hi = variables[Int(x)].mask.hi
        node.mask_lo = variables[Int(x)].mask.lo
        node.nedges = UInt32(edges.count)
        node.edges = index + 1
        node.empty_ref = emptyRef
        sink.cells.append(lfp_cell(node: node))
        sink.nodes += 1
        sink.edges += edges.count
        for (lo, ref) in edges {
            var edge = lfp_edge()
            edge.lo_hi = lo.hi
            edge.lo_lo = lo.lo
            edge.ref = ref
            sink.cells.append(lfp_cell(edge: edge))
        }
        remember(index)
        return index
    }

    static func merge(_ a: [Int32], _ b: [Int32]) -> [Int32] {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        var out: [Int32] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i] < b[j]) {
                out.append(a[i]); i += 1
            } else {
                out.append(b[j]); j += 1
            }
        }
        return out
    }
}
