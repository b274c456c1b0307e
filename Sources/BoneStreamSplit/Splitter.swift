import BoneStreamCore
import BoneStreamDataset
import Foundation

/// Settings of `bonestream split`, from the `split` and `dataset` sections.
public struct SplitOptions: Sendable {
    public enum Mode: String, Sendable { case official, stratified, kfold }

    public var mode: Mode
    public var tables: String
    public var out: String
    public var seed: Int
    public var trainFraction: Double
    public var validationFraction: Double
    public var folds: Int
    public var ageBinMonths: Double
    /// SHA-256 of the split section: recorded so a manifest says which settings made it.
    public var configHash: String

    public init(config: PipelineConfig) {
        mode = Mode(rawValue: config.string("split.mode")) ?? .official
        tables = config.string("dataset.tables")
        out = config.string("split.out")
        seed = config.int("split.seed")
        trainFraction = config.double("split.train_fraction")
        validationFraction = config.double("split.validation_fraction")
        folds = config.int("split.folds")
        ageBinMonths = config.double("split.age_bin_months")
        configHash = config.hash(sections: ["split"])
    }
}

/// A problem with split's inputs.
public struct SplitError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// The split stage: official RSNA splits, a stratified re-split by sex x age bin, or k folds.
/// Deterministic: the same tables and settings give byte-identical outputs.
public enum Splitter {
    public static let manifestName = "split-manifest.json"

    /// Reads the canonical tables, makes the splits and writes them with split-manifest.json.
    @discardableResult
    public static func run(_ options: SplitOptions) throws -> SplitManifest {
        _ = try TablesManifest.verify(directory: options.tables)
        var inputs: [String: [CanonicalRow]] = [:]
        var inputHashes: [String: String] = [:]
        var seen: [Int: String] = [:]
        for split in PipelineSchema.splits {
            let path = options.tables + "/\(split).csv"
            let rows = try CanonicalTable.read(path: path)
            for row in rows {
                if let other = seen[row.index] {
                    throw SplitError(message: "\(path): index \(row.index) is also in \(other); rerun `bonestream normalize`")
                }
                seen[row.index] = path
            }
            inputs[split] = rows
            inputHashes["\(split).csv"] = try Hashing.sha256(fileAt: path)
        }

        var outputs: [(name: String, rows: [CanonicalRow])] = []
        var folds: [(index: Int, fold: Int)] = []
        switch options.mode {
        case .official:
            outputs = PipelineSchema.splits.map { ($0, inputs[$0]!) }
        case .stratified:
            let pooled = PipelineSchema.splits.flatMap { inputs[$0]! }
            var train: [CanonicalRow] = [], validation: [CanonicalRow] = [], test: [CanonicalRow] = []
            for (key, members) in strata(pooled, options: options) {
                let n = members.count
                let nTrain = Int((Double(n) * options.trainFraction).rounded())
                let nValidation = min(n - nTrain, Int((Double(n) * (options.trainFraction + options.validationFraction)).rounded()) - nTrain)
                let shuffled = shuffle(members, seed: options.seed, stratum: key)
                train += shuffled[..<nTrain]
                validation += shuffled[nTrain..<(nTrain + max(0, nValidation))]
                test += shuffled[(nTrain + max(0, nValidation))...]
            }
            outputs = [("train", train), ("validation", validation), ("test", test)]
        case .kfold:
            let pooled = inputs["train"]! + inputs["validation"]!
            var next = 0  // continues across strata so folds stay balanced in size
            for (key, members) in strata(pooled, options: options) {
                for row in shuffle(members, seed: options.seed, stratum: key) {
                    folds.append((row.index, next % options.folds))
                    next += 1
                }
            }
            let foldOf = Dictionary(uniqueKeysWithValues: folds)
            for k in 0..<options.folds {
                outputs.append(("fold-\(k)/train", pooled.filter { foldOf[$0.index] != k }))
                outputs.append(("fold-\(k)/validation", pooled.filter { foldOf[$0.index] == k }))
            }
            outputs.append(("test", inputs["test"]!))
        }

        try FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
        AtomicFile.removeStaleTemps(in: options.out)
        for output in outputs {
            try CanonicalTable.write(output.rows, to: options.out + "/\(output.name).csv")
        }
        if options.mode == .kfold {
            var text = "index,fold\n"
            for entry in folds.sorted(by: { $0.index < $1.index }) { text += "\(entry.index),\(entry.fold)\n" }
            try AtomicFile.write(text, to: options.out + "/folds.csv")
        }
        let manifest = SplitManifest(
            mode: options.mode.rawValue, seed: options.seed, configSHA256: options.configHash, inputs: inputHashes,
            splits: outputs.map { SplitManifest.Counts(name: $0.name, rows: $0.rows, ageBin: options.ageBinMonths) })
        try AtomicFile.write(manifest.json(), to: options.out + "/" + manifestName)
        return manifest
    }

    /// Rows grouped by (sex, age bin), each group sorted by index, groups in key order.
    static func strata(_ rows: [CanonicalRow], options: SplitOptions) -> [(key: UInt64, members: [CanonicalRow])] {
        var groups: [UInt64: [CanonicalRow]] = [:]
        for row in rows {
            let bin = UInt64(max(0, Int(row.boneage / options.ageBinMonths)))
            groups[(row.male ? 1 << 32 : 0) | bin, default: []].append(row)
        }
        return groups.keys.sorted().map { ($0, groups[$0]!.sorted { $0.index < $1.index }) }
    }

    private static func shuffle(_ rows: [CanonicalRow], seed: Int, stratum: UInt64) -> [CanonicalRow] {
        var random = CounterRandom(seed: UInt64(seed), stratum)
        var shuffled = rows
        random.shuffle(&shuffled)
        return shuffled
    }
}
