import FilterModel
import Foundation
import KernelABI
import KernelVocabulary

// Incremental commits (docs/incremental-commits.md): a few filters added to or deleted from a
// big policy reach the kernel as a small delta appended to the spare cells of the full build's
// map, whose own cells stay as they are (lfp_abi.h, "the classifier"). The delta holds, per
// touched layer, the group list in force: the base's diagrams, plus
//   - for a sublayer with diagrams of its own: one more diagram of its added filters and of the
//     filters that may follow a deleted one; the kernel takes the lowest order among a
//     sublayer's diagrams (rule 3), and a deleted filter's base leaves are tombstoned;
//   - for small sublayers merged into one diagram (LFP_GROUP_ALONE): that diagram rebuilt.
// A change the delta cannot express (a new sublayer at a layer, an order gap used up, too many
// diagrams, a delta grown large) throws NeedsFullBuild, and the engine commits in full.

/// The change needs a full build; `reason` says why (for the commit's report).
public struct NeedsFullBuild: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "a full build is needed: \(reason)" }
    public init(reason: String) { self.reason = reason }
}

/// What a full build keeps for incremental commits on it. Immutable once built.
public final class ClassifierBase: @unchecked Sendable {
    /// One diagram of the base, as buildLayer made it.
    struct Group {
        var tag: UInt32
        var root: UInt32
        var rules: [ClassifierRule]
    }

    /// A filter's place in its layer's evaluation order: sublayer index, then weight (highest
    /// first), then filterId (R1.3, R1.7); its kernel rules hold orders [first, last].
    struct Entry {
        var sublayer: UInt16
        var weight: UInt64
        var filterId: UInt64
        var first: UInt32
        var last: UInt32

        /// Whether a filter (sublayer, weight, id) comes before this entry.
        func follows(_ sublayer: UInt16, _ weight: UInt64, _ id: UInt64) -> Bool {
            if self.sublayer != sublayer { return self.sublayer > sublayer }
            if self.weight != weight { return self.weight < weight }
            return filterId > id
        }
    }

    struct LayerBase {
        var v6: Bool
        var merged: [UInt8: U128]
        var groups: [Group]
        var entries: [Entry]  // evaluation order
        /// Each sublayer's classifier rules in order (the candidates that may follow a deleted
        /// filter), and which groups hold it.
        var bySublayer: [UInt16: [ClassifierRule]]
        var sublayerIndex: [UUID: UInt16]
        /// Sublayers whose diagrams are their own (tagged), as opposed to merged (ALONE).
        var tagged: Set<UInt16>

        init(image: PolicyImage, layer: Int, gap: UInt32, merged: [UInt8: U128], rules: [ClassifierRule], groups: [Group]) {
            v6 = layer % 2 == 1
            self.merged = merged
            self.groups = groups
            sublayerIndex = image.sublayerIndex[layer]
            let range = image.ranges[layer]
            var entries: [Entry] = []
            entries.reserveCapacity(Int(range.count))
            for i in 0..<Int(range.count) {
                let r = image.rules[Int(range.start) + i]
                let order = ClassifierBase.order(ofRule: i, gap: gap)
                if let last = entries.last, last.filterId == r.filter_id {
                    entries[entries.count - 1].last = order
                } else {
                    entries.append(
                        Entry(sublayer: r.sublayer, weight: image.ruleWeights[Int(range.start) + i], filterId: r.filter_id, first: order, last: order))
                }
            }
            self.entries = entries
            var by: [UInt16: [ClassifierRule]] = [:]
            for r in rules { by[r.sublayer, default: []].append(r) }
            bySublayer = by
            tagged = Set(groups.filter { $0.tag != LFP_GROUP_ALONE }.map { UInt16($0.tag) })
        }
    }

    let layers: [LayerBase]
    /// filterId -> its leaves' cells in the base map.
    let leaves: [UInt64: [UInt32]]
    /// filterId -> its kernel layer and entry there, for every filter with kernel rules.
    let home: [UInt64: (layer: Int, entry: Int)]

    init(layers: [LayerBase], leaves: [UInt64: [UInt32]]) {
        self.layers = layers
        self.leaves = leaves
        var home: [UInt64: (layer: Int, entry: Int)] = [:]
        home.reserveCapacity(layers.reduce(0) { $0 + $1.entries.count })
        for (i, l) in layers.enumerated() { for (k, e) in l.entries.enumerated() { home[e.filterId] = (i, k) } }
        self.home = home
    }

    /// The gap between consecutive orders of a layer of `rules` kernel rules: as wide as 32 bits
    /// allow, at most 2^16.
    static func orderGap(rules: Int) -> UInt32 {
        UInt32(min(UInt64(1) << 16, UInt64(UInt32.max) / UInt64(rules + 2)))
    }

    /// The order of a layer's rule `i` in a full build (the gaps take later additions).
    static func order(ofRule i: Int, gap: UInt32) -> UInt32 { UInt32(i + 1) * gap }

    /// The most classifier rules a delta's diagrams may hold before a full build is cheaper.
    static let maxDeltaRules = 8192
}

/// The filters added and deleted since the base, as the next delta map will hold them.
public struct ClassifierDelta: Sendable {
    struct Added {
        var layer: Int
        var entry: ClassifierBase.Entry
        var rules: [ClassifierRule]
    }
    var added: [UInt64: Added] = [:]
    /// Base filters deleted, with the rules of their sublayer that may follow them (none when
    /// the sublayer is merged: its diagram is rebuilt).
    var deleted: [UInt64: (layer: Int, sublayer: UInt16, followers: [Int])] = [:]
    /// Diagrams earlier deltas on this base wrote to its spare cells, by what they hold: those
    /// cells are append-only, so a diagram whose rules did not change is pointed at again
    /// instead of written again.
    var written: [DiagramKey: (rules: [UInt64], root: UInt32)] = [:]
    struct DiagramKey: Hashable {
        var layer: Int
        var group: Int  // the merged group's index, or -1 - the tagged sublayer
    }
    public init() {}
}

extension ClassifierDelta.Added: @unchecked Sendable {}

extension ClassifierBase {
    /// Adds `filter` (already in `engine`, with its filterId and effective weight) to `delta`.
    /// `notes` gets what the full compile would note.
    public func add(_ filter: Filter, engine: BaseFilteringEngine, to delta: inout ClassifierDelta, notes: inout [PolicyImage.Note])
        throws
    {
        let layer = Int(filter.layerKey.kernelID)
        guard !filter.flags.contains(.disabled) else { return }
        let l = layers[layer]
        let index = l.sublayerIndex[filter.subLayerKey]
        let kernelRules = try PolicyCompiler.kernelRules(filter, sublayer: index ?? 0, engine: engine, notes: &notes)
        if kernelRules.isEmpty { return }  // a notification layer, an inspection callout
        guard let sub = index else { throw NeedsFullBuild(reason: "the first filter of its sublayer at \(filter.layerKey.name)") }
        guard l.bySublayer[sub] != nil else { throw NeedsFullBuild(reason: "its sublayer has no kernel rules at \(filter.layerKey.name)") }
        for r in kernelRules { try checkMasks(r, layer: l) }
        // Its orders: strictly between the neighbours it falls between, in the base and among
        // the filters added before it.
        let w = filter.effectiveWeight, id = filter.filterId
        var lo: UInt32 = 0, hi = UInt32.max
        var a = 0, b = l.entries.count
        while a < b {
            let m = (a + b) / 2
            if l.entries[m].follows(sub, w, id) { b = m } else { a = m + 1 }
        }
        if a > 0 { lo = l.entries[a - 1].last }
        if a < l.entries.count { hi = l.entries[a].first }
        for other in delta.added.values where other.layer == layer {
            if other.entry.follows(sub, w, id) { hi = min(hi, other.entry.first) } else { lo = max(lo, other.entry.last) }
        }
        let step = (hi - lo) / UInt32(kernelRules.count + 1)
        guard hi > lo, step >= 1 else { throw NeedsFullBuild(reason: "no order left between filter \(id)'s neighbours") }
        var rules: [ClassifierRule] = []
        for (k, r) in kernelRules.enumerated() {
            rules += try PolicyCompiler.classifierRules(r, order: lo + step * UInt32(k + 1), v6: l.v6, merged: l.merged)
        }
        let entry = Entry(sublayer: sub, weight: w, filterId: id, first: lo + step, last: lo + step * UInt32(kernelRules.count))
        delta.added[id] = .init(layer: layer, entry: entry, rules: rules)
    }

    /// A non-prefix mask the base merged into one variable must be inside that union, or the
    /// new rule's listed values would be wrong (PolicyCompiler.constraint).
    private func checkMasks(_ r: lfp_rule, layer l: LayerBase) throws {
        var bad = false
        withUnsafeBytes(of: r.cond) { raw in
            let conds = raw.bindMemory(to: lfp_cond.self)
            for i in 0..<Int(min(r.ncond, UInt16(LFP_MAX_CONDS))) {
                guard let m = l.merged[conds[i].field] else { continue }
                let d = domainMax(field: conds[i].field, v6: l.v6)
                let mask = U128(hi: conds[i].mask_hi, lo: conds[i].mask_lo) & d
                let low = ~(mask | ~d)
                if low & low.plusOne != .zero && (mask & ~m) != .zero { bad = true }
            }
        }
        if bad { throw NeedsFullBuild(reason: "a new mask on a field whose masks the base merged") }
    }

    /// Deletes filter `id` (in the base or added since) from `delta`. A filter with no kernel
    /// rules changes nothing.
    public func delete(filterId id: UInt64, from delta: inout ClassifierDelta) {
        if delta.added.removeValue(forKey: id) != nil { return }
        guard let (layer, k) = home[id], delta.deleted[id] == nil else { return }
        let l = layers[layer]
        let e = l.entries[k]
        guard l.tagged.contains(e.sublayer), let rules = l.bySublayer[e.sublayer] else {
            delta.deleted[id] = (layer, e.sublayer, [])  // its merged diagram is rebuilt
            return
        }
        // The rules that may decide where this filter did: later in its sublayer, and matching
        // some input it matches. Over-including is safe; missing one is not.
        let mine = rules.filter { $0.filterId == id }
        var start = 0, end = rules.count
        while start < end {
            let m = (start + end) / 2
            if rules[m].order <= e.first { start = m + 1 } else { end = m }
        }
        var followers: [Int] = []
        for i in start..<rules.count where rules[i].filterId != id {
            guard mine.contains(where: { Self.overlap($0, rules[i]) }) else { continue }
            followers.append(i)
            // A rule that matches everything this filter matched decides wherever it did: no
            // later rule can (were that rule deleted too, its own followers cover the rest).
            if mine.allSatisfy({ Self.covers(rules[i], $0) }) { break }
        }
        delta.deleted[id] = (layer, e.sublayer, followers)
    }

    /// Whether some input matches both rules: on every variable both test, the sets meet.
    static func overlap(_ a: ClassifierRule, _ b: ClassifierRule) -> Bool {
        var i = 0, j = 0
        while i < a.constraints.count && j < b.constraints.count {
            let va = a.constraints[i].variable, vb = b.constraints[j].variable
            if va == vb {
                if !meet(a.constraints[i].set, b.constraints[j].set) { return false }
                i += 1
                j += 1
            } else if (va.field, va.mask) < (vb.field, vb.mask) {
                i += 1
            } else {
                j += 1
            }
        }
        return true
    }

    /// Whether every input `inner` matches, `outer` matches: each variable `outer` tests,
    /// `inner` tests with a subset (FWP_EMPTY included).
    static func covers(_ outer: ClassifierRule, _ inner: ClassifierRule) -> Bool {
        outer.constraints.allSatisfy { o in
            guard let i = inner.constraints.first(where: { $0.variable == o.variable }) else { return false }
            if i.set.empty && !o.set.empty { return false }
            return i.set.ranges.allSatisfy { r in o.set.ranges.contains { $0.lo <= r.lo && r.hi <= $0.hi } }
        }
    }

    private static func meet(_ x: IntervalSet, _ y: IntervalSet) -> Bool {
        if x.empty && y.empty { return true }
        var i = 0, j = 0
        while i < x.ranges.count && j < y.ranges.count {
            if x.ranges[i].hi < y.ranges[j].lo {
                i += 1
            } else if y.ranges[j].hi < x.ranges[i].lo {
                j += 1
            } else {
                return true
            }
        }
        return false
    }

    /// The cells of `delta` on this base, to be written to the base's map from index `origin` on
    /// (its head first), and its tombstones. See the top of this file.
    /// `delta.written` learns the diagrams written; the caller keeps it once the cells are in.
    public func buildDelta(_ delta: inout ClassifierDelta, generation: UInt64, baseGeneration: UInt64, origin: UInt32) throws
        -> ClassifierImage
    {
        let layerCount = Int(LFP_LAYER_COUNT.rawValue)
        let sink = CellSink(reserved: 1 + layerCount, origin: origin)
        var touched: [Int: (added: [UInt16: [ClassifierRule]], deleted: Set<UInt64>, followers: [UInt16: Set<Int>])] = [:]
        var ruleCount = 0
        for a in delta.added.values {
            touched[a.layer, default: ([:], [], [:])].added[a.entry.sublayer, default: []] += a.rules
            ruleCount += a.rules.count
        }
        var tombs: [UInt32] = []
        for (id, d) in delta.deleted {
            touched[d.layer, default: ([:], [], [:])].deleted.insert(id)
            if layers[d.layer].tagged.contains(d.sublayer) {
                touched[d.layer]!.followers[d.sublayer, default: []].formUnion(d.followers)
                tombs += leaves[id] ?? []
            }
        }
        var lists: [(layer: Int, groups: [lfp_group])] = []
        for (layer, t) in touched.sorted(by: { $0.key < $1.key }) {
            let l = layers[layer]
            let name = Layer(kernelID: UInt16(layer))?.name ?? "layer \(layer)"
            var deltaRules: [UInt16: [ClassifierRule]] = [:]  // tagged sublayer -> its delta diagram's rules
            for sub in Set(t.added.keys).union(t.followers.keys) where l.tagged.contains(sub) {
                let followers = (t.followers[sub] ?? []).sorted().map { l.bySublayer[sub]![$0] }.filter { !t.deleted.contains($0.filterId) }
                deltaRules[sub] = (followers + (t.added[sub] ?? [])).sorted { $0.order < $1.order }
                ruleCount += followers.count
            }
            guard ruleCount <= Self.maxDeltaRules else { throw NeedsFullBuild(reason: "the delta outgrew \(Self.maxDeltaRules) rules") }
            let mergedTouched = Set(t.added.keys).union(delta.deleted.values.filter { $0.layer == layer }.map(\.sublayer))
                .subtracting(l.tagged)
            var groups: [lfp_group] = []
            for (i, g) in l.groups.enumerated() {
                var out = lfp_group()
                out.root = g.root
                out.sublayer = g.tag
                if g.tag == LFP_GROUP_ALONE && g.rules.contains(where: { mergedTouched.contains($0.sublayer) }) {
                    let subs = Set(g.rules.map(\.sublayer))
                    let rules =
                        (g.rules.filter { !t.deleted.contains($0.filterId) }
                        + subs.flatMap { t.added[$0] ?? [] }).sorted { $0.order < $1.order }
                    if rules.isEmpty { continue }
                    out.root = try diagram(rules, sink: sink, layerName: name, key: .init(layer: layer, group: i), delta: &delta)
                }
                groups.append(out)
                let nextTag = i + 1 < l.groups.count ? l.groups[i + 1].tag : LFP_GROUP_ALONE
                if g.tag != LFP_GROUP_ALONE, nextTag != g.tag, let rules = deltaRules[UInt16(g.tag)], !rules.isEmpty {
                    var d = lfp_group()
                    d.root = try diagram(
                        rules, sink: sink, layerName: name, key: .init(layer: layer, group: -1 - Int(g.tag)), delta: &delta)
                    d.sublayer = g.tag
                    groups.append(d)
                }
            }
            guard groups.count <= Int(LFP_MAX_GROUPS) else { throw NeedsFullBuild(reason: "\(name) would need more than \(LFP_MAX_GROUPS) diagrams") }
            lists.append((layer, groups))
        }
        var out = ClassifierImage(cells: sink.cells, groupsPerLayer: Array(repeating: 0, count: layerCount))
        out.nodes = sink.nodes
        out.edges = sink.edges
        out.leaves = sink.leafCount
        for (layer, groups) in lists {
            var r = lfp_layer_range()
            r.start = origin + UInt32(out.cells.count)
            r.count = UInt32(groups.count)
            out.cells[1 + layer] = lfp_cell(layer: r)
            out.cells += groups.map { lfp_cell(group: $0) }
            out.groupsPerLayer[layer] = groups.count
        }
        out.tombstones = tombs.sorted()
        var head = lfp_head()
        head.generation = generation
        head.abi_version = UInt32(LFP_ABI_VERSION)
        head.ncells = UInt32(out.cells.count)
        head.base_generation = baseGeneration
        out.cells[0] = lfp_cell(head: head)
        return out
    }

    private func diagram(
        _ rules: [ClassifierRule], sink: CellSink, layerName: String, key: ClassifierDelta.DiagramKey, delta: inout ClassifierDelta
    ) throws -> UInt32 {
        let identity = rules.flatMap { [$0.filterId, UInt64($0.order)] }
        if let w = delta.written[key], w.rules == identity { return w.root }
        let root = try diagram(rules, sink: sink, layerName: layerName)
        delta.written[key] = (identity, root)
        return root
    }

    private func diagram(_ rules: [ClassifierRule], sink: CellSink, layerName: String) throws -> UInt32 {
        let builder = DiagramBuilder(
            rules: rules, sink: sink, cellBudget: sink.cells.count + 64 * rules.count + 65536, workBudget: 256 * rules.count + 65536)
        guard builder.variables.count <= Int(LFP_MAX_DEPTH) else {
            throw NeedsFullBuild(reason: "\(layerName): the delta's filters test more than \(LFP_MAX_DEPTH) variables")
        }
        do { return try builder.build() } catch is DiagramOverflow { throw NeedsFullBuild(reason: "\(layerName): the delta's diagram overflowed") }
    }
}
