import FilterModel
import Foundation
import PolicyCompiler

/// `lfp policy import --netsh`: a netsh WFP dump -> an lfp policy of every provider, sublayer
/// and filter lfp can enforce, with keys, weights and flags as Windows had them, and a report of
/// everything else with the reason.
///
/// Each object goes through lfp's own checks, in dependency order (providers, sublayers,
/// filters), so a reason is the one `lfp policy load` would give: the policy reader (syntax,
/// types, fields), the base filtering engine (FWP_E_* semantics, against the objects accepted so
/// far), and for filters the kernel compiler (what the eBPF path can enforce on this machine,
/// e.g. an ALE_APP_ID must name an executable that exists here). The result loads as a whole.
public struct NetshImporter {
    public init() {}

    public func importFile(_ path: String) throws -> NetshImport {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw NetshImportError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        return try importData(data, sourceName: path)
    }

    public func importData(_ data: Data, sourceName: String = "<netsh>") throws -> NetshImport {
        let doc = try NetshDocument(data: data)
        var out = NetshImport(source: sourceName, format: doc.kind)
        let bfe = BaseFilteringEngine()
        var accepted = Policy()
        // The provider trees accepted, for parsing sublayers: the reader checks that a sublayer's
        // provider is in the same document.
        var providerTrees: [[String: Any]] = []

        for c in doc.callouts {
            out.skip(
                .callout, c, key: "calloutKey",
                reason: "a Windows callout driver: lfp's callouts are userspace programs registered with lfp, so none is imported")
        }
        for c in doc.providerContexts {
            out.skip(
                .providerContext, c, key: "providerContextKey",
                reason: "type \(NetshImport.text(c["type"]) ?? "?"): Windows IPsec/IKE or firewall context data has no Linux meaning")
        }
        for p in doc.providers {
            guard var t = prepare(p, .provider, into: &out) else { continue }
            out.dropFlags(&t, known: ["FWPM_PROVIDER_FLAG_PERSISTENT"], kind: .provider, why: "output-only or Windows-specific")
            guard let obj = parse(["providers": [t]], .provider, t, &out)?.providers.first else { continue }
            do {
                _ = try bfe.addProvider(obj)
                accepted.providers.append(obj)
                providerTrees.append(t)
            } catch { out.skip(.provider, t, key: "providerKey", reason: "\(error)") }
        }
        for s in doc.sublayers {
            guard var t = prepare(s, .sublayer, into: &out) else { continue }
            if NetshImport.text(t["subLayerKey"]) == Sublayer.universalKey.lowerString {
                out.notes.append("FWPM_SUBLAYER_UNIVERSAL is built into lfp (weight \(Sublayer.universalWeight)); the dump's copy is not imported")
                continue
            }
            out.dropFlags(&t, known: ["FWPM_SUBLAYER_FLAG_PERSISTENT"], kind: .sublayer, why: "Windows-specific")
            let owner = providerTrees.filter { NetshImport.text($0["providerKey"]) == NetshImport.text(t["providerKey"]) }
            guard let obj = parse(["providers": owner, "sublayers": [t]], .sublayer, t, &out)?.sublayers.first else { continue }
            do {
                _ = try bfe.addSublayer(obj)
                accepted.sublayers.append(obj)
            } catch { out.skip(.sublayer, t, key: "subLayerKey", reason: "\(error)") }
        }
        for f in doc.filters { importFilter(f, bfe: bfe, accepted: &accepted, into: &out) }
        out.policy = accepted
        return out
    }

    private func importFilter(_ f: [String: Any], bfe: BaseFilteringEngine, accepted: inout Policy, into out: inout NetshImport) {
        let layerName = NetshImport.text(f["layerKey"]) ?? ""
        guard Layer(name: layerName) != nil else {
            out.skip(.filter, f, key: "filterKey", reason: "layer \(layerName) has no lfp equivalent (lfp implements WFP's 14 ALE layers)")
            return
        }
        if let a = f["action"] as? [String: Any], let type = NetshImport.text(a["type"]), type.contains("CALLOUT") {
            out.skip(
                .filter, f, key: "filterKey",
                reason:
                    "\(type) calls callout \(NetshImport.text(a["calloutKey"]) ?? NetshImport.text(a["filterType"]) ?? "?"), a Windows driver (not imported)")
            return
        }
        guard var t = prepare(f, .filter, into: &out) else { return }
        let windowsWeight = (t["effectiveWeight"] as? [String: Any]).flatMap { NetshImport.text($0["uint64"]) }.flatMap { UInt64($0) }
        let windowsId = NetshImport.text(t["filterId"]).flatMap { UInt64($0) }
        t["filterId"] = nil
        t["effectiveWeight"] = nil
        t["reserved"] = nil
        out.dropFlags(
            &t, known: FilterFlags.names.map(\.0).filter { $0 != "FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT" }, kind: .filter,
            why: "Windows-specific")
        // A permit or block filter's verdict never reads its provider context (WFP hands it to
        // callouts and IPsec), and no Windows context type means anything here: keep the filter
        // without it rather than lose the filter.
        if let ctx = NetshImport.text(t["providerContextKey"]) {
            t["providerContextKey"] = nil
            out.adjust(t, "providerContextKey \(ctx) dropped (Windows context; a permit/block verdict does not use it)")
        }
        guard var obj = parse(["filters": [t]], .filter, t, &out)?.filters.first else { return }
        obj.filterId = 0
        obj.effectiveWeight = 0
        // What the kernel path can enforce, checked on this filter alone (with its sublayer and
        // provider) so the reason names it; then against everything accepted so far.
        func check(_ f: Filter) throws -> UInt64 {
            let scratch = BaseFilteringEngine()
            let sublayers = accepted.sublayers.filter { $0.subLayerKey == f.subLayerKey }
            let owners = Set([f.providerKey] + sublayers.map(\.providerKey)).compactMap { $0 }
            _ = try scratch.load(
                Policy(providers: accepted.providers.filter { owners.contains($0.providerKey) }, sublayers: sublayers, filters: [f]))
            _ = try PolicyCompiler.compile(scratch)
            return try scratch.filters().first?.effectiveWeight ?? 0
        }
        do {
            let lfpWeight = try check(obj)
            // The order filters of one sublayer are evaluated in is their effective weight. When
            // lfp derives another one from an FWP_UINT8/FWP_EMPTY weight than Windows did (its
            // rules for condition specificity are not documented), the filter takes Windows' own
            // as an FWP_UINT64 weight, so the import arbitrates in Windows' order.
            if let w = windowsWeight, w != lfpWeight {
                out.adjust(
                    t,
                    "weight \(NetshImporter.weightText(obj.weight)) -> FWP_UINT64 \(w), Windows' effective weight (lfp derives \(lfpWeight) from the original)")
                obj.weight = .uint64(w)
                _ = try check(obj)
            }
            _ = try bfe.addFilter(obj)
        } catch {
            out.skip(.filter, t, key: "filterKey", reason: "\(error)")
            return
        }
        accepted.filters.append(obj)
        out.imported.append(
            .init(key: obj.filterKey, name: obj.name, layer: obj.layerKey.name, windowsFilterId: windowsId, windowsEffectiveWeight: windowsWeight))
    }

    /// Keys resolved (symbolic names mapped, see WellKnownKeys), netsh's `{data, asString}` blobs
    /// turned into what the policy schema reads, empty names kept as "" (netsh writes `<name/>`
    /// for an empty name, and WFP refuses a NULL one).
    private func prepare(_ raw: [String: Any], _ kind: NetshImport.Kind, into out: inout NetshImport) -> [String: Any]? {
        var t = raw
        for k in ["providerKey", "subLayerKey", "filterKey", "providerContextKey", "calloutKey"] {
            guard let s = NetshImport.text(t[k]) else { continue }
            guard let (key, symbolic) = WellKnownKeys.key(s) else {
                out.skip(kind, raw, key: kind.keyMember, reason: "\(k) '\(s)' is neither a GUID nor a FWPM_* name")
                return nil
            }
            if symbolic { out.symbolicKeys[s] = key }
            t[k] = key.lowerString
        }
        if var d = t["displayData"] as? [String: Any] {
            if d["name"] is NSNull { d["name"] = "" }
            t["displayData"] = d
        }
        if let pd = t["providerData"] as? [String: Any] { t["providerData"] = NetshImport.hexBytes(pd["data"]) ?? NSNull() }
        if var conds = t["filterCondition"] as? [Any] {
            for i in conds.indices {
                guard var c = conds[i] as? [String: Any], var v = c["conditionValue"] as? [String: Any],
                    let blob = v["byteBlob"] as? [String: Any]
                else { continue }
                let bytes = NetshImport.hexBytes(blob["data"]) ?? []
                // ALE_APP_ID is a NUL-terminated UTF-16LE path on Windows; lfp's is UTF-8 text.
                if NetshImport.text(c["fieldKey"]) == "FWPM_CONDITION_ALE_APP_ID" {
                    v["byteBlob"] = NetshImport.utf16le(bytes) ?? NetshImport.text(blob["asString"]) ?? ""
                } else {
                    v["byteBlob"] = bytes
                }
                c["conditionValue"] = v
                conds[i] = c
            }
            t["filterCondition"] = conds
        }
        return t
    }

    static func weightText(_ w: ConditionValue) -> String {
        switch w {
        case .empty: return "FWP_EMPTY"
        case .uint8(let v): return "FWP_UINT8 \(v)"
        case .uint64(let v): return "FWP_UINT64 \(v)"
        default: return "\(w)"
        }
    }

    private func parse(_ doc: [String: Any], _ kind: NetshImport.Kind, _ t: [String: Any], _ out: inout NetshImport) -> Policy? {
        do { return try Policy.parse(jsonObject: doc, sourceName: "netsh") } catch {
            out.skip(kind, t, key: kind.keyMember, reason: "\(error)")
            return nil
        }
    }
}
