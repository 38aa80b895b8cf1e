import FilterModel
import KernelABI
import Testing

@testable import PolicyCompiler

/// The classifier's fast path for the usual rule (every OR group on one variable) against the
/// general cross product it stands in for: the same classifier rules for every compiled rule of
/// generated policies (every match type, OR-ed fields, ranges, NOT_EQUAL, FWP_EMPTY).
@Suite("Classifier rules: fast path")
struct ClassifierRuleTests {
    static func same(_ a: [ClassifierRule], _ b: [ClassifierRule]) -> Bool {
        a.count == b.count
            && zip(a, b).allSatisfy { x, y in
                x.order == y.order && x.filterId == y.filterId && x.sublayer == y.sublayer && x.action == y.action
                    && x.hard == y.hard && x.blockErrno == y.blockErrno && x.constraints.count == y.constraints.count
                    && zip(x.constraints, y.constraints).allSatisfy { $0.variable == $1.variable && $0.set == $1.set }
            }
    }

    @Test("generated policies: the fast path gives what the general path gives")
    func fastPathAgrees() throws {
        var rng = SplitMix(seed: 0x5EED_F457)
        var fast = 0
        for round in 0..<200 {
            let bfe = BaseFilteringEngine()
            _ = try bfe.load(try Policy.parse(GeneratedPolicy.yaml(&rng, filters: 8), sourceName: "gen\(round)"))
            guard let image = try? PolicyCompiler.compile(bfe) else { continue }
            for (i, r) in image.rules.enumerated() {
                let general = try PolicyCompiler.generalRules(r, order: UInt32(i), v6: false, merged: [:])
                guard let one = PolicyCompiler.singleRule(r, order: UInt32(i), v6: false, merged: [:]) else { continue }
                fast += 1
                #expect(Self.same(one, general), "round \(round) rule \(i) (filter \(r.filter_id))")
            }
        }
        #expect(fast > 500, "the fast path was taken \(fast) times")
    }
}
