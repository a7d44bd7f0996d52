// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-megatron",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "megatron", targets: ["megatron"]),
        .executable(name: "megatron-bench", targets: ["megatron-bench"]),
        .library(name: "MegatronCore", targets: ["MegatronCore"]),
        .library(name: "MegatronModels", targets: ["MegatronModels"]),
        .library(name: "MegatronData", targets: ["MegatronData"]),
        .library(name: "MegatronParallel", targets: ["MegatronParallel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // OpenBLAS's cblas.h (Debian: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // OpenMPI's mpi.h and a shim for its macro handles (Debian: libopenmpi-dev).
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "mpi",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        // Hot loops in portable C11, compiled twice (AVX2+FMA+F16C and baseline x86-64)
        // and chosen at load time.
        .target(name: "CKernels"),
        .target(name: "MegatronCore", dependencies: ["CBLAS", "CKernels"]),
        // The models (GPT, BERT): configuration, flat parameter layout, forward and backward, over
        // MegatronData's samples. Their tensor-parallel layers communicate over a MegatronParallel group.
        .target(name: "MegatronModels", dependencies: ["MegatronCore", "CKernels", "MegatronParallel", "MegatronData"]),
        // Tokenizers and datasets.
        .target(name: "MegatronData", dependencies: ["MegatronCore"]),
        // Communicators (MPI, in-process), the rank grid and its process groups.
        .target(name: "MegatronParallel", dependencies: ["CMPI", "MegatronCore"]),
        // Optimizer, learning-rate schedule, the training loop and its log.
        .target(name: "MegatronTraining", dependencies: ["MegatronCore", "MegatronModels", "MegatronParallel"]),
        // The option groups of Megatron's flags (and their checks), shared by the two executables.
        .target(
            name: "MegatronCommandLine",
            dependencies: [
                "MegatronCore", "MegatronModels", "MegatronTraining", "MegatronData", "MegatronParallel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The HTTP server over the inference engine: Megatron's and OpenAI's APIs, on Hummingbird.
        .target(
            name: "MegatronServing",
            dependencies: [
                "MegatronModels", "MegatronData",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The training and inference tool.
        .executableTarget(
            name: "megatron",
            dependencies: [
                "MegatronCommandLine", "MegatronCore", "MegatronModels", "MegatronTraining", "MegatronData", "MegatronParallel", "MegatronServing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks: speed figures, apart from the training tool.
        .executableTarget(
            name: "megatron-bench",
            dependencies: [
                "MegatronCommandLine", "MegatronCore", "MegatronModels", "MegatronTraining", "MegatronData", "MegatronParallel", "CMPI",
                "MegatronServing", "ServingClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "MegatronCoreTests", dependencies: ["MegatronCore", "CKernels", "CBLAS"]),
        .testTarget(name: "MegatronModelsTests", dependencies: ["MegatronModels", "MegatronCore", "MegatronParallel"]),
        .testTarget(name: "MegatronDataTests", dependencies: ["MegatronData"]),
        // The communicator conformance suite, and its runner for MPI worlds under mpirun.
        .target(name: "CommunicatorConformance", dependencies: ["MegatronParallel"], path: "Tests/CommunicatorConformance"),
        .executableTarget(name: "communicator-conformance", dependencies: ["CommunicatorConformance", "MegatronParallel"],
                          path: "Tests/CommunicatorConformanceRunner"),
        .testTarget(name: "MegatronParallelTests", dependencies: ["MegatronParallel", "CommunicatorConformance"]),
        .testTarget(name: "MegatronTrainingTests",
                    dependencies: ["MegatronTraining", "MegatronModels", "MegatronCore", "MegatronParallel", "MegatronData"]),
        // A small HTTP/1.1 client over loopback for the serving tests and the serving benchmark's load generator.
        .target(name: "ServingClient"),
        // `megatron pretrain`, `preprocess-data`, `generate` and `serve` run as a user runs them (the
        // executable); the datasets they write are read back through MegatronData.
        .testTarget(name: "CommandTests", dependencies: ["MegatronData", "MegatronCore", "MegatronTraining", "MegatronModels", "ServingClient"]),
        // The flags of `megatron pretrain` parsed and planned in-process.
        .testTarget(name: "MegatronCommandLineTests",
                    dependencies: ["MegatronCommandLine", "MegatronCore", "MegatronModels",
                                   .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    ]
)
