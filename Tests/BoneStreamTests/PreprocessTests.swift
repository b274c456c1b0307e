import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import BoneStreamPhantoms
@testable import BoneStreamPreprocess
import Foundation
import Logging
import Testing

@Suite struct PreprocessTests {
    let logger = Logger(label: "test")

    /// Tiny phantoms, normalized, and a config pointing at them.
    private func setUp(count: Int = 10) throws -> (TemporaryDirectory, PipelineConfig) {
        try tinyNormalizedPhantoms("prep", ["phantoms.count=\(count)", "phantoms.min_side=300", "phantoms.max_side=420",
                                            "preprocess.size=128", "patches.size=64", "patches.per_side=2"])
    }

    @Test func buildsAMappableCacheThatMatchesThePipeline() throws {
        let (dir, config) = try setUp()
        defer { withExtendedLifetime(dir) {} }
        let options = PreprocessOptions(config: config)
        let report = try Preprocessor.run(options, logger: logger, showProgress: false)
        #expect(report.processed == 10 && report.rejected.isEmpty && report.newGeneration)
        let cache = try ImageCache(directory: report.directory)
        #expect(cache.count == 10 && cache.size == 128)
        #expect(cache.indices == cache.indices.sorted())
        // Every cached image equals a fresh run of the pipeline on its source.
        for split in PipelineSchema.splits {
            for row in try CanonicalTable.read(path: options.tables + "/\(split).csv") {
                let path = options.root + "/" + options.imageFolders[split]! + "/\(row.index).png"
                let fresh = try ImagePipeline.run(path: path, settings: options.settings, limits: options.limits)
                let cached = Array(UnsafeBufferPointer(start: cache.pixels(index: row.index)!, count: 128 * 128))
                #expect(cached == fresh.pixels)
            }
        }
        // Staging is emptied once packed.
        #expect(try FileManager.default.contentsOfDirectory(atPath: report.directory + "/staging").isEmpty)
    }

    @Test func rerunDoesNothingAndAConfigChangeMakesANewCache() throws {
        let (dir, config) = try setUp()
        defer { withExtendedLifetime(dir) {} }
        let first = try Preprocessor.run(PreprocessOptions(config: config), logger: logger, showProgress: false)
        let manifest = try Data(contentsOf: URL(fileURLWithPath: first.directory + "/manifest.json"))
        let again = try Preprocessor.run(PreprocessOptions(config: config), logger: logger, showProgress: false)
        #expect(again.processed == 0 && again.reused == 10 && !again.newGeneration)
        #expect(try Data(contentsOf: URL(fileURLWithPath: first.directory + "/manifest.json")) == manifest)

        var changed = config
        try changed.apply(assignments: ["preprocess.clahe_clip=3"])
        let other = try Preprocessor.run(PreprocessOptions(config: changed), logger: logger, showProgress: false)
        #expect(other.directory != first.directory)
        #expect(other.processed == 10)
        // The first cache is untouched.
        #expect(try ImageCache(directory: first.directory).count == 10)
        // Keys that do not touch pixels keep the cache.
        var policy = config
        try policy.apply(assignments: ["preprocess.bad_images=fail"])
        #expect(PreprocessOptions(config: policy).cacheDirectory == first.directory)
    }

    @Test func aNewImageIsAddedIncrementally() throws {
        let (dir, config) = try setUp()
        let options = PreprocessOptions(config: config)
        _ = try Preprocessor.run(options, logger: logger, showProgress: false)
        // Add one image to the training table (and its manifest), as a rerun of normalize would.
        let source = try #require(FileManager.default.subpathsOfDirectory(atPath: dir.path + "/data/boneage-training-dataset").first)
        try FileManager.default.copyItem(atPath: dir.path + "/data/boneage-training-dataset/" + source,
                                         toPath: dir.path + "/data/boneage-training-dataset/999999.png")
        try (try String(contentsOfFile: dir.path + "/data/boneage-training-dataset.csv", encoding: .utf8) + "999999,100,True\n")
            .write(toFile: dir.path + "/data/boneage-training-dataset.csv", atomically: true, encoding: .utf8)
        _ = try Normalizer.run(NormalizeOptions(config: config), logger: logger, showProgress: false)
        let report = try Preprocessor.run(options, logger: logger, showProgress: false)
        #expect(report.processed == 1 && report.reused == 10 && report.newGeneration)
        let cache = try ImageCache(directory: report.directory)
        #expect(cache.count == 11 && cache.manifest.generation == 2)
        // The old generation's files are gone.
        let names = try FileManager.default.contentsOfDirectory(atPath: report.directory).sorted()
        #expect(names.filter { $0.hasPrefix("images-") } == ["images-2.u8"])
    }

    @Test func aCorruptImageIsSkippedAndReportedOrFailsTheRun() throws {
        let (dir, config) = try setUp()
        let train = try CanonicalTable.read(path: dir.path + "/tables/train.csv")
        let victim = train[2].index
        let path = dir.path + "/data/boneage-training-dataset/\(victim).png"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes = bytes.prefix(bytes.count / 2)  // truncated: its header still reads
        try bytes.write(to: URL(fileURLWithPath: path))
        let report = try Preprocessor.run(PreprocessOptions(config: config), logger: logger, showProgress: false)
        #expect(report.rejected.map(\.index) == [victim])
        let cache = try ImageCache(directory: report.directory)
        #expect(cache.count == 9 && cache.slots[victim] == nil)
        let rejects = try CSV.read(path: report.directory + "/rejects.csv")
        #expect(rejects.count == 2 && rejects[1].fields[0] == String(victim) && rejects[1].fields[2] == path)
        // A rerun neither retries the unchanged bad file nor rewrites anything.
        let again = try Preprocessor.run(PreprocessOptions(config: config), logger: logger, showProgress: false)
        #expect(again.processed == 0 && !again.newGeneration && again.rejected.count == 1)

        var strict = config
        try strict.apply(assignments: ["preprocess.bad_images=fail", "preprocess.clahe_tiles=4"])
        do {
            _ = try Preprocessor.run(PreprocessOptions(config: strict), logger: logger, showProgress: false)
            Issue.record("expected the fail policy to stop the run")
        } catch let error as PreprocessError {
            #expect(error.message.contains("\(victim).png"))
        }
    }
}
