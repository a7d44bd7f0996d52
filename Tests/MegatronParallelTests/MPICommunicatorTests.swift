import Foundation
import XCTest

/// Runs the conformance suite on MPI: `mpirun -np N communicator-conformance`, built beside this
/// test bundle. Needs OpenMPI's mpirun (scripts/setup.sh installs it).
final class MPICommunicatorTests: XCTestCase {
    func testConformanceUnderMPIRunWithTwoAndFourProcesses() throws {
        for processes in [2, 4] {
            let (status, output) = try MPIRun.run(processes: processes, executable: "communicator-conformance", arguments: [])
            XCTAssertEqual(status, 0, output)
            for rank in 0 ..< processes {
                XCTAssertTrue(output.contains("rank \(rank) of \(processes):"), "rank \(rank) did not report:\n\(output)")
            }
        }
    }
}

/// Launches a product of this package under OpenMPI's mpirun and collects its output.
enum MPIRun {
    /// The build directory: where the test bundle (on Linux, an executable) and the package's
    /// executables live.
    static var productsDirectory: URL {
        let bundle = Bundle(for: MPICommunicatorTests.self).bundleURL
        return bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
    }

    static func run(processes: Int, executable: String, arguments: [String], timeout: TimeInterval = 300)
        throws -> (status: Int32, output: String) {
        let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let mpirun else { throw XCTSkip("mpirun not found: run scripts/setup.sh (installs openmpi-bin)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        // Root needs --allow-run-as-root; more ranks than cores need --oversubscribe.
        process.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", String(processes),
                             productsDirectory.appendingPathComponent(executable).path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
