// swift-tools-version:6.0
// BoneStream: a streaming data pipeline and CNN trainer for paediatric bone-age regression.
import PackageDescription

// Image kernels: bounds checks off in release builds, where they measurably cost (a 3x3 convolution
// loop ran 5-10x faster with -Ounchecked on this project's machine), and on x86_64 code for the
// Haswell level (AVX2, FMA, BMI2: every x86 server since 2013), which made rotation 1.9x, blur 2.4x
// and flips 2.5x faster here (docs/performance.md). `bonestream` refuses to start on an older CPU;
// BONESTREAM_PORTABLE=1 at build time gives a baseline x86-64 build. Tests build in debug, checked.
#if arch(x86_64)
let portable = Context.environment["BONESTREAM_PORTABLE"] != nil
#else
let portable = true
#endif
let cpuFlags: [String] = portable ? [] : ["-target-cpu", "haswell"]
let cpuDefine: [SwiftSetting] = portable ? [] : [.define("BONESTREAM_HASWELL", .when(configuration: .release))]
let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release))] + cpuDefine
// The engine (and its allocation probe) is optimised in debug builds too, bounds and overflow checks
// kept (-O, not -Ounchecked): unoptimised Swift allocates where optimised code does not (closure
// contexts, temporaries), so the probe must see the code users run, and the gradient checks run faster.
let engineSettings: [SwiftSetting] = kernelSettings + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "BoneStream",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bonestream", targets: ["bonestream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    ],
    targets: [
        // System libraries, each with the Debian package that provides it.
        .systemLibrary(name: "CZMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // libpng reports errors by longjmp, which Swift cannot catch; this shim does the setjmp in C.
        .target(name: "CPNGShim", dependencies: ["CPNG"]),
        // Atomics on memory shared between processes (the shared-memory batch slots).
        .target(name: "CSharedMemory"),
        // CRC-32C with SSE4.2's crc32 instruction (shard records).
        .target(name: "CChecksum", cSettings: [.unsafeFlags(["-O3"])]),
        // The engine's fork-join thread pool (no allocation per loop).
        .target(name: "CWorkPool", cSettings: [.unsafeFlags(["-O2"])]),
        // Counts heap allocations by interposing malloc; linked only into engine-probe.
        .target(name: "CAllocationCounter"),

        // One library per stage.
        .target(name: "BoneStreamCore", dependencies: [
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            "Yams",
        ]),
        .target(name: "BoneStreamImage", dependencies: ["BoneStreamCore", "CPNGShim"], swiftSettings: kernelSettings),
        .target(name: "BoneStreamPhantoms", dependencies: ["BoneStreamCore", "BoneStreamImage", "BoneStreamDataset"]),
        .target(name: "BoneStreamDataset", dependencies: ["BoneStreamCore", "BoneStreamImage", "ZIPFoundation"]),
        .target(name: "BoneStreamSplit", dependencies: ["BoneStreamCore", "BoneStreamDataset"]),
        .target(name: "BoneStreamPreprocess", dependencies: ["BoneStreamCore", "BoneStreamImage", "BoneStreamDataset"],
                swiftSettings: kernelSettings),
        .target(name: "BoneStreamAugment", dependencies: ["BoneStreamCore"], swiftSettings: kernelSettings),
        // Batches, epoch plans and the wire format: everything a producer and a consumer share, no transport.
        .target(name: "BoneStreamBatch", dependencies: ["BoneStreamCore", "BoneStreamAugment", "BoneStreamPreprocess", "BoneStreamDataset"]),
        // ZeroMQ sockets and shared-memory batch slots: the only module that knows about the transport.
        .target(name: "BoneStreamTransport", dependencies: ["CZMQ", "CSharedMemory"]),
        // The CNN engine over OpenBLAS: layers with hand-written backward passes, the paper's models, checkpoints.
        .target(name: "BoneStreamEngine", dependencies: ["BoneStreamCore", "COpenBLAS", "CWorkPool"], swiftSettings: engineSettings),
        // The trainer, evaluation, prediction and the run report: over any BatchSource, no transport.
        .target(name: "BoneStreamTrain", dependencies: ["BoneStreamCore", "BoneStreamBatch", "BoneStreamEngine", "BoneStreamAugment",
                                                        "BoneStreamPreprocess", "BoneStreamImage", "BoneStreamDataset",
                                                        .product(name: "Logging", package: "swift-log")]),
        // Shards: the wire at rest (record, verify, replay plans); no transport.
        .target(name: "BoneStreamShard", dependencies: ["BoneStreamCore", "BoneStreamBatch", "CChecksum",
                                                        .product(name: "Logging", package: "swift-log")]),
        // The streaming daemons: coordinator, worker, sink, replay.
        .target(name: "BoneStreamStream", dependencies: ["BoneStreamCore", "BoneStreamAugment", "BoneStreamBatch", "BoneStreamTransport", "BoneStreamShard",
                                                         "BoneStreamPreprocess", "BoneStreamDataset",
                                                         .product(name: "Logging", package: "swift-log")]),

        // The one thin executable.
        .executableTarget(name: "bonestream", dependencies: [
            "BoneStreamCore", "BoneStreamImage", "BoneStreamPhantoms", "BoneStreamDataset", "BoneStreamSplit",
            "BoneStreamPreprocess", "BoneStreamAugment", "BoneStreamBatch", "BoneStreamTransport", "BoneStreamStream", "BoneStreamEngine", "BoneStreamTrain", "BoneStreamShard",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: cpuDefine),
        // The engine's allocation check (issue 5), its own process because it counts every malloc in it.
        .executableTarget(name: "engine-probe", dependencies: ["BoneStreamEngine", "CAllocationCounter", "CWorkPool"],
                         swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),

        .testTarget(name: "BoneStreamTests", dependencies: [
            "BoneStreamCore", "BoneStreamImage", "BoneStreamPhantoms", "BoneStreamDataset", "BoneStreamSplit",
            "BoneStreamPreprocess", "BoneStreamAugment", "BoneStreamBatch", "BoneStreamTransport", "BoneStreamStream", "BoneStreamEngine", "BoneStreamTrain", "BoneStreamShard", "bonestream", "engine-probe", "ZIPFoundation",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
