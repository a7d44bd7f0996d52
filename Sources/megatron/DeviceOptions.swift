import ArgumentParser
import Foundation
import MegatronCore

/// Options that choose the compute device.
struct DeviceOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Threads for kernels and OpenBLAS (default: $\(CPUDevice.threadsEnvironmentVariable), else every core).",
        valueName: "n"))
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads \(threads): expected at least 1") }
    }

    func makeDevice() throws -> CPUDevice {
        let count = try threads ?? CPUDevice.defaultThreadCount(environment: ProcessInfo.processInfo.environment)
        return CPUDevice(threads: count)
    }
}
