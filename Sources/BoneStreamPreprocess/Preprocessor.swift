import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import Foundation
import Logging

/// Settings of `bonestream preprocess`.
public struct PreprocessOptions: Sendable {
    public enum BadImagePolicy: String, Sendable { case skip, fail }

    public var root: String
    public var tables: String
    public var cacheRoot: String
    /// Split -> image folder relative to `root`.
    public var imageFolders: [String: String]
    public var settings: PreprocessSettings
    public var limits: DecodeLimits
    public var policy: BadImagePolicy

    public init(config: PipelineConfig) {
        root = config.string("dataset.root")
        tables = config.string("dataset.tables")
        cacheRoot = config.string("preprocess.cache")
        imageFolders = Dictionary(uniqueKeysWithValues: PipelineSchema.splits.map { ($0, config.string("dataset.\($0).images")) })
        settings = PreprocessSettings(config: config)
        limits = DecodeLimits(maxSide: config.int("preprocess.max_side"), maxPixels: config.int("preprocess.max_pixels"))
        policy = BadImagePolicy(rawValue: config.string("preprocess.bad_images")) ?? .skip
    }

    /// The folder of this configuration's cache.
    public var cacheDirectory: String { cacheRoot + "/" + settings.cacheKey }
}

/// What a preprocess run did.
public struct PreprocessReport: Sendable {
    public var directory: String
    public var images = 0
    public var reused = 0
    public var processed = 0
    public var rejected: [CacheManifest.Rejected] = []
    public var newGeneration = false
    public var seconds = 0.0
    public var times = StepTimes()
}

/// A bad image under the `fail` policy.
public struct PreprocessError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The preprocess stage: every image of the canonical tables, once, into the cache.
public enum Preprocessor {
    private struct Item: Sendable {
        var index: Int
        var split: String
        var path: String
        var fingerprint: SourceFingerprint?
    }

    private enum Outcome: Sendable {
        case staged(StepTimes)
        case rejected(String)
    }

    public static func run(_ options: PreprocessOptions, logger: Logger, showProgress: Bool = true) throws -> PreprocessReport {
        let started = Date()
        let directory = options.cacheDirectory
        var report = PreprocessReport(directory: directory)
        _ = try TablesManifest.verify(directory: options.tables)

        var items: [Item] = []
        for split in PipelineSchema.splits {
            for row in try CanonicalTable.read(path: options.tables + "/\(split).csv") {
                let path = options.root + "/" + (options.imageFolders[split] ?? split) + "/\(row.index).png"
                items.append(Item(index: row.index, split: split, path: path, fingerprint: SourceFingerprint.of(path: path)))
            }
        }
        items.sort { $0.index < $1.index }
        report.images = items.count

        let staging = directory + "/staging"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        AtomicFile.removeStaleTemps(in: directory)
        AtomicFile.removeStaleTemps(in: staging)
        let settingsPath = directory + "/settings.json"
        let settingsData = try JSONFile.encode(options.settings)
        if FileManager.default.contents(atPath: settingsPath) != settingsData {
            try AtomicFile.write(settingsData, to: settingsPath)
        }

        let current = try? ImageCache(directory: directory)
        var previousRejects: [Int: CacheManifest.Rejected] = [:]
        for reject in current?.manifest.rejected ?? [] { previousRejects[reject.index] = reject }
        @Sendable func stagedPath(_ item: Item) -> String? {
            item.fingerprint.map { staging + "/\(item.index)-\($0.bytes)-\($0.mtimeNs).u8" }
        }
        func inCache(_ item: Item) -> Bool {
            guard let current, let slot = current.slots[item.index] else { return false }
            return current.fingerprints[slot] == item.fingerprint
        }
        func stillRejected(_ item: Item) -> CacheManifest.Rejected? {
            guard let old = previousRejects[item.index] else { return nil }
            let fingerprint = item.fingerprint ?? SourceFingerprint(bytes: -1, mtimeNs: -1)
            return old.sourceBytes == fingerprint.bytes && old.sourceMtimeNs == fingerprint.mtimeNs ? old : nil
        }

        var rejected: [CacheManifest.Rejected] = []
        var todo: [Item] = []
        for item in items {
            if inCache(item) { continue }
            if let old = stillRejected(item) { rejected.append(old); continue }
            guard item.fingerprint != nil else {
                let reason = "missing image \(item.path)"
                if options.policy == .fail { throw PreprocessError(message: "\(item.path): \(reason) (image \(item.index), \(item.split) split)") }
                rejected.append(CacheManifest.Rejected(index: item.index, sourceBytes: -1, sourceMtimeNs: -1, reason: reason))
                continue
            }
            if let staged = stagedPath(item), FileManager.default.fileExists(atPath: staged) { continue }
            todo.append(item)
        }

        if !todo.isEmpty {
            logger.info("preprocess: \(todo.count) of \(items.count) images to do into \(directory)")
            let progress = Progress(label: "preprocess", unit: "images", total: todo.count, logger: logger, enabled: showProgress)
            let settings = options.settings, limits = options.limits, policy = options.policy
            let todo = todo
            let outcomes = try Parallel.map(count: todo.count) { i -> Outcome in
                defer { progress.advance() }
                let item = todo[i]
                var times = StepTimes()
                do {
                    let image = try ImagePipeline.run(path: item.path, settings: settings, limits: limits, times: &times)
                    try AtomicFile.write(Data(image.pixels), to: stagedPath(item)!)
                    return .staged(times)
                } catch let error as ImageError {
                    if policy == .fail {
                        throw PreprocessError(message: "\(error) (image \(item.index), \(item.split) split; preprocess.bad_images is fail)")
                    }
                    return .rejected(error.reason)
                }
            }
            progress.finish()
            for (item, outcome) in zip(todo, outcomes) {
                switch outcome {
                case .staged(let times):
                    report.processed += 1
                    report.times = report.times + times
                case .rejected(let reason):
                    let fingerprint = item.fingerprint!
                    rejected.append(CacheManifest.Rejected(index: item.index, sourceBytes: fingerprint.bytes,
                                                           sourceMtimeNs: fingerprint.mtimeNs, reason: reason))
                }
            }
        }
        rejected.sort { $0.index < $1.index }
        report.rejected = rejected

        let rejectedIndices = Set(rejected.map(\.index))
        let keep = items.filter { !rejectedIndices.contains($0.index) }
        let upToDate = current != nil && current!.indices == keep.map(\.index) && keep.allSatisfy(inCache)
            && current!.manifest.rejected == rejected
        report.reused = keep.filter(inCache).count
        if !upToDate {
            try writeGeneration(keep, current: current, directory: directory, size: options.settings.size,
                                settingsHash: options.settings.hash, rejected: rejected, items: items, stagedPath: stagedPath)
            report.newGeneration = true
        }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Packs every kept image (from the current generation or from staging) into a new generation and
    /// switches the manifest to it; then removes the old generation and the used staging files.
    private static func writeGeneration(_ keep: [Item], current: ImageCache?, directory: String, size: Int, settingsHash: String,
                                        rejected: [CacheManifest.Rejected], items: [Item], stagedPath: (Item) -> String?) throws {
        let generation = (current?.manifest.generation ?? 0) + 1
        let imagesName = "images-\(generation).u8", indexName = "index-\(generation).csv"
        let writer = try AtomicFile.Writer(path: directory + "/" + imagesName)
        var index = "slot,index,source_bytes,source_mtime_ns\n"
        let imageBytes = size * size
        var usedStaging: [String] = []
        for (slot, item) in keep.enumerated() {
            let fingerprint = item.fingerprint!
            if let current, let old = current.slots[item.index], current.fingerprints[old] == fingerprint {
                try writer.write(UnsafeRawPointer(current.pixels(slot: old)), count: imageBytes)
            } else {
                let path = stagedPath(item)!
                guard let data = FileManager.default.contents(atPath: path), data.count == imageBytes else {
                    throw CacheError(path: path, reason: "staged image is missing or not \(imageBytes) bytes; rerun preprocess")
                }
                try writer.write(data)
                usedStaging.append(path)
            }
            index += "\(slot),\(item.index),\(fingerprint.bytes),\(fingerprint.mtimeNs)\n"
        }
        try writer.commit()
        try AtomicFile.write(index, to: directory + "/" + indexName)
        var rejects = CSV.line(["index", "split", "path", "reason"])
        let byIndex = Dictionary(uniqueKeysWithValues: items.map { ($0.index, $0) })
        for reject in rejected {
            let item = byIndex[reject.index]
            rejects += CSV.line([String(reject.index), item?.split ?? "", item?.path ?? "", reject.reason])
        }
        try AtomicFile.write(rejects, to: directory + "/rejects.csv")
        let manifest = CacheManifest(generation: generation, size: size, count: keep.count, images: imagesName, index: indexName,
                                     indexSHA256: Hashing.sha256(index), settingsSHA256: settingsHash, rejected: rejected)
        try AtomicFile.write(JSONFile.encode(manifest), to: directory + "/" + CacheManifest.fileName)
        // The switch is done: old generations and used staging files can go.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where (name.hasPrefix("images-") || name.hasPrefix("index-")) && name != imagesName && name != indexName {
            unlink(directory + "/" + name)
        }
        for path in usedStaging { unlink(path) }
    }
}
