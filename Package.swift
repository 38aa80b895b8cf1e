// swift-tools-version:6.0
// lfp — the Linux Filtering Platform. Module graph (dependencies point one way):
//   lfp -> {FilterService, LFPClient};
//   FilterService (the daemon) -> {FilterEngine, ServiceProtocol}; LFPClient -> {ServiceProtocol, FilterModel};
//   FilterEngine -> {PolicyCompiler, BPFKit} -> KernelVocabulary -> {FilterModel, KernelABI};
//   BPFKit -> CLibBPF; FilterEngine -> CSpawn (how `lfp run` starts its command)
// Only BPFKit imports C (libbpf); FilterModel is pure Swift and needs no kernel.
import PackageDescription

let package = Package(
    name: "lfp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lfp", targets: ["lfp"]),
        // The FWPM management API over the daemon's socket, for tools that manage lfp.
        .library(name: "LFPClient", targets: ["LFPClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
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
        // The daemon's wire protocol (docs/protocol.md): messages and their version, shared by
        // the daemon and the client library. Foundation only.
        .target(name: "ServiceProtocol", dependencies: ["FilterModel"]),
        // The FWPM management API (FwpmEngineOpen0, FwpmFilterAdd0, ...) over the daemon's socket.
        .target(
            name: "LFPClient",
            dependencies: [
                "ServiceProtocol", "FilterModel",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]),
        // `lfp daemon`: the Base Filtering Engine as a service (sessions, persistence, the one
        // writer of the kernel maps).
        .target(
            name: "FilterService",
            dependencies: [
                "FilterEngine", "FilterModel", "ServiceProtocol",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .executableTarget(
            name: "lfp",
            dependencies: [
                "FilterEngine", "FilterModel", "FilterService", "LFPClient", "ServiceProtocol",
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
            name: "KernelPathTests",
            dependencies: [
                "FilterEngine", "FilterModel", "PolicyCompiler", "BPFKit", "KernelABI", "KernelVocabulary", "LFPClient",
                "ServiceProtocol",
            ],
            exclude: ["Support/client.py"]),  // run by the tests through #filePath
    ],
    swiftLanguageModes: [.v5]
)
