// The trainer: takes batches from any BatchSource in stream order, trains on the training batches,
// evaluates each validation pass by patch and by each image's median, keeps last and best
// checkpoints (atomically, with everything needed to resume), and stops early on a patience.
import BoneStreamBatch
import BoneStreamCore
import BoneStreamEngine
import Foundation
import Logging

/// One epoch's line of metrics.jsonl.
public struct EpochMetrics: Codable, Sendable, Equatable {
    /// From 1.
    public var epoch: Int
    public var trainLoss: Double
    public var valLoss: Double?
    /// Mean absolute error of every validation patch's prediction, months.
    public var valMAEPatch: Double?
    /// Mean absolute error of each validation image's median patch prediction, months.
    public var valMAEMedian: Double?
    public var patchesPerSecond: Double
    /// Share of the epoch spent waiting for batches.
    public var inputWait: Double
    public var seconds: Double
    public var best: Bool
}

/// What the trainer keeps between epochs, and in each checkpoint's metadata.
struct TrainerState: Codable {
    /// The next batch to consume.
    var kind: UInt8 = 0
    var epoch: UInt32 = 0
    var index: UInt32 = 0
    var best: Double?
    var bestEpoch = 0
    var badEpochs = 0
    var stoppedEarly = false
    /// The running training loss of the current epoch (a checkpoint taken mid-epoch keeps it).
    var lossSum = 0.0
    var lossBatches = 0
    var history: [EpochMetrics] = []

    /// Early stopping: records an epoch's monitored value (lower is better); true when it is the
    /// best so far. After `patience` epochs in a row without a new best, `stoppedEarly` (0: never).
    mutating func observe(epoch: Int, value: Double, patience: Int) -> Bool {
        let improved = best.map { value < $0 } ?? true
        if improved {
            best = value
            bestEpoch = epoch
            badEpochs = 0
        } else {
            badEpochs += 1
        }
        if patience > 0 && badEpochs >= patience { stoppedEarly = true }
        return improved
    }

    var position: BatchID {
        get { BatchID(kind: BatchHeader.Kind(rawValue: kind) ?? .train, epoch: epoch, index: index) }
        set {
            kind = newValue.kind.rawValue
            epoch = newValue.epoch
            index = newValue.index
        }
    }
}

public struct TrainSummary: Sendable {
    public var epochs: [EpochMetrics]
    public var stoppedEarly: Bool
    /// Stopped by a signal: a checkpoint holds the place to resume from.
    public var interrupted: Bool
    public var bestEpoch: Int
    public var best: Double?
    public var seconds: Double
    public var inputWait: Double
}

public final class Trainer {
    public let settings: TrainSettings
    public let model: Model
    private var adam: Adam
    private var state = TrainerState()
    private let logger: Logger
    private let showProgress: Bool
    /// Where epoch lines and notices go (the CLI prints them).
    public var report: (String) -> Void = { _ in }
    private var targets: [Float] = []
    /// Set by `begin`: the output bias still waits for its start value.
    private var biasPending = false

    public init(settings: TrainSettings, logger: Logger, showProgress: Bool = true) {
        self.settings = settings
        self.logger = logger
        self.showProgress = showProgress
        model = settings.model.build(seed: settings.seed)
        adam = Adam(learningRate: settings.learningRate)
    }

    /// Where the stream should start for this trainer.
    public var startPosition: BatchID { state.position }
    /// True when the restored run has nothing left (all epochs done, or stopped early).
    public var isFinished: Bool { state.stoppedEarly || Int(state.epoch) >= settings.epochs }
    public var history: [EpochMetrics] { state.history }

    public var facts: CheckpointFacts { CheckpointFacts(model: settings.model, preprocess: settings.preprocess, grid: settings.grid) }

    /// Loads the run's last checkpoint (parameters, moving statistics, Adam, place in the stream).
    public func resume() throws {
        let path = settings.lastCheckpoint
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainError("--resume: no checkpoint at \(path) (train.out is \(settings.out))")
        }
        let metadata = try Checkpoint.load(model.graph.store, from: path)
        try CheckpointFacts(metadata: metadata, path: path).requireCompatible(with: facts, path: path)
        guard let json = metadata["trainer_state"], let restored = try? JSONDecoder().decode(TrainerState.self, from: Data(json.utf8)) else {
            throw TrainError("\(path): no trainer state in its metadata; it cannot be resumed")
        }
        state = restored
        report("resuming from \(path): \(state.history.count) epoch(s) done, next \(state.position)")
    }

    /// Starts a new run: the folder, the configuration beside it, no old metrics.
    public func begin() throws {
        try FileManager.default.createDirectory(atPath: settings.out, withIntermediateDirectories: true)
        try AtomicFile.write(settings.yaml, to: settings.out + "/config.yaml")
        for stale in ["last.safetensors", "best.safetensors", "metrics.jsonl", "validation-predictions.csv", "test-predictions.csv", "report.html"] {
            try? FileManager.default.removeItem(atPath: settings.out + "/" + stale)
        }
        biasPending = true
    }

    /// The output layer's bias starts at the first training batch's mean age rather than Keras's 0:
    /// the network then learns the age from the first step instead of spending epochs learning its
    /// scale (ages are 0-240 months, initial outputs near 0).
    private func startOutputBias(_ batch: Batch) {
        biasPending = false
        guard let entry = model.graph.store.entries.first(where: { $0.name == "fc.bias" }), !batch.labels.isEmpty else { return }
        let mean = batch.labels.map(\.age).reduce(0, +) / Float(batch.labels.count)
        model.graph.store.values[entry.offset] = mean
    }

    /// Consumes `source` until the planned epochs are done, early stopping, the end of the stream or
    /// `shouldStop` (which checkpoints the place and returns).
    public func run(source: BatchSource, shouldStop: () -> Bool = { false }) throws -> TrainSummary {
        let started = Date()
        var epochStart = Date(), epochWaitStart = source.waitSeconds, epochSamples = 0
        var progress: BoneStreamCore.Progress?
        var validation = ValidationAccumulator()
        var interrupted = false
        let monitorName = settings.validation ? settings.monitor.rawValue : "train_loss"
        if !settings.validation { report("stream.validation is false: early stopping and the best checkpoint watch the training loss") }

        while !isFinished {
            if shouldStop() {
                // A checkpoint at the current place: a validation pass starts again from its first batch.
                if state.kind == BatchHeader.Kind.validation.rawValue { state.index = 0 }
                try saveCheckpoint(settings.lastCheckpoint)
                report("stopped by a signal; checkpoint \(settings.lastCheckpoint) resumes at \(state.position)")
                interrupted = true
                break
            }
            guard let batch = try source.next() else {
                report("the stream ended at \(state.position) before the planned \(settings.epochs) epoch(s)")
                break
            }
            let id = BatchID(batch.header)
            guard batch.header.configHash == settings.streamHash else {
                throw TrainError("""
                    batch \(id) was made with config hash \(Hashing.hex(batch.header.configHash)), this trainer's configuration \
                    gives \(Hashing.hex(settings.streamHash)): the producer and the trainer read different preprocess, patches, \
                    augment or stream sampling settings
                    """)
            }
            guard Int(batch.header.height) == settings.model.input, Int(batch.header.width) == settings.model.input else {
                throw TrainError("batch \(id) holds \(batch.header.height)x\(batch.header.width) patches; the model takes \(settings.model.input)x\(settings.model.input) (patches.size)")
            }
            if id.index == 0 && id.kind == .train {
                epochStart = Date()
                epochWaitStart = source.waitSeconds
                epochSamples = 0
            }
            if id.index == 0 || progress == nil {
                progress?.finish()
                let what = id.kind == .train ? "epoch \(id.epoch + 1)/\(settings.epochs)" : "validation \(id.epoch + 1)"
                progress = BoneStreamCore.Progress(label: what, unit: "patches", total: Int(batch.header.batchesInEpoch) * batch.labels.count,
                                    logger: logger, enabled: showProgress)
            }
            let last = id.index + 1 == batch.header.batchesInEpoch
            switch id.kind {
            case .train:
                if biasPending { startOutputBias(batch) }
                let loss = step(batch)
                guard loss.isFinite else {
                    throw TrainError("the training loss became \(loss) at \(id); lower train.learning_rate (now \(settings.learningRate))")
                }
                state.lossSum += Double(loss)
                state.lossBatches += 1
                epochSamples += batch.labels.count
                state.position = StreamOrder.successor(of: id, batchesInEpoch: batch.header.batchesInEpoch, validation: settings.validation)
            case .validation:
                validation.add(batch, predictions: infer(batch), loss: settings.loss)
                state.position = StreamOrder.successor(of: id, batchesInEpoch: batch.header.batchesInEpoch, validation: settings.validation)
            }
            progress?.advance(by: batch.labels.count)
            if last && (id.kind == .validation || !settings.validation) {
                progress?.finish()
                progress = nil
                let seconds = Date().timeIntervalSince(epochStart)
                var metrics = EpochMetrics(epoch: Int(id.epoch) + 1, trainLoss: state.lossSum / Double(max(state.lossBatches, 1)),
                                           patchesPerSecond: Double(epochSamples) / max(seconds, 1e-9),
                                           inputWait: (source.waitSeconds - epochWaitStart) / max(seconds, 1e-9), seconds: seconds, best: false)
                if settings.validation {
                    let v = validation.result()
                    metrics.valLoss = v.loss
                    metrics.valMAEPatch = v.maePatch
                    metrics.valMAEMedian = v.maeMedian
                }
                try endEpoch(metrics, validation: validation, started: started)
                validation = ValidationAccumulator()
                if state.stoppedEarly {
                    report("early stopping: \(monitorName) has not improved for \(settings.patience) epoch(s); best \(format(state.best)) at epoch \(state.bestEpoch)")
                    source.finish()
                }
            }
        }
        progress?.finish()
        if isFinished && !state.stoppedEarly { source.finish() }
        let wait = source.waitSeconds
        let total = Date().timeIntervalSince(started)
        return TrainSummary(epochs: state.history, stoppedEarly: state.stoppedEarly, interrupted: interrupted, bestEpoch: state.bestEpoch,
                            best: state.best, seconds: total, inputWait: wait / max(total, 1e-9))
    }

    private func format(_ value: Double?) -> String { value.map { String(format: "%.4g", $0) } ?? "-" }

    /// Checkpoints, metrics, early stopping and the epoch's line.
    private func endEpoch(_ metrics: EpochMetrics, validation: ValidationAccumulator, started: Date) throws {
        var metrics = metrics
        let value: Double
        switch (settings.validation, settings.monitor) {
        case (false, _): value = metrics.trainLoss
        case (true, .valLoss): value = metrics.valLoss ?? .infinity
        case (true, .valMedianMAE): value = metrics.valMAEMedian ?? .infinity
        }
        metrics.best = state.observe(epoch: metrics.epoch, value: value, patience: settings.patience)
        state.lossSum = 0
        state.lossBatches = 0
        state.history.append(metrics)
        // Best first, then last: a crash between the two resumes from the previous epoch and redoes this one.
        if metrics.best {
            try saveCheckpoint(settings.bestCheckpoint)
            if settings.validation { try validation.writePredictions(to: settings.out + "/validation-predictions.csv") }
        }
        try saveCheckpoint(settings.lastCheckpoint)
        let lines = state.history.map { String(decoding: (try? JSONEncoder.sorted.encode($0)) ?? Data(), as: UTF8.self) }
        try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: settings.metricsPath)

        let elapsed = state.history.reduce(0) { $0 + $1.seconds }
        let remaining = state.stoppedEarly ? 0 : settings.epochs - metrics.epoch
        let eta = remaining > 0 ? ", ETA \(BoneStreamCore.Progress.duration(elapsed / Double(state.history.count) * Double(remaining)))" : ""
        var line = String(format: "epoch %d/%d: train loss %.4g", metrics.epoch, settings.epochs, metrics.trainLoss)
        if let loss = metrics.valLoss, let patch = metrics.valMAEPatch, let median = metrics.valMAEMedian {
            line += String(format: ", val loss %.4g, val MAE %.2f months per patch, %.2f by median", loss, patch, median)
        }
        line += String(format: "; %.0f patches/s, input wait %.1f%%, %@, elapsed %@", metrics.patchesPerSecond, 100 * metrics.inputWait,
                       BoneStreamCore.Progress.duration(metrics.seconds), BoneStreamCore.Progress.duration(Date().timeIntervalSince(started)))
        report(line + eta + (metrics.best ? " (best)" : ""))
    }

    private func saveCheckpoint(_ path: String) throws {
        var metadata = facts.metadata
        metadata["trainer_state"] = String(decoding: try JSONEncoder.sorted.encode(state), as: UTF8.self)
        metadata["loss"] = settings.loss.rawValue
        metadata["learning_rate"] = String(settings.learningRate)
        try Checkpoint.save(model.graph.store, to: path, metadata: metadata)
    }

    /// Forward, loss, backward, Adam: one training step; returns the batch's loss.
    private func step(_ batch: Batch) -> Float {
        let g = model.graph
        ModelInput.fill(model, batch: batch)
        targets.removeAll(keepingCapacity: true)
        for label in batch.labels { targets.append(label.age) }
        return targets.withUnsafeBufferPointer { g.trainingStep(loss: settings.loss, targets: $0.baseAddress!, optimizer: adam) }
    }

    private func infer(_ batch: Batch) -> [Float] {
        ModelInput.fill(model, batch: batch)
        model.graph.forward(training: false)
        return Array(model.graph.output.buffer.prefix(batch.labels.count))
    }
}

/// Feeding a model: gray pixels scaled to [0, 1], sex as 1 (male) or 0.
public enum ModelInput {
    public static func fill(_ model: Model, batch: Batch) {
        fill(model, count: batch.labels.count, males: batch.labels.map(\.male)) { image in
            batch.pixels.withUnsafeBufferPointer { pixels in
                for i in 0..<pixels.count { image[i] = Float(pixels[i]) * (1 / 255) }
            }
        }
    }

    /// Prepares the graph for `count` samples and lets `write` fill the image input (count x h x w floats).
    public static func fill(_ model: Model, count: Int, males: [Bool], write: (UnsafeMutablePointer<Float>) -> Void) {
        model.graph.prepare(batch: count)
        write(model.graph.output(of: model.image).data)
        let sex = model.graph.output(of: model.sex)
        for i in 0..<count { sex[i] = males[i] ? 1 : 0 }
    }
}

/// A validation pass's predictions, by patch and by image.
struct ValidationAccumulator {
    struct Image {
        var male: Bool
        var age: Float
        var predictions: [Float] = []
    }

    private(set) var images: [Int: Image] = [:]
    private var lossSum = 0.0, absoluteSum = 0.0, patches = 0

    mutating func add(_ batch: Batch, predictions: [Float], loss: Loss) {
        for (label, prediction) in zip(batch.labels, predictions) {
            let d = Double(prediction - label.age)
            lossSum += loss == .mse ? d * d : abs(d)
            absoluteSum += abs(d)
            patches += 1
            images[Int(label.imageIndex), default: Image(male: label.male, age: label.age)].predictions.append(prediction)
        }
    }

    func result() -> (loss: Double, maePatch: Double, maeMedian: Double) {
        let medianErrors = images.values.map { abs(Double(PatchStatistics.median($0.predictions) - $0.age)) }
        return (lossSum / Double(max(patches, 1)), absoluteSum / Double(max(patches, 1)),
                medianErrors.reduce(0, +) / Double(max(medianErrors.count, 1)))
    }

    func writePredictions(to path: String) throws {
        var rows = [PredictionRow]()
        for (index, image) in images.sorted(by: { $0.key < $1.key }) {
            rows.append(PredictionRow(index: index, male: image.male, age: Double(image.age), patches: image.predictions))
        }
        try PredictionRow.write(rows, to: path)
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
