// Inference: an image's patches through a trained model, and the median (or a percentile) of their
// predictions, as the paper does; `evaluate` over a split and the predictions CSV.
import BoneStreamAugment
import BoneStreamCore
import BoneStreamDataset
import BoneStreamEngine
import BoneStreamImage
import BoneStreamPreprocess
import Foundation

/// One image's predictions: a row of a predictions CSV.
public struct PredictionRow: Sendable, Equatable {
    public var index: Int
    public var male: Bool?
    /// The true age in months, when known.
    public var age: Double?
    public var patches: [Float]

    public init(index: Int, male: Bool?, age: Double?, patches: [Float]) {
        self.index = index
        self.male = male
        self.age = age
        self.patches = patches
    }

    public var median: Double { Double(PatchStatistics.median(patches)) }
    public var mean: Double { Double(PatchStatistics.mean(patches)) }
    public var error: Double? { age.map { median - $0 } }

    static let header = "index,male,age,median,mean,min,max,error"

    public static func write(_ rows: [PredictionRow], to path: String) throws {
        var text = header + "\n"
        for row in rows {
            let male = row.male.map { $0 ? "1" : "0" } ?? ""
            let age = row.age.map { String(format: "%.2f", $0) } ?? ""
            let error = row.error.map { String(format: "%.3f", $0) } ?? ""
            text += String(format: "%d,%@,%@,%.3f,%.3f,%.3f,%.3f,%@\n", row.index, male, age, row.median, row.mean,
                           Double(row.patches.min() ?? 0), Double(row.patches.max() ?? 0), error)
        }
        try AtomicFile.write(text, to: path)
    }

    /// Reads a predictions CSV back (the report); patches are not stored, so only median, min and max are.
    public static func read(path: String) throws -> [PredictionRow] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var rows: [PredictionRow] = []
        for (n, line) in text.split(separator: "\n").enumerated() where n > 0 {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 8, let index = Int(f[0]), let median = Float(f[3]), let low = Float(f[5]), let high = Float(f[6]) else {
                throw TrainError("\(path), line \(n + 1): not a predictions row")
            }
            rows.append(PredictionRow(index: index, male: f[1].isEmpty ? nil : f[1] == "1", age: Double(f[2]), patches: [low, median, high]))
        }
        return rows
    }
}

public enum Sex: String, Sendable, CaseIterable {
    case male = "M", female = "F", unknown

    public init?(text: String) {
        switch text.lowercased() {
        case "m", "male", "1", "true": self = .male
        case "f", "female", "0", "false": self = .female
        case "unknown", "u", "?": self = .unknown
        default: return nil
        }
    }
}

public final class Predictor {
    public let facts: CheckpointFacts
    public let path: String
    private let model: Model
    private let augmenter: PatchAugmenter
    private var patches: [UInt8]

    /// Loads `checkpoint`, which must match `expected` (the configuration's model and preprocessing).
    public init(checkpoint: String, expected: CheckpointFacts) throws {
        guard FileManager.default.fileExists(atPath: checkpoint) else {
            throw TrainError("no checkpoint at \(checkpoint): train first (`bonestream train`), or name one with --checkpoint")
        }
        let metadata = try Checkpoint.readMetadata(from: checkpoint)
        let facts = try CheckpointFacts(metadata: metadata, path: checkpoint)
        try facts.requireCompatible(with: expected, path: checkpoint)
        self.facts = facts
        path = checkpoint
        model = facts.model.build(seed: 0)
        try Checkpoint.load(model.graph.store, from: checkpoint)
        augmenter = PatchAugmenter(grid: facts.grid)
        patches = [UInt8](repeating: 0, count: facts.grid.count * facts.grid.patchSize * facts.grid.patchSize)
    }

    /// Every patch's prediction for a preprocessed image (imageSize x imageSize bytes).
    public func patchPredictions(image: UnsafePointer<UInt8>, sex: Sex) -> [Float] {
        let grid = facts.grid, bytes = grid.patchSize * grid.patchSize
        patches.withUnsafeMutableBufferPointer { out in
            for p in 0..<grid.count { augmenter.apply(.identity, image: image, patch: p, to: out.baseAddress! + p * bytes) }
        }
        func run(_ male: Bool) -> [Float] {
            ModelInput.fill(model, count: grid.count, males: [Bool](repeating: male, count: grid.count)) { input in
                patches.withUnsafeBufferPointer { pixels in
                    for i in 0..<pixels.count { input[i] = Float(pixels[i]) * (1 / 255) }
                }
            }
            model.graph.forward(training: false)
            return Array(model.graph.output.buffer.prefix(grid.count))
        }
        switch sex {
        case .male: return run(true)
        case .female: return run(false)
        case .unknown: return zip(run(true), run(false)).map { ($0 + $1) / 2 }
        }
    }

    /// Preprocesses the PNG at `path` as training did, then predicts its patches.
    public func patchPredictions(path: String, sex: Sex, settings: PreprocessSettings, limits: DecodeLimits) throws -> [Float] {
        let image: GrayImage
        do {
            image = try ImagePipeline.run(path: path, settings: settings, limits: limits)
        } catch let error as ImageError {
            throw TrainError("cannot read \(path) as a radiograph: \(error.reason)")
        }
        return image.pixels.withUnsafeBufferPointer { patchPredictions(image: $0.baseAddress!, sex: sex) }
    }
}

/// `bonestream evaluate`: a split's images from the cache through the model.
public struct Evaluation: Sendable {
    public struct Group: Sendable {
        public var name: String
        public var count: Int
        public var mae: Double
    }

    public var rows: [PredictionRow]
    public var maeMedian: Double
    public var maeMean: Double
    public var maePatch: Double
    public var rmse: Double
    public var bySex: [Group]
    public var byAge: [Group]
    /// The training split's mean age, and the MAE of predicting it for every image.
    public var trainMean: Double
    public var baselineMAE: Double

    public static let ageBands: [(String, ClosedRange<Double>)] = [
        ("0-5 y", 0...59.999), ("5-10 y", 60...119.999), ("10-15 y", 120...179.999), ("15+ y", 180...10_000),
    ]

    public init(rows: [PredictionRow], trainMean: Double) {
        self.rows = rows
        self.trainMean = trainMean
        let known = rows.filter { $0.age != nil }
        func mae(_ rows: [PredictionRow]) -> Double { rows.map { abs($0.median - $0.age!) }.reduce(0, +) / Double(max(rows.count, 1)) }
        maeMedian = mae(known)
        maeMean = known.map { abs($0.mean - $0.age!) }.reduce(0, +) / Double(max(known.count, 1))
        let patchErrors = known.flatMap { row in row.patches.map { abs(Double($0) - row.age!) } }
        maePatch = patchErrors.reduce(0, +) / Double(max(patchErrors.count, 1))
        rmse = (known.map { ($0.median - $0.age!) * ($0.median - $0.age!) }.reduce(0, +) / Double(max(known.count, 1))).squareRoot()
        bySex = [("male", true), ("female", false)].map { name, male in
            let group = known.filter { $0.male == male }
            return Group(name: name, count: group.count, mae: mae(group))
        }
        byAge = Evaluation.ageBands.map { name, range in
            let group = known.filter { range.contains($0.age!) }
            return Group(name: name, count: group.count, mae: mae(group))
        }
        baselineMAE = known.map { abs(trainMean - $0.age!) }.reduce(0, +) / Double(max(known.count, 1))
    }

    /// Runs every row the cache holds through `predictor`; rows the cache lacks (rejected images) are skipped and counted.
    public static func run(predictor: Predictor, cache: ImageCache, rows: [CanonicalRow], trainMean: Double,
                           progress: BoneStreamCore.Progress?) -> (Evaluation, skipped: [Int]) {
        var out: [PredictionRow] = [], skipped: [Int] = []
        for row in rows {
            defer { progress?.advance() }
            guard let pixels = cache.pixels(index: row.index) else {
                skipped.append(row.index)
                continue
            }
            out.append(PredictionRow(index: row.index, male: row.male, age: row.boneage,
                                     patches: predictor.patchPredictions(image: pixels, sex: row.male ? .male : .female)))
        }
        progress?.finish()
        return (Evaluation(rows: out, trainMean: trainMean), skipped)
    }
}
