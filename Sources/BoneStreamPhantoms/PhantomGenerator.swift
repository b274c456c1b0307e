import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import Foundation
import Logging

/// Settings of `bonestream phantoms`, from the `phantoms` section.
public struct PhantomOptions: Sendable, Codable, Equatable {
    public var count: Int
    public var seed: Int
    public var validationFraction: Double
    public var testFraction: Double
    public var minSide: Int
    public var maxSide: Int
    public var noise: Double
    public var pngCompression: Int
    /// Bumped whenever the phantom model changes what it draws.
    public var modelVersion = 2

    public init(config: PipelineConfig) {
        count = config.int("phantoms.count")
        seed = config.int("phantoms.seed")
        validationFraction = config.double("phantoms.validation_fraction")
        testFraction = config.double("phantoms.test_fraction")
        minSide = config.int("phantoms.min_side")
        maxSide = config.int("phantoms.max_side")
        noise = config.double("phantoms.noise")
        pngCompression = config.int("phantoms.png_compression")
    }
}

/// One synthetic subject.
public struct PhantomSubject: Sendable, Equatable {
    public var id: Int
    public var split: String
    public var male: Bool
    /// Bone age in months: integers for train and validation, two decimals for test (as RSNA's).
    public var boneage: Double

    public init(id: Int, split: String, male: Bool, boneage: Double) {
        self.id = id
        self.split = split
        self.male = male
        self.boneage = boneage
    }
}

/// What a phantoms run wrote.
public struct PhantomReport: Sendable {
    public var subjects: [PhantomSubject]
    public var written: Int
    public var skipped: Int
    public var seconds: Double
}

/// `bonestream phantoms`: a synthetic hand-radiograph dataset in RSNA's layout and file formats.
public enum PhantomGenerator {
    public static let trainCSV = "boneage-training-dataset.csv"
    public static let validationCSV = "Validation Dataset.csv"
    public static let testXLSX = "Bone age ground truth.xlsx"
    public static let imageFolders = ["train": "boneage-training-dataset", "validation": "boneage-validation-dataset",
                                      "test": "boneage-test-dataset"]
    static let settingsFile = "phantoms.json"

    /// The subjects of a dataset: ids, splits, sexes and ages, all from the seed.
    public static func subjects(_ options: PhantomOptions) -> [PhantomSubject] {
        var random = CounterRandom(seed: UInt64(options.seed), 0x5B1EC7)
        let n = options.count
        var validation = Int((Double(n) * options.validationFraction).rounded())
        var test = Int((Double(n) * options.testFraction).rounded())
        if n >= 3 {
            if options.validationFraction > 0 { validation = max(1, validation) }
            if options.testFraction > 0 { test = max(1, test) }
        }
        validation = min(validation, n)
        test = min(test, n - validation)
        var splits = Array(repeating: "train", count: n - validation - test)
            + Array(repeating: "validation", count: validation) + Array(repeating: "test", count: test)
        random.shuffle(&splits)
        var id = 1377  // RSNA's training ids start here
        return splits.map { split in
            id += 1 + Int(random.next() % 2)
            let male = random.unit() < 0.54
            // RSNA's ages: roughly normal around 127 months (sd 41), with some spread to the extremes.
            var age = random.unit() < 0.06 ? random.uniform(0, 228) : 127 + 41 * random.normal()
            age = min(228, max(0, age))
            age = split == "test" ? (age * 100).rounded() / 100 : age.rounded()
            return PhantomSubject(id: id, split: split, male: male, boneage: age)
        }
    }

    /// Renders one subject's radiograph. Depends only on (seed, id) and the options.
    public static func render(_ subject: PhantomSubject, options: PhantomOptions) -> GrayImage {
        var random = CounterRandom(seed: UInt64(options.seed), UInt64(subject.id))
        let maturity = min(1.1, max(0, HandModel.maturity(boneAgeMonths: subject.boneage, male: subject.male) + 0.02 * random.normal()))
        let hand = HandModel(maturity: maturity, fingerSpread: random.uniform(0.8, 1.25), boneWidth: random.uniform(0.9, 1.1))
        let width = options.minSide + Int(random.next() % UInt64(options.maxSide - options.minSide + 1))
        // Radiographs are mostly portrait; aspect ratios vary.
        let aspect = random.uniform(1.0, 1.45)
        let height = min(options.maxSide, max(options.minSide, Int(Double(width) * aspect)))
        // Young children's hands fill less of the plate.
        let size = 0.82 + 0.15 * min(1, maturity)
        let handLength = min(Double(height) * 0.78, Double(width) * 1.2) * size * random.uniform(0.9, 1.05)
        let exposure = Exposure(
            width: width, height: height, handLength: handLength,
            centreX: Double(width) * random.uniform(0.42, 0.58), centreY: Double(height) * random.uniform(0.74, 0.84),
            rotation: 0.12 * random.normal(), background: random.uniform(4, 35), span: random.uniform(185, 225),
            gamma: random.uniform(0.8, 1.25), attenuation: random.uniform(1.3, 1.8), noise: options.noise)
        return PhantomRenderer.render(hand: hand, exposure: exposure, random: &random)
    }

    /// Writes the dataset to `out`. Images already written by an identical earlier run are kept,
    /// so a killed run resumes; other settings rewrite everything.
    public static func run(_ options: PhantomOptions, out: String, logger: Logger, showProgress: Bool = true) throws -> PhantomReport {
        let start = Date()
        let subjects = subjects(options)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let settings = try JSONFile.encode(options)
        let settingsPath = out + "/" + settingsFile
        let sameSettings = FileManager.default.contents(atPath: settingsPath) == settings
        if !sameSettings && FileManager.default.fileExists(atPath: settingsPath) {
            logger.info("\(out) holds phantoms made with other settings: rewriting all images")
        }
        // The settings file goes first: a killed run's images are then known to match it.
        try AtomicFile.write(settings, to: settingsPath)
        for folder in imageFolders.values {
            try FileManager.default.createDirectory(atPath: out + "/" + folder, withIntermediateDirectories: true)
            AtomicFile.removeStaleTemps(in: out + "/" + folder)
        }

        let progress = Progress(label: "phantoms", unit: "images", total: subjects.count, logger: logger, enabled: showProgress)
        let wrote = try Parallel.map(count: subjects.count) { i -> Bool in
            defer { progress.advance() }
            let subject = subjects[i]
            let path = out + "/" + imageFolders[subject.split]! + "/\(subject.id).png"
            if sameSettings && FileManager.default.fileExists(atPath: path) { return false }
            try PNGCodec.write(render(subject, options: options), to: path, level: options.pngCompression)
            return true
        }
        progress.finish()
        try writeTables(subjects, out: out)
        let written = wrote.filter { $0 }.count
        return PhantomReport(subjects: subjects, written: written, skipped: subjects.count - written,
                             seconds: Date().timeIntervalSince(start))
    }

    /// The three split files, each in its RSNA format.
    static func writeTables(_ subjects: [PhantomSubject], out: String) throws {
        var train = CSV.line(["id", "boneage", "male"])
        for s in subjects where s.split == "train" {
            train += CSV.line([String(s.id), String(Int(s.boneage)), s.male ? "True" : "False"])
        }
        try AtomicFile.write(train, to: out + "/" + trainCSV)

        var validation = CSV.line(["Image ID", "male", "Bone Age (months)"])
        for s in subjects where s.split == "validation" {
            validation += CSV.line([String(s.id), s.male ? "TRUE" : "FALSE", String(Int(s.boneage))])
        }
        try AtomicFile.write(validation, to: out + "/" + validationCSV)

        var rows: [[XLSXCell]] = [[.text("Case ID"), .text("Sex"), .text("Ground truth bone age (months)")]]
        for s in subjects where s.split == "test" {
            rows.append([.number(Double(s.id)), .text(s.male ? "M" : "F"), .number(s.boneage)])
        }
        try AtomicFile.write(XLSX.write(rows: rows), to: out + "/" + testXLSX)
    }
}
