import Foundation
import Testing

/// The suites whose tests start `mpirun` (MPICommunicatorTests, MPIPretrainTests). They run one
/// test at a time, never beside each other: each job's ranks want the machine's cores, and the
/// tests' time limits assume they have them. They are skipped where OpenMPI's mpirun is not
/// installed (scripts/setup.sh installs openmpi-bin).
@Suite(.serialized, .enabled(if: MPIRun.mpirun != nil, "mpirun not found: run scripts/setup.sh (installs openmpi-bin)"))
enum MPITests {}

/// A product of this package started under OpenMPI's mpirun (or alone), its output going to a
/// temporary file that can be read while it runs.
final class MPIRun {
    let process = Process()
    let outputFile: URL
    /// Set in every rank's environment, to find this run's processes.
    let marker = UUID().uuidString

    /// The build directory: where the test bundle (on Linux, an executable) and the package's
    /// executables live.
    static var productsDirectory: URL {
        let bundle = Bundle(for: MPIRun.self).bundleURL
        return bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
    }

    /// OpenMPI's mpirun, nil where it is not installed.
    static let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

    struct MPIRunNotFound: Error, CustomStringConvertible {
        var description: String { "mpirun not found: run scripts/setup.sh (installs openmpi-bin)" }
    }

    /// Starts `executable` with `processes` ranks under mpirun, or directly when `processes` is nil.
    init(processes: Int?, executable: String, arguments: [String]) throws {
        let path = Self.productsDirectory.appendingPathComponent(executable).path
        if let processes {
            guard let mpirun = Self.mpirun else { throw MPIRunNotFound() }
            process.executableURL = URL(fileURLWithPath: mpirun)
            // Root needs --allow-run-as-root; more ranks than cores need --oversubscribe.
            process.arguments = ["--allow-run-as-root", "--oversubscribe", "-x", "MEGATRON_TEST_MARKER=\(marker)",
                                 "-np", String(processes), path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("mpirun-\(marker).log")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: outputFile)
    }

    var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    /// Waits up to `timeout` seconds for the run to end; returns its exit status, nil on timeout.
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { return nil }
        return process.terminationStatus
    }

    /// Runs to completion (at most `timeout` seconds) and returns the exit status and output; a run
    /// that does not finish in time is an issue of the calling test, at `sourceLocation`.
    static func run(processes: Int?, executable: String, arguments: [String], timeout: TimeInterval = 300,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int32, output: String) {
        let run = try MPIRun(processes: processes, executable: executable, arguments: arguments)
        guard let status = run.wait(timeout: timeout) else {
            run.process.terminate()
            Issue.record("\(executable) did not finish within \(Int(timeout)) s:\n\(run.output)", sourceLocation: sourceLocation)
            return (-1, run.output)
        }
        return (status, run.output)
    }

    /// The process id of world rank `rank` of this run, once it has started.
    func pid(ofRank rank: Int) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                  let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let variables = Set(environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            if variables.contains("MEGATRON_TEST_MARKER=\(marker)") && variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") {
                return pid
            }
        }
        return nil
    }
}
