@testable import BoneStreamTrain
import BoneStreamBatch
import BoneStreamCore
import BoneStreamDataset
import BoneStreamEngine
import BoneStreamPreprocess
import BoneStreamSplit
import BoneStreamStream
import Foundation
import Logging
import Testing

/// The trainer on in-process batches (tiny phantoms, a width-4 ResNet18), and `train`, `evaluate`,
/// `predict` and `report` as processes over the real stream.
@Suite(.serialized) struct TrainTests {
    static let tinySettings = [
        "phantoms.count=20", "phantoms.min_side=96", "phantoms.max_side=128", "phantoms.validation_fraction=0.2",
        "phantoms.test_fraction=0.2", "preprocess.size=48", "patches.size=32", "patches.per_side=3",
        "stream.samples_per_epoch=32", "stream.batch_size=8", "stream.epochs=2",
        "train.model=resnet18-cam", "train.width=4", "train.learning_rate=0.01",
    ]

    /// Tiny phantoms through split and preprocess, with the run folder inside the temporary folder.
    private func prepared(_ label: String, _ extra: [String] = []) throws -> (TemporaryDirectory, PipelineConfig) {
        let (dir, base) = try tinyNormalizedPhantoms(label, TrainTests.tinySettings + extra)
        var config = base
        try config.apply(assignments: ["split.out=\(dir.path)/splits", "train.out=\(dir.path)/run"])
        _ = try Splitter.run(SplitOptions(config: config))
        _ = try Preprocessor.run(PreprocessOptions(config: config), logger: Logger(label: "test"), showProgress: false)
        return (dir, config)
    }

    private func source(_ config: PipelineConfig, from: BatchID) throws -> LocalBatchSource {
        LocalBatchSource(builder: try ProducerSetup(config: config).builder, epochs: config.int("stream.epochs"),
                         validation: config.bool("stream.validation"), from: from)
    }

    private func parameters(_ path: String, _ settings: TrainSettings) throws -> [Float] {
        let model = settings.model.build(seed: 99)
        try Checkpoint.load(model.graph.store, from: path)
        let store = model.graph.store
        return Array(UnsafeBufferPointer(start: store.values, count: store.count))
    }

    @Test func stoppedMidEpochAndResumedTheTrainerEndsExactlyWhereAnUninterruptedRunEnds() throws {
        let (dir, config) = try prepared("train-resume")
        let settings = TrainSettings(config: config)

        let straight = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try straight.begin()
        let summary = try straight.run(source: try source(config, from: straight.startPosition))
        #expect(summary.epochs.map(\.epoch) == [1, 2])
        #expect(!summary.interrupted)
        let reference = try parameters(settings.lastCheckpoint, settings)
        let lines = try #require(dir.read("run/metrics.jsonl")).split(separator: "\n")
        #expect(lines.count == 2)
        for name in ["best.safetensors", "validation-predictions.csv", "config.yaml"] {
            #expect(FileManager.default.fileExists(atPath: dir.path + "/run/" + name), "\(name)")
        }
        // Four validation images, nine patches each: one row per image with its median.
        let predictions = try PredictionRow.read(path: dir.path + "/run/validation-predictions.csv")
        #expect(predictions.count == 4)

        // Stopped after three steps (mid-epoch), then resumed from the checkpoint in a new trainer.
        let interrupted = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try interrupted.begin()
        var steps = 0
        let partial = try interrupted.run(source: try source(config, from: interrupted.startPosition), shouldStop: {
            steps += 1
            return steps > 3
        })
        #expect(partial.interrupted)
        #expect(partial.epochs.isEmpty)
        let resumed = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try resumed.resume()
        #expect(resumed.startPosition == BatchID(kind: .train, epoch: 0, index: 3))
        let rest = try resumed.run(source: try source(config, from: resumed.startPosition))
        #expect(rest.epochs.map(\.epoch) == [1, 2])
        #expect(rest.epochs.map(\.trainLoss) == summary.epochs.map(\.trainLoss))
        #expect(try parameters(settings.lastCheckpoint, settings) == reference)

        // A finished run has nothing left to do.
        let again = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try again.resume()
        #expect(again.isFinished)
    }

    @Test func earlyStoppingWaitsPatienceEpochsWithoutANewBest() {
        var state = TrainerState()
        let values: [Double] = [10, 8, 9, 7, 7, 7.5]
        var bests: [Bool] = [], stopped: [Bool] = []
        for (i, value) in values.enumerated() {
            bests.append(state.observe(epoch: i + 1, value: value, patience: 2))
            stopped.append(state.stoppedEarly)
        }
        #expect(bests == [true, true, false, true, false, false])
        #expect(stopped == [false, false, false, false, false, true])
        #expect(state.bestEpoch == 4 && state.best == 7)
        var never = TrainerState()
        for epoch in 1...20 { _ = never.observe(epoch: epoch, value: Double(epoch), patience: 0) }
        #expect(!never.stoppedEarly)
    }

    @Test func percentilesInterpolateLikeNumpy() {
        #expect(PatchStatistics.median([3, 1, 2]) == 2)
        #expect(PatchStatistics.median([4, 1, 3, 2]) == 2.5)
        #expect(PatchStatistics.percentile([10, 20, 30, 40, 50], 25) == 20)
        #expect(PatchStatistics.percentile([10, 20], 75) == 17.5)
        #expect(PatchStatistics.percentile([7], 90) == 7)
    }

    @Test func aCheckpointFromAnotherModelOrPreprocessingIsRefusedNamingBoth() throws {
        let (dir, config) = try prepared("train-mismatch", ["stream.epochs=1"])
        let settings = TrainSettings(config: config)
        let trainer = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try trainer.begin()
        _ = try trainer.run(source: try source(config, from: trainer.startPosition))
        var other = config
        try other.apply(assignments: ["train.model=resnet18-cbam"])
        let otherSettings = TrainSettings(config: other)
        let modelError = #expect(throws: TrainError.self) {
            _ = try Predictor(checkpoint: settings.bestCheckpoint, expected: CheckpointFacts(model: otherSettings.model,
                              preprocess: otherSettings.preprocess, grid: otherSettings.grid))
        }
        #expect(modelError?.message.contains("resnet18-cam, width 4") == true)
        #expect(modelError?.message.contains("resnet18-cbam, width 4") == true)
        var resized = config
        try resized.apply(assignments: ["preprocess.clahe_clip=3"])
        let resizedSettings = TrainSettings(config: resized)
        let preprocessError = #expect(throws: TrainError.self) {
            _ = try Predictor(checkpoint: settings.bestCheckpoint, expected: CheckpointFacts(model: resizedSettings.model,
                              preprocess: resizedSettings.preprocess, grid: resizedSettings.grid))
        }
        #expect(preprocessError?.message.contains("CLAHE clip 2 ") == true)
        #expect(preprocessError?.message.contains("CLAHE clip 3 ") == true)
        _ = dir
    }
}

/// `train`, `evaluate`, `predict` and `report` as a user runs them, over real processes.
@Suite(.serialized) struct TrainProcessTests {
    private func metrics(_ dir: TemporaryDirectory) -> [EpochMetrics] {
        (dir.read("work/run/metrics.jsonl") ?? "").split(separator: "\n").compactMap { try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
    }

    /// Tiny phantoms through preprocess in a fresh folder, by the CLI; returns the `--set` flags every command takes.
    private func prepared(_ label: String) throws -> (TemporaryDirectory, [String]) {
        let dir = try TemporaryDirectory(label)
        // 60 phantoms and a gentle learning rate: the validation loss of this width-4 model falls
        // slowly but steadily (and the run is deterministic, killed or not).
        let settings = TrainTests.tinySettings.filter { !$0.hasPrefix("stream.") && !$0.hasPrefix("phantoms.count") && !$0.hasPrefix("train.learning_rate") } + [
            "phantoms.count=60", "train.learning_rate=0.001",
            "stream.samples_per_epoch=320", "stream.batch_size=8", "stream.epochs=5", "stream.credit=4",
            "stream.control=ipc://\(dir.path)/control.ipc", "stream.data=ipc://\(dir.path)/data.ipc",
        ]
        let set = settings.flatMap { ["--set", $0] }
        for stage in ["phantoms", "normalize", "split", "preprocess"] {
            let result = try runBonestream([stage, "--quiet"] + set, in: dir.path)
            try #require(result.status == 0, "\(stage): \(result.stderr)")
        }
        return (dir, set)
    }

    @Test func sigtermStopsTheTrainerAfterItsStepWithACheckpointToResumeFrom() throws {
        let (dir, set) = try prepared("train-term")
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"] + set, in: dir.path)
        let (train, trainOut, _) = try startBonestream(["train", "--quiet"] + set, in: dir.path)
        try #require(waitFor(120) { metrics(dir).count >= 1 }, "no epoch finished")
        kill(train.processIdentifier, SIGTERM)
        let stopped = finish(train, trainOut, seconds: 30)
        #expect(train.terminationStatus == 0)
        #expect(stopped.contains("stopped by a signal; checkpoint work/run/last.safetensors resumes at "), "\(stopped)")
        let (resumed, resumedOut, _) = try startBonestream(["train", "--resume", "--quiet"] + set, in: dir.path)
        let text = finish(resumed, resumedOut)
        #expect(resumed.terminationStatus == 0)
        #expect(text.contains("resuming from work/run/last.safetensors"))
        _ = finish(produce, produceOut)
        #expect(metrics(dir).map(\.epoch) == [1, 2, 3, 4, 5])
    }

    @Test func aTrainerKilledWithSigkillResumesAndEndsBelowItsFirstValidationLoss() throws {
        let (dir, set) = try prepared("train-kill")
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"] + set, in: dir.path)
        let (train, trainOut, _) = try startBonestream(["train", "--quiet"] + set, in: dir.path)
        try #require(waitFor(120) { metrics(dir).count >= 1 }, "no epoch finished")
        kill(train.processIdentifier, SIGKILL)
        train.waitUntilExit()
        _ = trainOut.fileHandleForReading.readDataToEndOfFile()
        let done = metrics(dir).count
        #expect(done < 5, "the trainer finished before it was killed; the test did not test resuming")

        let (resumed, resumedOut, resumedErr) = try startBonestream(["train", "--resume", "--quiet"] + set, in: dir.path)
        let text = finish(resumed, resumedOut)
        let errors = String(decoding: resumedErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(resumed.terminationStatus == 0, "\(errors)")
        #expect(text.contains("resuming from work/run/last.safetensors: \(done) epoch(s) done, next train e\(done) b0"), "\(text)")
        _ = finish(produce, produceOut)
        #expect(produce.terminationStatus == 0)

        let epochs = metrics(dir)
        #expect(epochs.map(\.epoch) == [1, 2, 3, 4, 5])
        let first = try #require(epochs.first?.valLoss), last = try #require(epochs.last?.valLoss)
        #expect(last < first, "validation loss \(first) -> \(last)")

        // Evaluation, prediction and the report on the trained run.
        let evaluation = try runBonestream(["evaluate", "--split", "test", "--quiet"] + set, in: dir.path)
        #expect(evaluation.status == 0, "\(evaluation.stderr)")
        #expect(evaluation.stdout.contains("months by median of patches"))
        #expect(FileManager.default.fileExists(atPath: dir.path + "/work/run/test-predictions.csv"))

        let test = try CanonicalTable.read(path: dir.path + "/work/splits/test.csv")
        let row = try #require(test.first)
        let image = "data/phantoms/boneage-test-dataset/\(row.index).png"
        let predicted = try runBonestream(["predict", image, "--sex", row.male ? "M" : "F", "--json"] + set, in: dir.path)
        #expect(predicted.status == 0, "\(predicted.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(predicted.stdout.utf8)) as? [String: Any])
        let months = try #require(object["months"] as? Double)
        #expect((0...240).contains(months), "predicted \(months) months for an image of \(row.boneage)")
        #expect((object["patches"] as? [Double])?.count == 9)

        // Batch mode: a CSV of images (paths relative to it) with their sexes, and a folder.
        let listed = test.prefix(2).map { "../data/phantoms/boneage-test-dataset/\($0.index).png,\($0.male ? "M" : "F")" }
        try dir.write("path,sex\n" + listed.joined(separator: "\n") + "\n", to: "lists/images.csv")
        let batch = try runBonestream(["predict", "lists/images.csv"] + set, in: dir.path)
        #expect(batch.status == 0, "\(batch.stderr)")
        #expect(batch.stdout.split(separator: "\n").filter { $0.contains("bone age") }.count == listed.count)
        let folder = try runBonestream(["predict", "data/phantoms/boneage-test-dataset", "--sex", "F"] + set, in: dir.path)
        #expect(folder.status == 0 && folder.stdout.split(separator: "\n").filter { $0.contains("bone age") }.count == test.count)

        let unknown = try runBonestream(["predict", image, "--sex", "unknown"] + set, in: dir.path)
        #expect(unknown.status == 0)
        #expect(unknown.stdout.contains("years") && unknown.stdout.contains("sex unknown: the average of the male and female predictions"))
        let noSex = try runBonestream(["predict", image] + set, in: dir.path)
        #expect(noSex.status != 0 && noSex.stderr.contains("--sex M|F is required"))
        try dir.write("not a png", to: "notes.png")
        let notPNG = try runBonestream(["predict", "notes.png", "--sex", "F"] + set, in: dir.path)
        #expect(notPNG.status != 0 && notPNG.stderr.contains("notes.png"), "\(notPNG.stderr)")

        let report = try runBonestream(["report", "work/run"], in: dir.path)
        #expect(report.status == 0, "\(report.stderr)")
        let html = try #require(dir.read("work/run/report.html"))
        for part in ["<svg", "validation loss", "Predicted vs true (test split", "MAE by sex and by age band", "Worst images", "train:"] {
            #expect(html.contains(part), "\(part)")
        }
    }
}
