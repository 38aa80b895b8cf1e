// One test per reference case (Fixtures/*.yaml, the arbitration cases C01–C66), named after the
// case and the rules it cites. Generated from the fixtures; cases that need sockets, pend/complete
// or flow contexts are listed as disabled with the reason. "(policy)" marks cases that pin an
// lfp choice rather than proven Windows behaviour.

import Testing

@testable import FilterModel

@Suite("Reference cases")
struct ReferenceCaseTests {

    // MARK: a-order.yaml

    @Test("C01 Higher weight wins inside a sublayer (R1.3, R1.4, R1.13, R3.11)")
    func caseC01() throws { try FixtureRunner.run("C01") }

    @Test("C02 Non-matching high-weight filter is skipped (R1.3, R1.4)")
    func caseC02() throws { try FixtureRunner.run("C02") }

    @Test("C03 Inspection callout sees the packet and cannot terminate (R1.4, R1.9)")
    func caseC03() throws { try FixtureRunner.run("C03") }

    @Test("C04 Terminating filter hides lower-weight callouts of the same sublayer (R1.4, R1.5)")
    func caseC04() throws { try FixtureRunner.run("C04") }

    @Test("C05 Nothing matches: layer default (R1.19, R1.9) (policy)")
    func caseC05() throws { try FixtureRunner.run("C05") }

    // MARK: b-sublayers.yaml

    @Test("C06 Block in a lower sublayer overrides a soft permit (R1.12, R1.13, R1.15)")
    func caseC06() throws { try FixtureRunner.run("C06") }

    @Test("C07 Static block is hard and cannot be re-permitted (R1.13, R1.15)")
    func caseC07() throws { try FixtureRunner.run("C07") }

    @Test("C08 Hard permit beats a lower sublayer's static block (R1.14, R1.16)")
    func caseC08() throws { try FixtureRunner.run("C08") }

    @Test("C09 Sublayer order is by weight, not by insertion order (R1.2, R1.13)")
    func caseC09() throws { try FixtureRunner.run("C09") }

    @Test("C10 Soft block from a callout is overridden by a later permit (R1.12, R1.13, R1.15)")
    func caseC10() throws { try FixtureRunner.run("C10") }

    @Test("C11 Callout that follows the guidelines produces a hard block (R1.13, R5.11)")
    func caseC11() throws { try FixtureRunner.run("C11") }

    @Test("C12 Veto of a hard permit (R1.16, R5.12, R8.20, R8.23)")
    func caseC12() throws { try FixtureRunner.run("C12") }

    @Test("C13 Callout declines to veto (R1.17)")
    func caseC13() throws { try FixtureRunner.run("C13") }

    @Test("C14 Writes other than BLOCK without the right are ignored (R1.17, R1.18) (policy)")
    func caseC14() throws { try FixtureRunner.run("C14") }

    @Test("C15 Hard permit with a terminating callout filter (R1.14, R5.11, R5.13)")
    func caseC15() throws { try FixtureRunner.run("C15") }

    @Test("C16 Terminating callout returning CONTINUE counts as BLOCK (R1.9, R1.4)")
    func caseC16() throws { try FixtureRunner.run("C16") }

    @Test("C17 Unknown callout CONTINUE falls through (R1.9, R1.4, R1.10)")
    func caseC17() throws { try FixtureRunner.run("C17") }

    @Test("C18 No cross-layer arbitration (R1.6, R7.6) [static probes only; kernel steps run in KernelPathTests/ReferenceKernelCaseTests]")
    func caseC18() throws { try FixtureRunner.run("C18") }

    // MARK: c-callouts.yaml

    @Test("C19 Terminating callout added but never registered (R4.11, R5.6) (policy)")
    func caseC19() throws { try FixtureRunner.run("C19") }

    @Test("C20 Inspection callout not registered is ignored (R5.6)")
    func caseC20() throws { try FixtureRunner.run("C20") }

    @Test("C21 Unknown callout that is unregistered later (R5.6, R5.7)")
    func caseC21() throws { try FixtureRunner.run("C21") }

    @Test("C22a PERMIT_IF_CALLOUT_UNREGISTERED fails open (with F2, then after registration) (R5.6, R1.15) (policy)")
    func caseC22a() throws { try FixtureRunner.run("C22a") }

    @Test("C22b PERMIT_IF_CALLOUT_UNREGISTERED fails open (variant without F2) (R5.6, R1.15) (policy)")
    func caseC22b() throws { try FixtureRunner.run("C22b") }

    @Test(
        "C23 Unregister blocked by outstanding flow context (R5.7, R5.14, R5.15)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC23() throws { try FixtureRunner.run("C23") }

    @Test(
        "C24 Duplicate registration and flow-context misuse (R5.5, R5.14)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC24() throws { try FixtureRunner.run("C24") }

    @Test("C25 notifyFn sequencing and veto of an add (R4.13, R5.8, R5.9, R5.10) [BFE steps run on the model]")
    func caseC25() throws { try FixtureRunner.run("C25") }

    // MARK: d-conditions.yaml

    @Test("C26 OR of consecutive same-field conditions, AND across fields (R3.3, R3.4)")
    func caseC26() throws { try FixtureRunner.run("C26") }

    @Test("C27 Negative OR trap (R3.4, R3.5) (policy)")
    func caseC27() throws { try FixtureRunner.run("C27") }

    @Test("C28a Ordered comparisons on UINT16 ports (FWP_MATCH_GREATER) (R3.7, R3.8)")
    func caseC28a() throws { try FixtureRunner.run("C28a") }

    @Test("C28b Ordered comparisons on UINT16 ports (FWP_MATCH_LESS) (R3.7, R3.8)")
    func caseC28b() throws { try FixtureRunner.run("C28b") }

    @Test("C28c Ordered comparisons on UINT16 ports (FWP_MATCH_GREATER_OR_EQUAL) (R3.7, R3.8)")
    func caseC28c() throws { try FixtureRunner.run("C28c") }

    @Test("C28d Ordered comparisons on UINT16 ports (FWP_MATCH_LESS_OR_EQUAL) (R3.7, R3.8)")
    func caseC28d() throws { try FixtureRunner.run("C28d") }

    @Test("C28e Ordered comparisons on UINT16 ports (FWP_MATCH_EQUAL) (R3.7, R3.8)")
    func caseC28e() throws { try FixtureRunner.run("C28e") }

    @Test("C28f Ordered comparisons on UINT16 ports (FWP_MATCH_NOT_EQUAL) (R3.7, R3.8)")
    func caseC28f() throws { try FixtureRunner.run("C28f") }

    @Test("C29a Inclusive range and bad range (inclusive ends) (R3.8, R3.13)")
    func caseC29a() throws { try FixtureRunner.run("C29a") }

    @Test("C29b Inclusive range and bad range (low above high is refused) (R3.8, R3.13)")
    func caseC29b() throws { try FixtureRunner.run("C29b") }

    @Test("C29c Inclusive range and bad range (ends of different types are refused) (R3.8, R3.13)")
    func caseC29c() throws { try FixtureRunner.run("C29c") }

    @Test("C30a IPv4 address/mask in host order (R3.9, R3.10, R3.11)")
    func caseC30a() throws { try FixtureRunner.run("C30a") }

    @Test("C30b IPv4 address/mask in host order (network-order values do not match) (R3.9, R3.10, R3.11)")
    func caseC30b() throws { try FixtureRunner.run("C30b") }

    @Test("C31a IPv6 prefix match (R3.10, R3.13)")
    func caseC31a() throws { try FixtureRunner.run("C31a") }

    @Test("C31b IPv6 prefix match (prefix length 129 is refused) (R3.10, R3.13)")
    func caseC31b() throws { try FixtureRunner.run("C31b") }

    @Test("C32a Flag match types on FWPM_CONDITION_FLAGS (FWP_MATCH_FLAGS_ALL_SET) (R3.8, R3.17, R3.18)")
    func caseC32a() throws { try FixtureRunner.run("C32a") }

    @Test("C32b Flag match types on FWPM_CONDITION_FLAGS (FWP_MATCH_FLAGS_ANY_SET) (R3.8, R3.17, R3.18)")
    func caseC32b() throws { try FixtureRunner.run("C32b") }

    @Test("C32c Flag match types on FWPM_CONDITION_FLAGS (FWP_MATCH_FLAGS_NONE_SET) (R3.8, R3.17, R3.18)")
    func caseC32c() throws { try FixtureRunner.run("C32c") }

    @Test("C33a Match-type / value-type validation at add (UINT32 value for a UINT16 port) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33a() throws { try FixtureRunner.run("C33a") }

    @Test("C33b Match-type / value-type validation at add (case-insensitive match on a byte blob) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33b() throws { try FixtureRunner.run("C33b") }

    @Test("C33c Match-type / value-type validation at add (flag match on a byte blob) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33c() throws { try FixtureRunner.run("C33c") }

    @Test("C33d Match-type / value-type validation at add (match type out of range) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33d() throws { try FixtureRunner.run("C33d") }

    @Test("C33e Match-type / value-type validation at add (remote address at AUTH_LISTEN) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33e() throws { try FixtureRunner.run("C33e") }

    @Test("C33f Match-type / value-type validation at add (IP protocol at AUTH_LISTEN) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33f() throws { try FixtureRunner.run("C33f") }

    @Test("C33g Match-type / value-type validation at add (one condition announced, none supplied) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33g() throws { try FixtureRunner.run("C33g") }

    @Test("C33h Match-type / value-type validation at add (NOT_EQUAL on the protocol is accepted) (R3.8, R3.9, R3.13, R3.20)")
    func caseC33h() throws { try FixtureRunner.run("C33h") }

    @Test("C34a PREFIX / NOT_PREFIX are suffix tests (PREFIX with a matching suffix) (R3.8)")
    func caseC34a() throws { try FixtureRunner.run("C34a") }

    @Test("C34b PREFIX / NOT_PREFIX are suffix tests (PREFIX with a real prefix does not match) (R3.8)")
    func caseC34b() throws { try FixtureRunner.run("C34b") }

    @Test("C34c PREFIX / NOT_PREFIX are suffix tests (NOT_PREFIX) (R3.8)")
    func caseC34c() throws { try FixtureRunner.run("C34c") }

    @Test("C35 FWP_EMPTY fields (R3.12, R7.6) (policy)")
    func caseC35() throws { try FixtureRunner.run("C35") }

    @Test("C36a ALE_USER_ID via security descriptor (granting uid 1000) (R3.14, R3.16)")
    func caseC36a() throws { try FixtureRunner.run("C36a") }

    @Test("C36b ALE_USER_ID via security descriptor (explicit deny for uid 1000) (R3.14, R3.16)")
    func caseC36b() throws { try FixtureRunner.run("C36b") }

    @Test("C36c ALE_USER_ID via security descriptor (absolute form is refused) (R3.14, R3.16)")
    func caseC36c() throws { try FixtureRunner.run("C36c") }

    @Test("C37 App ID equality is exact bytes (R3.8, R3.15)")
    func caseC37() throws { try FixtureRunner.run("C37") }

    // MARK: e-weights.yaml

    @Test("C38 UINT8 range beats any auto or explicit-below-2^60 weight (R2.2, R2.3, R2.5)")
    func caseC38() throws { try FixtureRunner.run("C38") }

    @Test("C39 Range 1 beats FWP_EMPTY regardless of specificity (R2.2)")
    func caseC39() throws { try FixtureRunner.run("C39") }

    @Test("C40 Auto weighting prefers the more specific filter (R2.2, R2.4) (policy)")
    func caseC40() throws { try FixtureRunner.run("C40") }

    @Test("C41a Explicit weights are verbatim; invalid weights rejected (verbatim UINT64, range 0) (R2.2, R2.5, R2.6)")
    func caseC41a() throws { try FixtureRunner.run("C41a") }

    @Test("C41b Explicit weights are verbatim; invalid weights rejected (range above 15) (R2.2, R2.5, R2.6)")
    func caseC41b() throws { try FixtureRunner.run("C41b") }

    @Test("C41c Explicit weights are verbatim; invalid weights rejected (weight of type FWP_UINT32) (R2.2, R2.5, R2.6)")
    func caseC41c() throws { try FixtureRunner.run("C41c") }

    @Test("C42 Default sublayer (R4.9) (policy)")
    func caseC42() throws { try FixtureRunner.run("C42") }

    // MARK: f-invalid.yaml

    @Test("C43a Missing display name (filter) (R4.1)")
    func caseC43a() throws { try FixtureRunner.run("C43a") }

    @Test("C43b Missing display name (sublayer) (R4.1)")
    func caseC43b() throws { try FixtureRunner.run("C43b") }

    @Test("C43c Missing display name (provider) (R4.1)")
    func caseC43c() throws { try FixtureRunner.run("C43c") }

    @Test("C43d Missing display name (callout) (R4.1)")
    func caseC43d() throws { try FixtureRunner.run("C43d") }

    @Test("C44 PERSISTENT | BOOTTIME (R4.5)")
    func caseC44() throws { try FixtureRunner.run("C44") }

    @Test("C45 DISABLED on add (R4.7)")
    func caseC45() throws { try FixtureRunner.run("C45") }

    @Test("C46a PERMIT_IF_CALLOUT_UNREGISTERED on the wrong action (PERMIT) (R4.6)")
    func caseC46a() throws { try FixtureRunner.run("C46a") }

    @Test("C46b PERMIT_IF_CALLOUT_UNREGISTERED on the wrong action (BLOCK) (R4.6)")
    func caseC46b() throws { try FixtureRunner.run("C46b") }

    @Test("C46c PERMIT_IF_CALLOUT_UNREGISTERED on the wrong action (CALLOUT_INSPECTION) (R4.6)")
    func caseC46c() throws { try FixtureRunner.run("C46c") }

    @Test("C46d PERMIT_IF_CALLOUT_UNREGISTERED on the wrong action (accepted on terminating and unknown callouts) (R4.6)")
    func caseC46d() throws { try FixtureRunner.run("C46d") }

    @Test("C47a Keys and references (duplicate filterKey) (R4.2, R4.10, R4.12)")
    func caseC47a() throws { try FixtureRunner.run("C47a") }

    @Test("C47b Keys and references (all-zero filterKeys are generated) (R4.2, R4.10, R4.12)")
    func caseC47b() throws { try FixtureRunner.run("C47b") }

    @Test("C47c Keys and references (unknown layerKey) (R4.2, R4.10, R4.12)")
    func caseC47c() throws { try FixtureRunner.run("C47c") }

    @Test("C47d Keys and references (unknown subLayerKey) (R4.2, R4.10, R4.12)")
    func caseC47d() throws { try FixtureRunner.run("C47d") }

    @Test("C47e Keys and references (unknown providerKey) (R4.2, R4.10, R4.12)")
    func caseC47e() throws { try FixtureRunner.run("C47e") }

    @Test("C47f Keys and references (callout object never added) (R4.2, R4.10, R4.12)")
    func caseC47f() throws { try FixtureRunner.run("C47f") }

    @Test("C47g Keys and references (callout applicableLayer is another layer) (R4.2, R4.10, R4.12)")
    func caseC47g() throws { try FixtureRunner.run("C47g") }

    @Test("C48 Lifetime and transaction errors (R4.8, R4.14, R4.15, R8.11) [BFE steps run on the model]")
    func caseC48() throws { try FixtureRunner.run("C48") }

    @Test("C49 Deleting referenced or foreign objects (R5.4, R8.4, R8.5) [BFE steps run on the model]")
    func caseC49() throws { try FixtureRunner.run("C49") }

    // MARK: g-pend.yaml

    @Test(
        "C50 Pend at connect, complete with PERMIT (R6.2, R6.3, R6.5, R1.21, R3.19, R7.6)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC50() throws { try FixtureRunner.run("C50") }

    @Test(
        "C51 Pend at connect, complete with BLOCK (R6.5, R1.21, R8.20) (policy)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC51() throws { try FixtureRunner.run("C51") }

    @Test(
        "C52 Reauthorization cannot be pended (R6.4, R7.8, R7.9)", .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests")
    )
    func caseC52() throws { try FixtureRunner.run("C52") }

    @Test(
        "C53 Pend without the write right is refused by policy (R6.3, R1.17, R1.18) [static probes only; kernel steps run in KernelPathTests/ReferenceKernelCaseTests]"
    )
    func caseC53() throws { try FixtureRunner.run("C53") }

    @Test(
        "C54a Pend at RECV_ACCEPT completes via re-injection, not reauthorization (allow path) (R6.7)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC54a() throws { try FixtureRunner.run("C54a") }

    @Test(
        "C54b Pend at RECV_ACCEPT completes via re-injection, not reauthorization (deny path) (R6.7)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC54b() throws { try FixtureRunner.run("C54b") }

    @Test(
        "C55 Pend at RESOURCE_ASSIGNMENT and AUTH_LISTEN (R6.1, R6.2, R6.6)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC55() throws { try FixtureRunner.run("C55") }

    @Test("C56 Layers that cannot pend (R6.1, R6.8)", .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC56() throws { try FixtureRunner.run("C56") }

    @Test(
        "C57a Pend endpoint closure with FwpsPendClassify0 (R6.8, R6.9, R5.16)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC57a() throws { try FixtureRunner.run("C57a") }

    @Test(
        "C57b Pend endpoint closure with FwpsPendClassify0 (completed with a NULL classifyOut) (R6.8, R6.9, R5.16)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/ReferenceKernelCaseTests"))
    func caseC57b() throws { try FixtureRunner.run("C57b") }

    // MARK: h-lifetime.yaml

    @Test(
        "C58 TCP client lifecycle and handle pairing (R7.2, R7.3, R7.5, R7.6)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/LifetimeCaseTests"))
    func caseC58() throws { try FixtureRunner.run("C58") }

    @Test(
        "C59 UDP socket talking to three peers (R7.3, R7.6, R7.7)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/LifetimeCaseTests"))
    func caseC59() throws { try FixtureRunner.run("C59") }

    @Test(
        "C60 TCP listener with two accepted connections (R7.3, R7.4) (policy)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/LifetimeCaseTests"))
    func caseC60() throws { try FixtureRunner.run("C60") }

    @Test(
        "C61 Assignment/release accounting under failures (R7.2) (policy)",
        .disabled("kernel only: runs against the kernel in KernelPathTests/LifetimeCaseTests"))
    func caseC61() throws { try FixtureRunner.run("C61") }

    // MARK: i-sessions.yaml

    @Test("C62a Dynamic session cleanup (dynamic session) (R8.2, R8.3) [BFE steps run on the model]")
    func caseC62a() throws { try FixtureRunner.run("C62a") }

    @Test("C62b Dynamic session cleanup (static session survives close, not a restart) (R8.2, R8.3) [BFE steps run on the model]")
    func caseC62b() throws { try FixtureRunner.run("C62b") }

    @Test("C62c Dynamic session cleanup (persistent objects survive a restart) (R8.2, R8.3) [BFE steps run on the model]")
    func caseC62c() throws { try FixtureRunner.run("C62c") }

    @Test("C63 Transaction semantics (R4.17, R8.11, R8.12, R8.14) [BFE steps run on the model]")
    func caseC63() throws { try FixtureRunner.run("C63") }

    @Test("C64a Drop event contents (R8.19, R8.20, R8.23, R1.21) [static probes only; kernel steps run in KernelPathTests/ReferenceKernelCaseTests]")
    func caseC64a() throws { try FixtureRunner.run("C64a") }

    @Test(
        "C64b Drop event contents (absorbed callout block logs nothing) (R8.19, R8.20, R8.23, R1.21) [static probes only; kernel steps run in KernelPathTests/ReferenceKernelCaseTests]"
    )
    func caseC64b() throws { try FixtureRunner.run("C64b") }

    @Test("C65 Disabled persistent filters (R8.8, R8.15, R8.16) (policy) [BFE steps run on the model]")
    func caseC65() throws { try FixtureRunner.run("C65") }

    @Test("C66 Enumeration flags (R8.15)")
    func caseC66() throws { try FixtureRunner.run("C66") }

}
