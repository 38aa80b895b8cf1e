import FilterModel
import KernelABI
import KernelVocabulary

/// The classifier the kernel reads: the cells of one lfp_policy inner map (layout in lfp_abi.h,
/// "the classifier"). Built from a PolicyImage; deterministic.
public struct ClassifierImage {
    public var cells: [lfp_cell]
    /// Per kernel layer: its groups (diagrams) and their sublayer tags.
    public var groupsPerLayer: [Int]
    /// Cells by kind, for `lfp status` and the bench.
    public var nodes = 0, edges = 0, leaves = 0
    /// What later incremental commits build on (IncrementalClassifier.swift); nil in a delta.
    public var base: ClassifierBase?
    /// A delta's tombstones: the base leaves of the filters it deletes (marked deleted from this
    /// delta on: lfp_leaf.deleted), sorted.
    public var tombstones: [UInt32] = []

    /// Bytes of kernel map memory the cells take (the array's values; the map adds a little).
    public var bytes: Int { cells.count * MemoryLayout<lfp_cell>.stride }

    /// Stamp the generation the commit publishes this image under.
    public mutating func setGeneration(_ g: UInt64) {
        var head = lfp_head()
        head.generation = g
        head.abi_version = UInt32(LFP_ABI_VERSION)
        head.ncells = UInt32(cells.count)
        cells[0] = lfp_cell(head: head)
    }
}

extension PolicyCompiler {
    /// Sublayers with at most this many rules are merged into one diagram with their
    /// neighbours (one walk for many small sublayers); bigger ones get diagrams of their own,
    /// one per shape (the set of variables its filters test).
    static let smallGroup = 256

    /// The classifier for `image`. Throws CompileError(.outOfBounds) when a layer needs more than
    /// LFP_MAX_GROUPS diagrams or a path tests more than LFP_MAX_DEPTH variables.
    /// `retainBase`: keep what incremental commits need (`base`; LivePolicy), which costs a pass
    /// over every rule that other commits need not pay.
    public static func buildClassifier(_ image: PolicyImage, retainBase: Bool = false) throws -> ClassifierImage {
        let sink = CellSink(reserved: 1 + Int(LFP_LAYER_COUNT.rawValue))
        var groupCells: [[lfp_group]] = []
        var layers: [ClassifierBase.LayerBase] = []
        for layer in 0..<Int(LFP_LAYER_COUNT.rawValue) {
            let range = image.ranges[layer]
            let v6 = layer % 2 == 1
            var rules: [ClassifierRule] = []
            let slice = image.rules[Int(range.start)..<Int(range.start + range.count)]
            let merged = mergedMasks(slice, v6: v6)
            // Orders with gaps, so that a filter added later takes an order between its
            // neighbours' without renumbering them (ClassifierBase.place).
            let gap = ClassifierBase.orderGap(rules: Int(range.count))
            for i in 0..<Int(range.count) {
                rules += try classifierRules(image.rules[Int(range.start) + i], order: ClassifierBase.order(ofRule: i, gap: gap), v6: v6, merged: merged)
            }
            let name = Layer(kernelID: UInt16(layer))?.name ?? "layer \(layer)"
            var built: [ClassifierBase.Group] = []
            groupCells.append(try buildLayer(rules, sink: sink, layerName: name, built: &built))
            if retainBase {
                layers.append(
                    ClassifierBase.LayerBase(
                        image: image, layer: layer, gap: gap, merged: merged, rules: rules, groups: built))
            }
        }
        // Groups go last, each layer's together; the layer cells point at them.
        var out = ClassifierImage(cells: sink.cells, groupsPerLayer: groupCells.map(\.count))
        out.nodes = sink.nodes
        out.edges = sink.edges
        out.leaves = sink.leafCount
        for (layer, groups) in groupCells.enumerated() {
            var r = lfp_layer_range()
            r.start = UInt32(out.cells.count)
            r.count = UInt32(groups.count)
            out.cells[1 + layer] = lfp_cell(layer: r)
            out.cells += groups.map { lfp_cell(group: $0) }
        }
        out.setGeneration(0)
        if retainBase { out.base = ClassifierBase(layers: layers, leaves: sink.leavesByFilter()) }
        return out
    }

    /// One layer's diagrams: small sublayers merged, big ones split by shape, and any diagram
    /// over its budget split again (halves of one sublayer combine by lowest order in the kernel).
    /// `built`: each group's rules, for incremental commits.
    static func buildLayer(
        _ rules: [ClassifierRule], sink: CellSink, layerName: String, built: inout [ClassifierBase.Group]
    ) throws -> [lfp_group] {
        var work: [(tag: UInt32, rules: [ClassifierRule])] = []
        var pending: [ClassifierRule] = []
        func flush() {
            if !pending.isEmpty { work.append((LFP_GROUP_ALONE, pending)) }
            pending = []
        }
        var i = 0
        while i < rules.count {
            var j = i
            while j < rules.count && rules[j].sublayer == rules[i].sublayer { j += 1 }
            let run = Array(rules[i..<j])
            if run.count <= smallGroup {
                if pending.count + run.count > 2 * smallGroup { flush() }
                pending += run
            } else {
                flush()
                work.append((UInt32(run[0].sublayer), run))  // one diagram, split only if it overflows
            }
            i = j
        }
        flush()

        var groups: [lfp_group] = []
        while !work.isEmpty {
            let (tag, group) = work.removeFirst()
            guard groups.count + work.count < Int(LFP_MAX_GROUPS) else {
                throw CompileError(
                    code: .outOfBounds,
                    message:
                        "\(layerName): the filters need more than \(LFP_MAX_GROUPS) decision diagrams (too many sublayers or filter shapes of more than \(smallGroup) filters each)"
                )
            }
            let mark = sink.cells.count
            let (markNodes, markEdges) = (sink.nodes, sink.edges)
            let builder = DiagramBuilder(
                rules: group, sink: sink, cellBudget: mark + 64 * group.count + 65536, workBudget: 256 * group.count + 65536)
            guard builder.variables.count <= Int(LFP_MAX_DEPTH) else {
                throw CompileError(
                    code: .outOfBounds,
                    message:
                        "\(layerName): filters test \(builder.variables.count) distinct field/mask combinations; the kernel follows at most \(LFP_MAX_DEPTH) per classification"
                )
            }
            do {
                let root = try builder.build()
                var g = lfp_group()
                g.root = root
                g.sublayer = tag
                groups.append(g)
                built.append(ClassifierBase.Group(tag: tag, root: root, rules: group))
            } catch is DiagramOverflow {
                sink.cells.removeSubrange(mark...)  // leaves made meanwhile are dropped too
                sink.forgetLeaves(from: mark)
                (sink.nodes, sink.edges) = (markNodes, markEdges)
                var split: [(UInt32, [ClassifierRule])] = []
                if tag == LFP_GROUP_ALONE && Set(group.map(\.sublayer)).count > 1 {
                    var k = 0
                    while k < group.count {
                        var m = k
                        while m < group.count && group[m].sublayer == group[k].sublayer { m += 1 }
                        split.append((UInt32(group[k].sublayer), Array(group[k..<m])))
                        k = m
                    }
                } else if group.count > 1 {
                    // One sublayer: any partition is exact (the kernel takes the lowest order of
                    // its diagrams' matches). By shape first (the set of variables the filters
                    // test: filters that leave a variable open are what multiplies sub-diagrams),
                    // with the small shapes together; halves when there is one shape.
                    let t = tag == LFP_GROUP_ALONE ? UInt32(group[0].sublayer) : tag
                    var shapes: [[Variable]: [ClassifierRule]] = [:]
                    var shapeOrder: [[Variable]] = []
                    for r in group {
                        let shape = r.constraints.map(\.variable)
                        if shapes[shape] == nil { shapeOrder.append(shape) }
                        shapes[shape, default: []].append(r)
                    }
                    let big = shapeOrder.filter { shapes[$0]!.count > group.count / 8 }
                    if shapeOrder.count > 1 && !big.isEmpty && big.count < shapeOrder.count || big.count > 1 {
                        let bigSet = Set(big)
                        for shape in big { split.append((t, shapes[shape]!)) }
                        let rest = group.filter { !bigSet.contains($0.constraints.map(\.variable)) }
                        if !rest.isEmpty { split.append((t, rest)) }
                    } else {
                        split = [(t, Array(group[..<(group.count / 2)])), (t, Array(group[(group.count / 2)...]))]
                    }
                } else {
                    throw CompileError(code: .outOfBounds, message: "\(layerName): filter \(group[0].filterId) is too complex for the classifier")
                }
                work.insert(contentsOf: split, at: 0)
            }
        }
        return groups
    }
}
