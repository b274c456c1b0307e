import ArgumentParser
import BoneStreamBatch
import BoneStreamCore
import BoneStreamDataset
import BoneStreamPreprocess
import BoneStreamShard
import BoneStreamStream
import BoneStreamTrain
import Foundation

extension Stages {
    /// The trainer on the stream. With `produce`, a coordinator and its local workers run in this
    /// process too (what `run` does); without, a coordinator runs elsewhere (`bonestream produce`).
    static func train(_ config: PipelineConfig, resume: Bool, produce: Bool, quiet: Bool, shards: String? = nil,
                      record: String? = nil) throws -> TrainSummary? {
        let settings = TrainSettings(config: config)
        let trainer = Trainer(settings: settings, logger: Log.logger("train"), showProgress: !quiet)
        trainer.report = { say($0) }
        if resume {
            try trainer.resume()
            if trainer.isFinished {
                say("the run in \(settings.out) has already finished (\(trainer.history.count) epoch(s)); nothing to train")
                return nil
            }
        } else {
            try trainer.begin()
        }
        say("train: \(settings.model) (\(trainer.model.graph.store.count.formatted()) parameters), \(settings.loss.rawValue) loss, "
            + "learning rate \(settings.learningRate), \(settings.epochs) epoch(s) of \(config.int("stream.samples_per_epoch")) patches, "
            + "early stopping on \(settings.monitor.rawValue) with patience \(settings.patience); run folder \(settings.out)")
        if let shards {
            // Straight from shard files, in this process: no coordinator, no socket.
            let set = try ShardSet(directory: shards)
            let plan = try ReplayPlan(set: set, options: ReplayOptions(epochs: settings.epochs))
            guard plan.validation == settings.validation else {
                throw TrainError("\(shards) \(plan.validation ? "holds" : "holds no") validation batches but stream.validation is \(settings.validation): set it to \(plan.validation)")
            }
            let expected = Hashing.hex(BatchBuilder.configHash(config))
            guard set.manifest.configHash == expected else {
                throw TrainError("\(shards) was recorded with config hash \(set.manifest.configHash.prefix(16)), this configuration's pixels hash to \(expected.prefix(16)): the checkpoint would record preprocessing the shards were not made with; use the recording's pipeline.yaml")
            }
            say("train: from \(set.manifest.batches) recorded batches in \(shards) (\(plan.recordedEpochs.count) recorded epoch(s), \(settings.epochs) to train)")
            let source = try recording(ShardBatchSource(set: set, plan: plan, from: trainer.startPosition), into: record)
            let summary = try trainer.run(source: source, shouldStop: { StopSignal.isRaised })
            try (source as? RecordingBatchSource)?.writer.close(ended: false)
            sayOutcome(summary, settings)
            return summary
        }
        try prepare(endpoint: config.string("stream.data"))
        let stream = StreamBatchSource(dataEndpoint: config.string("stream.data"), controlEndpoint: config.string("stream.control"),
                                       credit: config.int("stream.credit"), from: trainer.startPosition,
                                       validation: settings.validation, logger: Log.logger("train"))
        let source = try recording(stream, into: record)
        var producer: Thread?
        let producerDone = DispatchSemaphore(value: 0)
        if produce {
            let thread = Thread {
                do { _ = try Stages.produce(config, shouldStop: { StopSignal.isRaised }) } catch { say("error: the coordinator stopped: \(error)") }
                producerDone.signal()
            }
            thread.start()
            producer = thread
        }
        let summary = try trainer.run(source: source, shouldStop: { StopSignal.isRaised })
        if summary.interrupted && !produce {
            stream.close()  // the coordinator keeps running: `train --resume` continues from the checkpoint
        } else {
            stream.finish()
            stream.waitForEnd()
        }
        if let recorder = source as? RecordingBatchSource {
            try recorder.writer.close(ended: !summary.interrupted && summary.epochs.count == settings.epochs)
            say("train: \(recorder.newlyRecorded) batches recorded into \(recorder.writer.directory) (\(recorder.writer.manifest.shards.count) shard(s))")
        }
        if producer != nil { producerDone.wait() }
        sayOutcome(summary, settings)
        return summary
    }

    private static func sayOutcome(_ summary: TrainSummary, _ settings: TrainSettings) {
        if !summary.interrupted, let best = summary.best {
            say(String(format: "train: %d epoch(s) in %@, input wait %.1f%%; best %@ %.4g at epoch %d: %@", summary.epochs.count,
                       Progress.duration(summary.seconds), 100 * summary.inputWait, settings.monitor.rawValue, best, summary.bestEpoch,
                       settings.bestCheckpoint))
        }
    }

    /// `source`, also written to the shard folder `record` when one is given.
    private static func recording(_ source: BatchSource, into record: String?) throws -> BatchSource {
        guard let record else { return source }
        return RecordingBatchSource(source, writer: try ShardWriter(directory: record, logger: Log.logger("record")))
    }

    /// Evaluates the best checkpoint (or `checkpoint`) on a split, writes its predictions CSV.
    static func evaluate(_ config: PipelineConfig, split: String, checkpoint: String?, quiet: Bool) throws -> Evaluation {
        let settings = TrainSettings(config: config)
        let path = checkpoint ?? settings.bestCheckpoint
        let predictor = try Predictor(checkpoint: path, expected: CheckpointFacts(model: settings.model, preprocess: settings.preprocess,
                                                                                grid: settings.grid))
        let splits = config.string("split.out")
        guard PipelineSchema.splits.contains(split) else {
            throw TrainError("--split \(split): expected one of \(PipelineSchema.splits.joined(separator: ", "))")
        }
        let rows = try CanonicalTable.read(path: "\(splits)/\(split).csv")
        let train = try CanonicalTable.read(path: "\(splits)/train.csv")
        let trainMean = train.map(\.boneage).reduce(0, +) / Double(max(train.count, 1))
        let cache = try ImageCache(directory: PreprocessOptions(config: config).cacheDirectory)
        let progress = Progress(label: "evaluate \(split)", unit: "images", total: rows.count, logger: Log.logger("evaluate"), enabled: !quiet)
        let (evaluation, skipped) = Evaluation.run(predictor: predictor, cache: cache, rows: rows, trainMean: trainMean, progress: progress)
        if !skipped.isEmpty { say("evaluate: \(skipped.count) image(s) of the \(split) split are not in the cache (rejected by preprocess), e.g. \(skipped.prefix(5).map(String.init).joined(separator: ", "))") }
        let out = "\(settings.out)/\(split)-predictions.csv"
        try FileManager.default.createDirectory(atPath: settings.out, withIntermediateDirectories: true)
        try PredictionRow.write(evaluation.rows, to: out)
        say(String(format: "evaluate %@: %d images with %@: MAE %.2f months by median of patches, %.2f by mean of patches, %.2f per patch; RMSE %.2f",
                   split, evaluation.rows.count, path, evaluation.maeMedian, evaluation.maeMean, evaluation.maePatch, evaluation.rmse))
        say("  by sex: " + evaluation.bySex.map { String(format: "%@ %.2f (%d)", $0.name, $0.mae, $0.count) }.joined(separator: ", "))
        say("  by age: " + evaluation.byAge.filter { $0.count > 0 }.map { String(format: "%@ %.2f (%d)", $0.name, $0.mae, $0.count) }.joined(separator: ", "))
        say("  predictions in \(out)")
        return evaluation
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "The trainer daemon: binds the data endpoint and trains on the batches a coordinator's workers send.",
        discussion: "Start `bonestream produce` with the same configuration (before or after), or pass --produce to run one in this process.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Continue from the run's last checkpoint (train.out/last.safetensors), at the same place in the data.")
    var resume = false

    @Flag(help: "Also run the coordinator and its local workers in this process.")
    var produce = false

    @Option(help: "Train on the batches recorded in this shard folder, read in this process (no coordinator).")
    var shards: String?

    @Option(help: "Also record every batch the trainer takes into this shard folder.")
    var record: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            if shards != nil && produce { throw ValidationError("--shards and --produce exclude each other") }
            StopSignal.install()
            _ = try Stages.train(config, resume: resume, produce: produce, quiet: global.quiet, shards: shards, record: record)
        }
    }
}

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "MAE by median of patches, by mean, per patch, RMSE, by sex and by age band on a split; writes a predictions CSV.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "train, validation or test.")
    var split = "test"

    @Option(help: "Checkpoint (default: train.out/best.safetensors).")
    var checkpoint: String?

    func run() throws {
        try reportingErrors {
            _ = try Stages.evaluate(try global.load(), split: split, checkpoint: checkpoint, quiet: global.quiet)
        }
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Bone age of one radiograph, a folder of PNGs or a CSV of them: preprocessed as in training, median of the patch predictions.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "A PNG, a folder of PNGs, or a CSV with columns path (or id) and sex.")
    var input: String

    @Option(help: "M, F or unknown (unknown averages the two predictions). Required for one image or a folder.")
    var sex: String?

    @Option(help: "Checkpoint (default: train.out/best.safetensors).")
    var checkpoint: String?

    @Option(help: "Report this percentile of the patch predictions instead of the median (Pan et al.).")
    var percentile: Double = 50

    @Flag(help: "One JSON object per image.")
    var json = false

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            let settings = TrainSettings(config: config)
            guard (0...100).contains(percentile) else { throw ValidationError("--percentile must be in 0...100, got \(percentile)") }
            let predictor = try Predictor(checkpoint: checkpoint ?? settings.bestCheckpoint,
                                          expected: CheckpointFacts(model: settings.model, preprocess: settings.preprocess, grid: settings.grid))
            let limits = PreprocessOptions(config: config).limits
            for (path, sex) in try inputs() {
                let patches = try predictor.patchPredictions(path: path, sex: sex, settings: settings.preprocess, limits: limits)
                let age = Double(PatchStatistics.percentile(patches, percentile))
                let low = Double(PatchStatistics.percentile(patches, 25)), high = Double(PatchStatistics.percentile(patches, 75))
                let statistic = percentile == 50 ? "median" : String(format: "percentile %g", percentile)
                if json {
                    let object: [String: Any] = ["image": path, "sex": sex.rawValue, "months": age, "statistic": statistic,
                                                 "patches": patches.map(Double.init), "quartiles": [low, high],
                                                 "checkpoint": predictor.path]
                    say(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    let years = Int(age / 12), months = Int((age - Double(years * 12)).rounded())
                    var line = String(format: "%@: bone age %.1f months (%d years %d months), %@ of %d patches; patches %.1f-%.1f, middle half %.1f-%.1f",
                                      path, age, years + months / 12, months % 12, statistic, patches.count,
                                      Double(patches.min()!), Double(patches.max()!), low, high)
                    if sex == .unknown { line += "; sex unknown: the average of the male and female predictions" }
                    say(line)
                }
            }
        }
    }

    /// (image, sex) pairs from the argument: one PNG, a folder, or a CSV.
    private func inputs() throws -> [(String, Sex)] {
        let givenSex = try sex.map { text -> Sex in
            guard let s = Sex(text: text) else { throw ValidationError("--sex \(text): expected M, F or unknown") }
            return s
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw ValidationError("\(input): no such file or folder")
        }
        if isDirectory.boolValue {
            guard let givenSex else { throw ValidationError("--sex M|F|unknown is required (for every image of \(input))") }
            let names = try FileManager.default.contentsOfDirectory(atPath: input).filter { $0.lowercased().hasSuffix(".png") }.sorted()
            guard !names.isEmpty else { throw ValidationError("\(input): no .png files") }
            return names.map { (input + "/" + $0, givenSex) }
        }
        if input.lowercased().hasSuffix(".csv") {
            let records = try CSV.read(path: input)
            guard let header = records.first?.fields, let pathColumn = header.firstIndex(where: { ["path", "image", "file"].contains($0.lowercased()) }) else {
                throw ValidationError("\(input): needs a column path (image file), and sex unless --sex is given")
            }
            let sexColumn = header.firstIndex { ["sex", "male"].contains($0.lowercased()) }
            let folder = URL(fileURLWithPath: input).deletingLastPathComponent().path
            return try records.dropFirst().map { record in
                let value = record.fields[pathColumn]
                let path = value.hasPrefix("/") ? value : folder + "/" + value
                if let givenSex { return (path, givenSex) }
                guard let sexColumn, let s = Sex(text: record.fields[sexColumn]) else {
                    throw ValidationError("\(input), line \(record.line): no sex for \(value) (M, F or unknown; or pass --sex)")
                }
                return (path, s)
            }
        }
        guard let givenSex else {
            throw ValidationError("--sex M|F is required; with --sex unknown the prediction is the average of the two and says so")
        }
        return [(input, givenSex)]
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write RUN_DIR/report.html: configuration, loss and MAE curves, predicted vs true, MAE by sex and age band, worst images.")

    @Argument(help: "The run folder (train.out).")
    var runDirectory: String

    func run() throws {
        try reportingErrors { say("report: \(try RunReport.write(runDirectory: runDirectory))") }
    }
}
