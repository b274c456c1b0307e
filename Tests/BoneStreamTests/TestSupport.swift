import BoneStreamCore
import BoneStreamDataset
import BoneStreamPhantoms
import Foundation
import Logging
import Testing

/// A fresh temporary folder, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "bonestream") throws {
        path = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ text: String, to name: String) throws {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    func read(_ name: String) -> String? {
        FileManager.default.contents(atPath: path + "/" + name).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The result of running the `bonestream` executable.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The repository root, from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The built `bonestream` executable, beside the test binary.
let bonestreamBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("bonestream").path
}()

/// Starts `bonestream` with `arguments` in `directory`.
func startBonestream(_ arguments: [String], in directory: String) throws -> (Process, Pipe, Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: bonestreamBinary)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    var environment = ProcessInfo.processInfo.environment
    environment["CI"] = "true"  // progress as log lines, never a redrawn bar
    process.environment = environment
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    return (process, out, err)
}

/// Runs `executable` with `arguments` to completion (standard error passed through).
func runExecutable(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: data, as: UTF8.self), stderr: "")
}

/// Runs `bonestream` to completion.
func runBonestream(_ arguments: [String], in directory: String) throws -> CommandResult {
    let (process, out, err) = try startBonestream(arguments, in: directory)
    // Read before waiting so a full pipe cannot stall the child.
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

/// Tiny phantoms, normalized, in a fresh folder, with a config pointing every stage there.
/// `assignments` set the sizes and anything else a suite needs.
func tinyNormalizedPhantoms(_ label: String, _ assignments: [String]) throws -> (TemporaryDirectory, PipelineConfig) {
    let dir = try TemporaryDirectory(label)
    var config = PipelineConfig()
    try config.apply(assignments: ["dataset.root=\(dir.path)/data", "dataset.tables=\(dir.path)/tables",
                                   "preprocess.cache=\(dir.path)/cache"] + assignments)
    try config.validate()
    let logger = Logger(label: "test")
    _ = try PhantomGenerator.run(PhantomOptions(config: config), out: dir.path + "/data", logger: logger, showProgress: false)
    _ = try Normalizer.run(NormalizeOptions(config: config), logger: logger, showProgress: false)
    return (dir, config)
}

/// True when `python3 -c "import <modules>"` succeeds (tests of the Python tools need it; a fresh CI
/// machine may not have the packages).
func pythonCanImport(_ modules: String) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import \(modules)"]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}

/// Polls `condition` every 10 ms for up to `seconds`; its last value.
func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return condition()
}

/// Waits for a process with a deadline (killing it if it overstays) and returns its standard output.
func finish(_ process: Process, _ out: Pipe, seconds: Double = 120) -> String {
    _ = waitFor(seconds) { !process.isRunning }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
}

/// A fresh folder with `pipeline.yaml` (made from the folder's path) taken through phantoms, normalize,
/// split and preprocess by the CLI, as a user would.
func preparedPipeline(_ label: String, _ yaml: (String) -> String) throws -> TemporaryDirectory {
    let dir = try TemporaryDirectory(label)
    try dir.write(yaml(dir.path), to: "pipeline.yaml")
    for stage in ["phantoms", "normalize", "split", "preprocess"] {
        let result = try runBonestream([stage, "--quiet"], in: dir.path)
        try #require(result.status == 0, "\(stage): \(result.stderr)")
    }
    return dir
}

/// The last line of `text` that starts with "{", as a JSON object (a command's `--json` report).
func json(_ text: String) throws -> [String: Any] {
    let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") })
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
}
