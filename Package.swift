// swift-tools-version:6.0
// BoneStream: a streaming data pipeline and CNN trainer for paediatric bone-age regression.
import PackageDescription

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

        // One library per stage.
        .target(name: "BoneStreamCore", dependencies: [
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            "Yams",
        ]),
        .target(name: "BoneStreamImage", dependencies: ["BoneStreamCore", "CPNGShim"]),
        .target(name: "BoneStreamPhantoms", dependencies: ["BoneStreamCore", "BoneStreamImage", "BoneStreamDataset"]),
        .target(name: "BoneStreamDataset", dependencies: ["BoneStreamCore", "BoneStreamImage", "ZIPFoundation"]),
        .target(name: "BoneStreamSplit", dependencies: ["BoneStreamCore", "BoneStreamDataset"]),

        // The one thin executable.
        .executableTarget(name: "bonestream", dependencies: [
            "BoneStreamCore", "BoneStreamImage", "BoneStreamPhantoms", "BoneStreamDataset", "BoneStreamSplit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "BoneStreamTests", dependencies: [
            "BoneStreamCore", "BoneStreamImage", "BoneStreamPhantoms", "BoneStreamDataset", "BoneStreamSplit",
            "bonestream", "ZIPFoundation",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
