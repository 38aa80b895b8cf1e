// swift-tools-version:6.0
// lfp — the Linux Filtering Platform. Module graph (dependencies point one way):
//   lfp -> FilterEngine -> {PolicyCompiler, BPFKit} -> KernelVocabulary -> {FilterModel, KernelABI};
//   BPFKit -> CLibBPF; FilterEngine -> CSpawn (how `lfp run` starts its command)
// Only BPFKit imports C (libbpf); FilterModel is pure Swift and needs no kernel.
import PackageDescription

let package = Package(
    name: "lfp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lfp", targets: ["lfp"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/onevcat/Rainbow.git", from: "4.0.0"),
    ],
    targets: [
        // The one contract between bpf/ and Swift: structs, enums and capacities.
        .target(name: "KernelABI", path: "Sources/KernelABI"),
        // libbpf, as installed by `make deps` (libbpf-dev).
        .systemLibrary(
            name: "CLibBPF", path: "Sources/CLibBPF", pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev"])]),
        // clone3 into a cgroup and signal forwarding for `lfp run`: what Swift cannot do safely.
        .target(name: "CSpawn", path: "Sources/CSpawn"),
        // FWPM vocabulary, policy files, validation, reference arbitration (pure Swift).
        .target(
            name: "FilterModel", dependencies: [.product(name: "Yams", package: "Yams")],
            exclude: ["README.md"]),
        // The one owner of what the kernel and Swift share beyond struct layouts: layer and field
        // ids, which fields the kernel evaluates, flag bits, the workload id, the default errno.
        .target(name: "KernelVocabulary", dependencies: ["FilterModel", "KernelABI"]),
        // FWPM filters -> kernel map images (pure, deterministic).
        .target(name: "PolicyCompiler", dependencies: ["FilterModel", "KernelABI", "KernelVocabulary"]),
        // The only module that talks to libbpf and the bpf() syscall.
        .target(
            name: "BPFKit",
            dependencies: [
                "CLibBPF", "KernelABI", .product(name: "Logging", package: "swift-log"),
            ]),
        // The engine: committed policy, workloads (cgroups + links), event subscriptions.
        .target(
            name: "FilterEngine",
            dependencies: [
                "FilterModel", "KernelVocabulary", "PolicyCompiler", "BPFKit", "KernelABI", "CSpawn",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "lfp",
            dependencies: [
                "FilterEngine", "FilterModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Rainbow", package: "Rainbow"),  // colours for `lfp events` on a terminal
            ]),
        .testTarget(
            name: "FilterModelTests",
            dependencies: [
                "FilterModel", .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Fixtures"]),  // read through #filePath
        .testTarget(name: "PolicyCompilerTests", dependencies: ["PolicyCompiler", "KernelVocabulary", "FilterModel", "KernelABI"]),
        .testTarget(
            name: "KernelPathTests", dependencies: ["FilterEngine", "FilterModel", "PolicyCompiler", "BPFKit", "KernelABI", "KernelVocabulary"],
            exclude: ["Support/client.py"]),  // run by the tests through #filePath
    ],
    swiftLanguageModes: [.v5]
)
