// Every validation error FwpmFilterAdd0 & co. can return in the model, each checked to leave
// the engine unchanged.

import Foundation
import Testing

@testable import FilterModel

let SL = UUID(uuidString: "11111111-1111-4111-8111-111111111111")!
let PK = UUID(uuidString: "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee")!
let CT = UUID(uuidString: "55555555-5555-4555-8555-555555555555")!
let L4 = Layer.authConnectV4

func baseEngine() throws -> BaseFilteringEngine {
    let bfe = BaseFilteringEngine()
    try bfe.addProvider(Provider(providerKey: PK, displayData: DisplayData(name: "P")))
    try bfe.addSublayer(Sublayer(subLayerKey: SL, displayData: DisplayData(name: "SL_HI"), providerKey: PK, weight: 0x8000))
    try bfe.addCallout(CalloutObject(calloutKey: CT, displayData: DisplayData(name: "CT"), applicableLayer: L4))
    return bfe
}

func filter(
    _ name: String? = "F", layer: Layer = L4, flags: FilterFlags = [], action: FilterAction = .block,
    weight: ConditionValue = .uint64(10), _ conds: [FilterCondition] = []
) -> Filter {
    Filter(
        displayData: DisplayData(name: name), flags: flags, layerKey: layer, subLayerKey: SL, weight: weight,
        filterCondition: conds, action: action)
}

/// Expects `body` to throw `code` and the committed objects to stay as they were.
func expectRefused(
    _ code: FWPErrorCode, _ bfe: BaseFilteringEngine, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    let before = bfe.snapshot()
    do {
        try body()
        Issue.record("expected \(code.name), the call succeeded", sourceLocation: sourceLocation)
    } catch let e as FWPError {
        #expect(e.code == code, "got \(e)", sourceLocation: sourceLocation)
        #expect(e.description.hasPrefix(code.name + ": "), sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
    #expect(bfe.snapshot() == before, "a refused call changed the engine", sourceLocation: sourceLocation)
}

@Suite("Validation errors")
struct ValidationTests {
    @Test("FWP_E_NULL_DISPLAY_NAME for every object type (R4.1)")
    func nullNames() throws {
        let bfe = try baseEngine()
        expectRefused(.nullDisplayName, bfe) { try bfe.addFilter(filter(nil)) }
        expectRefused(.nullDisplayName, bfe) { try bfe.addFilter(filter("")) }
        expectRefused(.nullDisplayName, bfe) { try bfe.addSublayer(Sublayer(displayData: DisplayData(name: nil), weight: 1)) }
        expectRefused(.nullDisplayName, bfe) { try bfe.addProvider(Provider(displayData: DisplayData(name: nil))) }
        expectRefused(.nullDisplayName, bfe) { try bfe.addCallout(CalloutObject(displayData: DisplayData(name: nil), applicableLayer: L4)) }
        expectRefused(.nullDisplayName, bfe) { try bfe.addProviderContext(ProviderContext(displayData: DisplayData(name: nil))) }
    }

    @Test("FWP_E_INVALID_FLAGS: PERSISTENT|BOOTTIME, DISABLED, PERMIT_IF_CALLOUT_UNREGISTERED on wrong actions, unknown bits (R4.5-R4.7, code UNCONFIRMED)")
    func invalidFlags() throws {
        let bfe = try baseEngine()
        expectRefused(.invalidFlags, bfe) { try bfe.addFilter(filter(flags: [.persistent, .bootTime])) }
        expectRefused(.invalidFlags, bfe) { try bfe.addFilter(filter(flags: .disabled)) }
        for a in [FilterAction.permit, .block, FilterAction(type: .calloutInspection, calloutKey: CT)] {
            expectRefused(.invalidFlags, bfe) { try bfe.addFilter(filter(flags: .permitIfCalloutUnregistered, action: a)) }
        }
        expectRefused(.invalidFlags, bfe) { try bfe.addFilter(filter(flags: FilterFlags(rawValue: 0x100))) }
        for t in [ActionType.calloutTerminating, .calloutUnknown] {
            _ = try bfe.addFilter(filter(flags: .permitIfCalloutUnregistered, action: FilterAction(type: t, calloutKey: CT)))
        }
        do {
            try bfe.addFilter(filter(flags: .disabled))
        } catch let e as FWPError {
            #expect(e.unconfirmedCode)
        }
    }

    @Test("FWP_E_ALREADY_EXISTS for duplicate keys of every object type (R4.2)")
    func duplicates() throws {
        let bfe = try baseEngine()
        expectRefused(.alreadyExists, bfe) { try bfe.addProvider(Provider(providerKey: PK, displayData: DisplayData(name: "P2"))) }
        expectRefused(.alreadyExists, bfe) { try bfe.addSublayer(Sublayer(subLayerKey: SL, displayData: DisplayData(name: "x"), weight: 1)) }
        expectRefused(.alreadyExists, bfe) { try bfe.addCallout(CalloutObject(calloutKey: CT, displayData: DisplayData(name: "x"), applicableLayer: L4)) }
        let ck = UUID()
        try bfe.addProviderContext(ProviderContext(providerContextKey: ck, displayData: DisplayData(name: "ctx")))
        expectRefused(.alreadyExists, bfe) { try bfe.addProviderContext(ProviderContext(providerContextKey: ck, displayData: DisplayData(name: "x"))) }
        var f = filter()
        f.filterKey = UUID()
        try bfe.addFilter(f)
        expectRefused(.alreadyExists, bfe) { try bfe.addFilter(f) }
        // Keys are unique per object type only: a filter may share a provider context's GUID.
        var g = filter("G")
        g.filterKey = ck
        try bfe.addFilter(g)
        expectRefused(.builtinObject, bfe) {
            try bfe.addSublayer(Sublayer(subLayerKey: Sublayer.universalKey, displayData: DisplayData(name: "u"), weight: 1))
        }
    }

    @Test("Unknown references: sublayer, provider, callout, provider context (R4.10)")
    func unknownReferences() throws {
        let bfe = try baseEngine()
        var f = filter()
        f.subLayerKey = UUID()
        expectRefused(.sublayerNotFound, bfe) { try bfe.addFilter(f) }
        f = filter()
        f.providerKey = UUID()
        expectRefused(.providerNotFound, bfe) { try bfe.addFilter(f) }
        expectRefused(.calloutNotFound, bfe) { try bfe.addFilter(filter(action: FilterAction(type: .calloutTerminating, calloutKey: UUID()))) }
        expectRefused(.nullPointer, bfe) { try bfe.addFilter(filter(action: FilterAction(type: .calloutTerminating))) }
        f = filter(flags: .hasProviderContext)
        f.providerContextKey = UUID()
        expectRefused(.providerContextNotFound, bfe) { try bfe.addFilter(f) }
        expectRefused(.providerNotFound, bfe) { try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "s"), providerKey: UUID(), weight: 1)) }
        expectRefused(.invalidActionType, bfe) { try bfe.addFilter(filter(action: FilterAction(type: .continue))) }
    }

    @Test("Callout applicable layer differs from the filter's: FWP_E_INCOMPATIBLE_LAYER (R4.12, code UNCONFIRMED)")
    func calloutLayer() throws {
        let bfe = try baseEngine()
        expectRefused(.incompatibleLayer, bfe) {
            try bfe.addFilter(filter(layer: .authRecvAcceptV4, action: FilterAction(type: .calloutTerminating, calloutKey: CT)))
        }
    }

    @Test("Weights: FWP_UINT8 above 15 and other types are FWP_E_INVALID_WEIGHT (R2.6)")
    func weights() throws {
        let bfe = try baseEngine()
        expectRefused(.invalidWeight, bfe) { try bfe.addFilter(filter(weight: .uint8(16))) }
        expectRefused(.invalidWeight, bfe) { try bfe.addFilter(filter(weight: .uint32(5))) }
        expectRefused(.invalidWeight, bfe) { try bfe.addFilter(filter(weight: .byteBlob([1]))) }
        let id = try bfe.addFilter(filter(weight: .uint8(15)))
        #expect(try bfe.filter(id: id).effectiveWeight >> 60 == 15)
    }

    @Test("Conditions: field not at the layer, Linux cannot supply, type and match-type mismatches, ranges, masks (R3.8-R3.13, R3.20)")
    func conditions() throws {
        let bfe = try baseEngine()
        func add(_ c: FilterCondition, layer: Layer = L4) throws { try bfe.addFilter(filter(layer: layer, [c])) }
        expectRefused(.conditionNotFound, bfe) { try add(FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .uint32(1)), layer: .authListenV4) }
        expectRefused(.conditionNotFound, bfe) { try add(FilterCondition(fieldKey: .ipProtocol, conditionValue: .uint8(6)), layer: .authListenV4) }
        expectRefused(.conditionNotFound, bfe) { try add(FilterCondition(fieldKey: .compartmentId, conditionValue: .uint32(1))) }
        expectRefused(.typeMismatch, bfe) { try add(FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint32(443))) }
        expectRefused(.typeMismatch, bfe) {
            try add(FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .v6AddrMask(addr: Array(repeating: 0, count: 16), prefixLength: 8)))
        }
        expectRefused(.matchTypeMismatch, bfe) { try add(FilterCondition(fieldKey: .aleAppId, matchType: .equalCaseInsensitive, conditionValue: .blob("/x"))) }
        expectRefused(.matchTypeMismatch, bfe) { try add(FilterCondition(fieldKey: .aleAppId, matchType: .flagsAnySet, conditionValue: .blob("/x"))) }
        expectRefused(.matchTypeMismatch, bfe) { try add(FilterCondition(fieldKey: .ipRemotePort, matchType: .prefix, conditionValue: .uint16(1))) }
        expectRefused(.matchTypeMismatch, bfe) { try add(FilterCondition(fieldKey: .ipRemotePort, matchType: .range, conditionValue: .uint16(1))) }
        expectRefused(.matchTypeMismatch, bfe) {
            try add(FilterCondition(fieldKey: .ipRemotePort, matchType: .equal, conditionValue: .range(low: .uint16(1), high: .uint16(2))))
        }
        expectRefused(.invalidRange, bfe) {
            try add(FilterCondition(fieldKey: .ipRemotePort, matchType: .range, conditionValue: .range(low: .uint16(500), high: .uint16(400))))
        }
        expectRefused(.invalidRange, bfe) {
            try add(FilterCondition(fieldKey: .ipRemotePort, matchType: .range, conditionValue: .range(low: .uint16(1), high: .uint32(2))))
        }
        expectRefused(.invalidNetMask, bfe) {
            try add(
                FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .v6AddrMask(addr: Array(repeating: 0, count: 16), prefixLength: 129)),
                layer: .authConnectV6)
        }
        expectRefused(.matchTypeMismatch, bfe) { try add(FilterCondition(fieldKey: .ipRemoteAddress, matchType: .greater, conditionValue: .empty)) }
        // Accepted forms.
        try add(FilterCondition(fieldKey: .ipRemoteAddress, conditionValue: .v4AddrMask(addr: 0x0A00_0000, mask: 0xFF00_0000)))
        try add(FilterCondition(fieldKey: .ipLocalPort, matchType: .range, conditionValue: .range(low: .uint16(1), high: .uint16(1))))
        try add(FilterCondition(fieldKey: .peerName, matchType: .prefix, conditionValue: .blob("example.com")))
        try add(FilterCondition(fieldKey: .lfpCgroupId, conditionValue: .uint64(42)), layer: .resourceReleaseV6)
    }

    @Test("Lifetimes: static -> dynamic, cross-session dynamic, persistent -> static, persistent filter -> non-persistent callout (R4.8, R4.14)")
    func lifetimes() throws {
        let bfe = BaseFilteringEngine()
        let s1 = bfe.openDynamicSession()
        let s2 = bfe.openDynamicSession()
        let dynSL = try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "D"), weight: 1), session: s1)
        var f = filter()
        f.subLayerKey = dynSL
        expectRefused(.lifetimeMismatch, bfe) { try bfe.addFilter(f) }
        expectRefused(.lifetimeMismatch, bfe) { try bfe.addFilter(f, session: s2) }
        try bfe.addFilter(f, session: s1)
        let statSL = try bfe.addSublayer(Sublayer(displayData: DisplayData(name: "S"), weight: 2))
        f = filter(flags: .persistent)
        f.subLayerKey = statSL
        expectRefused(.lifetimeMismatch, bfe) { try bfe.addFilter(f) }
        let c = UUID()
        try bfe.addCallout(CalloutObject(calloutKey: c, displayData: DisplayData(name: "c"), applicableLayer: L4))
        f = filter(flags: .persistent, action: FilterAction(type: .calloutTerminating, calloutKey: c))
        f.subLayerKey = .zero
        expectRefused(.lifetimeMismatch, bfe) { try bfe.addFilter(f) }
        expectRefused(.dynamicSessionInProgress, bfe) { try bfe.addProvider(Provider(displayData: DisplayData(name: "p"), flags: .persistent), session: s1) }
    }

    @Test("Transactions: INCOMPATIBLE_TXN, TXN_IN_PROGRESS, NO_TXN_IN_PROGRESS, TIMEOUT; failed calls do not poison (R4.15, R4.17, R8.11-R8.13)")
    func transactions() throws {
        let bfe = try baseEngine()
        let s = bfe.openSession()
        let other = bfe.openSession()
        try bfe.beginTransaction(s, readOnly: true)
        expectRefused(.incompatibleTxn, bfe) { try bfe.addFilter(filter(), session: s) }
        try bfe.abortTransaction(s)
        try bfe.beginTransaction(s)
        expectRefused(.txnInProgress, bfe) { try bfe.beginTransaction(s) }
        expectRefused(.timeout, bfe) { try bfe.addFilter(filter(), session: other) }
        expectRefused(.timeout, bfe) { try bfe.beginTransaction(other) }
        let id = try bfe.addFilter(filter("A"), session: s)
        #expect(throws: FWPError.self) { try bfe.addFilter(filter(nil), session: s) }
        #expect((try? bfe.filter(id: id)) == nil, "uncommitted objects are invisible outside the transaction")
        #expect(try bfe.filter(id: id, session: s).name == "A")
        try bfe.commitTransaction(s)
        #expect(try bfe.filter(id: id).name == "A")
        expectRefused(.noTxnInProgress, bfe) { try bfe.commitTransaction(s) }
        expectRefused(.noTxnInProgress, bfe) { try bfe.abortTransaction(s) }
        try bfe.beginTransaction(s)
        try bfe.netEventSubscribe(session: other)
        expectRefused(.txnInProgress, bfe) { try bfe.netEventSubscribe(session: s) }
        let id2 = try bfe.addFilter(filter("B"), session: s)
        try bfe.abortTransaction(s)
        #expect((try? bfe.filter(id: id2)) == nil)
    }

    @Test("Deletes: FILTER_NOT_FOUND, IN_USE, WRONG_SESSION, DYNAMIC_SESSION_IN_PROGRESS, BUILTIN_OBJECT (R5.4, R8.4, R8.5)")
    func deletes() throws {
        let bfe = try baseEngine()
        let fid = try bfe.addFilter(filter(action: FilterAction(type: .calloutTerminating, calloutKey: CT)))
        expectRefused(.filterNotFound, bfe) { try bfe.deleteFilter(key: UUID()) }
        expectRefused(.filterNotFound, bfe) { try bfe.deleteFilter(id: 999) }
        expectRefused(.inUse, bfe) { try bfe.deleteCallout(key: CT) }
        expectRefused(.inUse, bfe) { try bfe.deleteSublayer(key: SL) }
        expectRefused(.inUse, bfe) { try bfe.deleteProvider(key: PK) }
        expectRefused(.builtinObject, bfe) { try bfe.deleteSublayer(key: Sublayer.universalKey) }
        let d1 = bfe.openDynamicSession(), d2 = bfe.openDynamicSession()
        let dyn = try bfe.addFilter(filter("D"), session: d1)
        let dynKey = try bfe.filter(id: dyn).filterKey
        expectRefused(.wrongSession, bfe) { try bfe.deleteFilter(key: dynKey, session: d2) }
        expectRefused(.dynamicSessionInProgress, bfe) { try bfe.deleteFilter(id: fid, session: d2) }
        try bfe.deleteFilter(id: fid)
        try bfe.deleteCallout(key: CT)
        try bfe.closeSession(d1)
        #expect((try? bfe.filter(key: dynKey)) == nil, "dynamic objects die with their session")
        try bfe.deleteSublayer(key: SL)
        try bfe.deleteProvider(key: PK)
        #expect(bfe.snapshot().isEmpty)
    }

    @Test(
        "Callout registration: STATUS_FWP_ALREADY_EXISTS, STATUS_FWP_CALLOUT_NOT_FOUND; notifyFn veto is FWP_E_CALLOUT_NOTIFICATION_FAILED (R4.13, R5.5, R5.7)")
    func registration() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .permit, notifyResults: [.addFilter: false])
        try bfe.registerCallout(c)
        expectRefused(.statusAlreadyExists, bfe) { try bfe.registerCallout(ScriptedCallout(calloutKey: CT, returns: .block)) }
        expectRefused(.calloutNotificationFailed, bfe) { try bfe.addFilter(filter(action: FilterAction(type: .calloutUnknown, calloutKey: CT))) }
        try bfe.unregisterCallout(key: CT)
        expectRefused(.statusCalloutNotFound, bfe) { try bfe.unregisterCallout(key: CT) }
        #expect(try !bfe.callout(key: CT).flags.contains(.registered))
    }

    @Test("Enumeration template conditions must be distinct (R3.6)")
    func enumTemplate() throws {
        let bfe = try baseEngine()
        let c = FilterCondition(fieldKey: .ipRemotePort, conditionValue: .uint16(1))
        #expect(throws: FWPError.self) { try bfe.filters(matching: FilterEnumTemplate(conditions: [c, c])) }
    }

    @Test("Security descriptors: absolute form and SIDs without a Linux meaning are ERROR_INVALID_SECURITY_DESCR (R3.14)")
    func securityDescriptors() throws {
        #expect(throws: FWPError.self) { try UserACL.parse(sddl: "D:(A;;CC;;;S-1-22-1-1000)", selfRelative: false) }
        do {
            _ = try UserACL.parse(sddl: "D:(A;;CC;;;S-1-5-32-544)")
            Issue.record("expected refusal")
        } catch let e as FWPError {
            #expect(e.code == .invalidSecurityDescriptor)
        }
    }

    @Test("Load is all-or-nothing and names the failing object")
    func loadAllOrNothing() throws {
        let bfe = BaseFilteringEngine()
        let text = """
            sublayers:
              - { subLayerKey: 11111111-1111-4111-8111-111111111111, displayData: { name: S }, weight: 0x100 }
            filters:
              - { displayData: { name: ok }, layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK } }
              - { layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4, action: { type: FWP_ACTION_BLOCK } }
            """
        let p = try Policy.parse(text)
        do {
            try bfe.load(p)
            Issue.record("expected FWP_E_NULL_DISPLAY_NAME")
        } catch let e as FWPError {
            #expect(e.description == "FWP_E_NULL_DISPLAY_NAME: filters[1].displayData.name is required")
        }
        #expect(bfe.snapshot().isEmpty)
        #expect(bfe.sublayers().count == 1)  // only the built-in universal sublayer
    }
}
