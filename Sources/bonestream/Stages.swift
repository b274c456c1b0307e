import BoneStreamCore
import BoneStreamDataset
import BoneStreamPhantoms
import BoneStreamPreprocess
import BoneStreamSplit
import BoneStreamStream
import Foundation

/// Each stage as the CLI runs it: the library call and its printed summary.
enum Stages {
    static func phantoms(_ config: PipelineConfig, quiet: Bool) throws {
        let out = config.string("dataset.root")
        let report = try PhantomGenerator.run(PhantomOptions(config: config), out: out, logger: Log.logger("phantoms"),
                                              showProgress: !quiet)
        let counts = PipelineSchema.splits.map { split in "\(report.subjects.filter { $0.split == split }.count) \(split)" }
        say("phantoms: \(report.subjects.count) images (\(counts.joined(separator: ", "))) in \(out); "
              + "\(report.written) written, \(report.skipped) already there, "
              + String(format: "%.1f s, %.2f images/s", report.seconds, Double(report.written) / max(report.seconds, 1e-9)))
    }

    static func normalize(_ config: PipelineConfig, quiet: Bool) throws {
        let options = NormalizeOptions(config: config)
        let report = try Normalizer.run(options, logger: Log.logger("normalize"), showProgress: !quiet)
        say(report.summary)
        say("tables in \(options.out); rejected rows in \(options.out)/rejects.csv")
        if report.overThreshold {
            throw NormalizeError(message: String(format: "%.2f%% of rows were rejected, more than dataset.reject_threshold (%.2f%%); see %@/rejects.csv",
                                                 100 * report.rejectedShare, 100 * report.rejectThreshold, options.out))
        }
    }

    static func split(_ config: PipelineConfig) throws {
        let options = SplitOptions(config: config)
        let manifest = try Splitter.run(options)
        for counts in manifest.splits {
            say("\(counts.name): \(counts.count) images (\(counts.male) male, \(counts.female) female)")
        }
        say("splits (\(manifest.mode)) in \(options.out); manifest \(options.out)/\(Splitter.manifestName)")
    }

    static func preprocess(_ config: PipelineConfig, quiet: Bool) throws {
        let options = PreprocessOptions(config: config)
        let report = try Preprocessor.run(options, logger: Log.logger("preprocess"), showProgress: !quiet)
        let kept = report.images - report.rejected.count
        var line = "preprocess: \(kept) of \(report.images) images cached in \(report.directory) (\(report.processed) processed, "
            + "\(report.reused) already there, \(report.rejected.count) rejected)"
        if report.processed > 0 {
            line += String(format: ", %.1f images/s", Double(report.processed) / max(report.seconds, 1e-9))
        }
        say(line + (report.newGeneration ? "" : "; up to date, nothing written"))
        if !report.rejected.isEmpty {
            say("rejected images are listed in \(report.directory)/rejects.csv:")
            for reject in report.rejected.prefix(5) { say("  \(reject.index): \(reject.reason)") }
            if report.rejected.count > 5 { say("  ... and \(report.rejected.count - 5) more") }
        }
    }

    /// The sink's report of one stream run (for benchmarks).
    static func streamReport(_ config: PipelineConfig, readPixels: Bool = true, localQueue: Bool = true) throws -> SinkReport {
        try streamRun(config, readPixels: readPixels, localQueue: localQueue).0
    }

    /// The coordinator and its local workers in this process, for a consumer running elsewhere.
    static func produce(_ config: PipelineConfig, shouldStop: @escaping () -> Bool = { false }) throws -> CoordinatorStatus {
        try prepare(endpoint: config.string("stream.control"))
        try prepare(endpoint: config.string("stream.data"))
        var options = CoordinatorOptions(config: config, executable: ownExecutable())
        options.localWorkers = max(1, options.localWorkers)
        var coordinatorLogger = Log.logger("produce")
        coordinatorLogger.logLevel = .warning
        return try Coordinator(options: options, config: config, logger: coordinatorLogger).run(shouldStop: shouldStop)
    }

    private static func streamRun(_ config: PipelineConfig, readPixels: Bool = true, localQueue: Bool = true) throws -> (SinkReport, CoordinatorStatus) {
        try prepare(endpoint: config.string("stream.data"))
        let sink = Sink(dataEndpoint: config.string("stream.data"), controlEndpoint: config.string("stream.control"),
                        credit: config.int("stream.credit"), logger: Log.logger("sink"))
        sink.readPixels = readPixels
        sink.useLocalQueue = localQueue
        let box = SinkBox(sink)
        let thread = Thread { box.run() }
        thread.start()
        let status = try produce(config)
        box.done.wait()
        let report = try box.result.get()
        if report.gaps > 0 || status.acknowledged != status.total {
            throw StreamError("the stream lost batches: \(report.gaps) gaps")
        }
        return (report, status)
    }
}

/// Runs a sink on its own thread and keeps its result.
final class SinkBox: @unchecked Sendable {
    let sink: Sink
    let done = DispatchSemaphore(value: 0)
    var result: Result<SinkReport, Error> = .failure(StreamError("the sink did not run"))

    init(_ sink: Sink) { self.sink = sink }

    func run() {
        result = Result { try sink.run() }
        done.signal()
    }
}
