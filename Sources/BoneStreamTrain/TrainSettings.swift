// What the trainer, `evaluate` and `predict` read from pipeline.yaml, and what a checkpoint records
// so that inference preprocesses exactly as training did.
import BoneStreamAugment
import BoneStreamBatch
import BoneStreamCore
import BoneStreamEngine
import BoneStreamPreprocess
import Foundation

public struct TrainError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The model a configuration asks for: kind, width and input size.
public struct ModelSpec: Sendable, Equatable, CustomStringConvertible {
    public var kind: ModelKind
    public var width: Int
    public var input: Int

    public init(kind: ModelKind, width: Int, input: Int) {
        self.kind = kind
        self.width = width
        self.input = input
    }

    public func build(seed: UInt64) -> Model { kind.build(input: input, width: width, seed: seed) }

    public var description: String { "\(kind.configName), width \(width), \(input)x\(input) patches" }
}

public struct TrainSettings: Sendable {
    public enum Monitor: String, Sendable { case valLoss = "val_loss", valMedianMAE = "val_median_mae" }

    public var model: ModelSpec
    public var loss: Loss
    public var learningRate: Float
    public var monitor: Monitor
    public var patience: Int
    public var seed: UInt64
    public var out: String
    public var epochs: Int
    public var validation: Bool
    public var preprocess: PreprocessSettings
    public var grid: PatchGrid
    /// The batches' config hash this trainer expects (`BatchBuilder.configHash`).
    public var streamHash: [UInt8]
    /// The whole configuration, kept beside the run.
    public var yaml: String

    public init(config: PipelineConfig) {
        model = ModelSpec(kind: ModelKind(name: config.string("train.model"))!, width: config.int("train.width"),
                          input: config.int("patches.size"))
        loss = Loss(rawValue: config.string("train.loss"))!
        learningRate = Float(config.double("train.learning_rate"))
        monitor = Monitor(rawValue: config.string("train.monitor"))!
        patience = config.int("train.patience")
        seed = UInt64(config.int("train.seed"))
        out = config.string("train.out")
        epochs = config.int("stream.epochs")
        validation = config.bool("stream.validation")
        preprocess = PreprocessSettings(config: config)
        grid = PatchGrid(imageSize: config.int("preprocess.size"), patchSize: config.int("patches.size"), perSide: config.int("patches.per_side"))
        streamHash = BatchBuilder.configHash(config)
        yaml = config.yaml()
    }

    public var lastCheckpoint: String { out + "/last.safetensors" }
    public var bestCheckpoint: String { out + "/best.safetensors" }
    public var metricsPath: String { out + "/metrics.jsonl" }
}

/// The inference-relevant facts a checkpoint carries in its safetensors metadata.
public struct CheckpointFacts: Sendable, Equatable {
    public var model: ModelSpec
    /// PreprocessSettings.hash of the images it was trained on, and the settings in words.
    public var preprocessHash: String
    public var preprocess: String
    public var grid: PatchGrid

    public init(model: ModelSpec, preprocess: PreprocessSettings, grid: PatchGrid) {
        self.model = model
        preprocessHash = preprocess.hash
        self.preprocess = CheckpointFacts.describe(preprocess)
        self.grid = grid
    }

    static func describe(_ p: PreprocessSettings) -> String {
        String(format: "crop %.3g/%.3g/%.3g/%.3g, %dx%d %@, CLAHE clip %.3g on %dx%d tiles", p.crop.top, p.crop.bottom, p.crop.left, p.crop.right,
               p.size, p.size, p.resize.rawValue, p.claheClip, p.claheTiles, p.claheTiles)
    }

    public var metadata: [String: String] {
        ["model": model.kind.configName, "width": String(model.width), "input": String(model.input),
         "preprocess_hash": preprocessHash, "preprocess": preprocess,
         "image_size": String(grid.imageSize), "patches_per_side": String(grid.perSide)]
    }

    /// Reads the facts back; nil fields mean the file is not a BoneStream training checkpoint.
    public init(metadata: [String: String], path: String) throws {
        guard let name = metadata["model"], let kind = ModelKind(name: name), let width = metadata["width"].flatMap(Int.init),
              let input = metadata["input"].flatMap(Int.init), let hash = metadata["preprocess_hash"],
              let imageSize = metadata["image_size"].flatMap(Int.init), let perSide = metadata["patches_per_side"].flatMap(Int.init) else {
            throw TrainError("\(path): not a checkpoint written by `bonestream train` (its metadata lacks the model and preprocessing)")
        }
        model = ModelSpec(kind: kind, width: width, input: input)
        preprocessHash = hash
        preprocess = metadata["preprocess"] ?? "?"
        grid = PatchGrid(imageSize: imageSize, patchSize: input, perSide: perSide)
    }

    /// Fails, naming both sides, when a checkpoint does not match what the configuration asks for.
    public func requireCompatible(with expected: CheckpointFacts, path: String) throws {
        if model != expected.model {
            throw TrainError("\(path) holds a \(model) model; the configuration asks for \(expected.model) (train.model, train.width, patches.size)")
        }
        if preprocessHash != expected.preprocessHash || grid != expected.grid {
            throw TrainError("""
                \(path) was trained on images preprocessed as \(preprocess) (\(preprocessHash.prefix(16))), \(grid.perSide)x\(grid.perSide) patches; \
                the configuration preprocesses as \(expected.preprocess) (\(expected.preprocessHash.prefix(16))), \
                \(expected.grid.perSide)x\(expected.grid.perSide) patches: use the configuration it was trained with
                """)
        }
    }
}

/// Medians and percentiles of an image's patch predictions.
public enum PatchStatistics {
    /// The p-th percentile (0...100) with linear interpolation (numpy's default); p = 50 is the median.
    public static func percentile(_ values: [Float], _ p: Double) -> Float {
        precondition(!values.isEmpty)
        let sorted = values.sorted()
        let position = Double(sorted.count - 1) * min(max(p, 0), 100) / 100
        let low = Int(position.rounded(.down)), high = min(low + 1, sorted.count - 1)
        let t = Float(position - Double(low))
        return sorted[low] + (sorted[high] - sorted[low]) * t
    }

    public static func median(_ values: [Float]) -> Float { percentile(values, 50) }

    public static func mean(_ values: [Float]) -> Float { values.reduce(0, +) / Float(max(values.count, 1)) }
}
