import ArgumentParser
import BoneStreamCore
import Foundation
import Logging

@main
struct BoneStreamCommand: ParsableCommand {
    static func main() {
        CPUCheck.requireBuildTarget()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "bonestream",
        abstract: "A streaming data pipeline and CNN trainer for paediatric bone age from hand radiographs.",
        discussion: """
            Stages: phantoms (synthetic data) -> normalize -> split -> preprocess. `bonestream run` does them all on the \
            embedded default configuration. Every stage reads pipeline.yaml (see docs/config.md).
            """,
        subcommands: [RunCommand.self, PhantomsCommand.self, NormalizeCommand.self, SplitCommand.self, PreprocessCommand.self,
                      PreviewCommand.self, ProduceCommand.self, TrainCommand.self, EvaluateCommand.self, PredictCommand.self, ReportCommand.self, WorkerCommand.self, SinkCommand.self,
                      StatusCommand.self, ScaleCommand.self, StopCommand.self, RecordCommand.self, ReplayCommand.self, ShardCommand.self, ModelCommand.self, BenchCommand.self, ConfigCommand.self]
    )
}

/// Options every stage command takes: which configuration, per-key overrides and log level.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "pipeline.yaml to read (default: ./pipeline.yaml if present, else the embedded default).")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override one key, e.g. --set split.seed=7 (repeatable).", valueName: "key=value"))
    var assignments: [String] = []

    @Option(name: .long, help: ArgumentHelp("Lay a named profile over the file: \(PipelineProfiles.names.joined(separator: ", ")) (docs/config.md).", valueName: "name"))
    var profile: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Flag(name: .long, help: "No progress bar or progress lines.")
    var quiet = false

    /// Sets up logging and loads the effective configuration; `flags` are (key, value, flag name)
    /// from the command's own options, applied after the file and before --set.
    func load(flags: [(String, String?, String)] = []) throws -> PipelineConfig {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ConfigError(source: "--log-level", message: "expected one of trace, debug, info, notice, warning, error; got '\(logLevel)'")
        }
        Log.bootstrap(level: level)
        var result: PipelineConfig
        if let path = config {
            result = try PipelineConfig.load(path: path)
        } else if FileManager.default.fileExists(atPath: "pipeline.yaml") {
            result = try PipelineConfig.load(path: "pipeline.yaml")
        } else {
            result = PipelineConfig()
        }
        if let profile { try result.apply(profile: profile) }
        for (key, value, flag) in flags {
            if let value { try result.override(key, with: value, flag: flag) }
        }
        try result.apply(assignments: assignments)
        try result.validate()
        return result
    }
}

/// Runs `body`, printing any error as one clear line and exiting 1 instead of a trace.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Prints a line to standard output at once (unbuffered), so summaries and stderr's progress lines
/// keep their order in a log.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A release build's kernels use Haswell-level instructions (AVX2, FMA, BMI2) on x86_64; on a CPU
/// without them they would die with SIGILL, so say so first.
enum CPUCheck {
    static func requireBuildTarget() {
        #if BONESTREAM_HASWELL
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        let missing = ["avx2", "fma", "bmi2"].filter { !flags.contains($0) }
        if !missing.isEmpty {
            FileHandle.standardError.write(Data("error: this build of bonestream uses Haswell-level instructions and this CPU lacks \(missing.joined(separator: ", ")); rebuild with BONESTREAM_PORTABLE=1 swift build -c release\n".utf8))
            exit(1)
        }
        #endif
    }
}
