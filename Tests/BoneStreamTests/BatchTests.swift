import BoneStreamAugment
@testable import BoneStreamBatch
import BoneStreamCore
import BoneStreamDataset
import BoneStreamPhantoms
import BoneStreamPreprocess
import Foundation
import Logging
import Testing

@Suite struct WireFormatTests {
    let hash = [UInt8](0..<16)

    @Test func headerRoundTripsAndIs64Bytes() throws {
        let header = BatchHeader(kind: .validation, epoch: 7, batchIndex: 3, batchesInEpoch: 400, count: 40, height: 224, width: 224,
                                 seed: 0xDEAD_BEEF_0123, configHash: hash, flags: BatchHeader.flagReplayed)
        let bytes = header.encoded()
        #expect(bytes.count == 64)
        #expect(Array(bytes[0..<4]) == Array("BSTM".utf8))
        #expect(try bytes.withUnsafeBytes { try BatchHeader(decoding: $0) } == header)
    }

    @Test func labelsRoundTrip() throws {
        let label = SampleLabel(imageIndex: 15_610, patch: 24, operation: 3, male: true, age: 168.93, parameter: -29.5)
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes { label.encode(into: $0.baseAddress!) }
        #expect(try bytes.withUnsafeBytes { try SampleLabel(decoding: $0.baseAddress!) } == label)
    }

    @Test func batchFramesRoundTrip() throws {
        let header = BatchHeader(kind: .train, epoch: 0, batchIndex: 0, batchesInEpoch: 1, count: 2, height: 3, width: 4, seed: 1, configHash: hash)
        let batch = Batch(header: header, pixels: (0..<24).map { UInt8($0) },
                          labels: [SampleLabel(imageIndex: 1, patch: 0, operation: 0, male: false, age: 12, parameter: 0),
                                   SampleLabel(imageIndex: 2, patch: 1, operation: 4, male: true, age: 13.5, parameter: 0.7)])
        #expect(try Batch(frames: batch.frames()) == batch)
    }

    @Test func malformedMessagesAreErrorsNotCrashes() throws {
        let header = BatchHeader(kind: .train, epoch: 0, batchIndex: 0, batchesInEpoch: 1, count: 2, height: 3, width: 4, seed: 1, configHash: hash)
        let good = Batch(header: header, pixels: [UInt8](repeating: 1, count: 24),
                         labels: Array(repeating: SampleLabel(imageIndex: 1, patch: 0, operation: 0, male: false, age: 1, parameter: 0), count: 2)).frames()
        func mutated(_ frame: Int, _ change: (inout Data) -> Void) -> [Data] {
            var frames = good
            change(&frames[frame])
            return frames
        }
        let bad: [[Data]] = [
            [], [good[0]], good + [Data()],
            mutated(0) { $0[0] ^= 0xFF },                       // magic
            mutated(0) { $0[4] = 9 },                           // version
            mutated(0) { $0[6] = 7 },                           // kind
            mutated(0) { $0.removeLast() },                     // short header
            mutated(0) { $0[16] = 5 },                          // batch index past the epoch
            mutated(0) { $0.replaceSubrange(24..<28, with: [0, 0, 0, 0]) },  // zero samples
            mutated(1) { $0.removeLast() },                     // pixels short
            mutated(2) { $0.append(0) },                        // labels long
            mutated(2) { $0[6] = 3 },                           // sex value
            [Data("hello".utf8), Data(), Data()],
        ]
        for frames in bad {
            #expect(throws: WireError.self) { try Batch(frames: frames) }
        }
    }
}

@Suite struct EpochPlanTests {
    @Test func validationCoversEveryPatchOnceInImageOrder() {
        let plan = EpochPlan(kind: .validation, epoch: 3, images: 7, settings: StreamSettings(batchSize: 40))
        #expect(plan.sampleCount == 175 && plan.batchCount == 5)
        let samples = (0..<plan.batchCount).flatMap { plan.samples(inBatch: $0) }.map(plan.sample)
        #expect(samples.count == 175)
        #expect(samples.map { $0.image * 25 + $0.patch } == Array(0..<175))
        #expect(samples.allSatisfy { $0.augmentation == .identity })
        #expect(plan.samples(inBatch: 4) == 160..<175)
    }

    @Test func permutationVisitsEveryPairOncePerEpoch() {
        let settings = StreamSettings(batchSize: 16, sampling: .permutation)
        let a = EpochPlan(kind: .train, epoch: 0, images: 9, settings: settings)
        let pairs = (0..<a.sampleCount).map { a.sample($0) }.map { $0.image * 25 + $0.patch }
        #expect(pairs.sorted() == Array(0..<225))
        let b = EpochPlan(kind: .train, epoch: 1, images: 9, settings: settings)
        #expect((0..<b.sampleCount).map { b.sample($0).image * 25 + b.sample($0).patch } != pairs)
    }

    @Test func withReplacementIsDeterministicPerKeyAndSpreads() {
        let settings = StreamSettings(samplesPerEpoch: 5000, batchSize: 40)
        let plan = EpochPlan(kind: .train, epoch: 2, images: 50, settings: settings)
        #expect(plan.sampleCount == 5000 && plan.batchCount == 125)
        let again = EpochPlan(kind: .train, epoch: 2, images: 50, settings: settings)
        #expect((0..<5000).allSatisfy { plan.sample($0) == again.sample($0) })
        let other = EpochPlan(kind: .train, epoch: 3, images: 50, settings: settings)
        #expect((0..<100).filter { plan.sample($0) == other.sample($0) }.count < 10)
        #expect(Set((0..<5000).map { plan.sample($0).image }).count == 50)
        #expect(Set((0..<5000).map { plan.sample($0).patch }).count == 25)
    }
}

@Suite struct BatchBuilderTests {
    /// A small preprocessed phantom set: returns the cache, the tables and a settings hash.
    static func fixture() throws -> (TemporaryDirectory, ImageCache, [CanonicalRow], [CanonicalRow]) {
        let (dir, config) = try tinyNormalizedPhantoms("batch", ["phantoms.count=12", "phantoms.min_side=300", "phantoms.max_side=360",
                                                                 "preprocess.size=120", "patches.size=64", "patches.per_side=3"])
        let report = try Preprocessor.run(PreprocessOptions(config: config), logger: Logger(label: "test"), showProgress: false)
        return (dir, try ImageCache(directory: report.directory), try CanonicalTable.read(path: dir.path + "/tables/train.csv"),
                try CanonicalTable.read(path: dir.path + "/tables/validation.csv"))
    }

    @Test func batchesAreTheSameWhicheverBuilderMakesThem() throws {
        let (dir, cache, train, validation) = try Self.fixture()
        defer { withExtendedLifetime(dir) {} }
        let settings = StreamSettings(samplesPerEpoch: 100, batchSize: 8, seed: 5, grid: PatchGrid(imageSize: 120, patchSize: 64, perSide: 3),
                                      pool: AugmentationPool(entries: [(.identity, 1), (.flip, 1), (.rotate, 1), (.blur, 1)]))
        let hash = [UInt8](repeating: 7, count: 16)
        let one = BatchBuilder(cache: cache, train: train, validation: validation, settings: settings, configHash: hash)
        let two = BatchBuilder(cache: cache, train: train, validation: validation, settings: settings, configHash: hash)
        // Built in different orders by different builders: identical bytes.
        let forward = (0..<13).map { one.build(.train, epoch: 1, batch: $0) }
        let backward = (0..<13).reversed().map { two.build(.train, epoch: 1, batch: $0) }.reversed()
        #expect(Array(forward) == Array(backward))
        #expect(forward.map { Int($0.header.count) }.reduce(0, +) == 100)
        #expect(forward.last!.header.count == 4)
        // Labels carry the table's sex and age, and the pixels are the augmented patch.
        let rows = Dictionary(uniqueKeysWithValues: train.map { ($0.index, $0) })
        let augmenter = PatchAugmenter(grid: settings.grid)
        var patch = [UInt8](repeating: 0, count: 64 * 64)
        for (slot, label) in forward[3].labels.enumerated() {
            let row = try #require(rows[Int(label.imageIndex)])
            #expect(label.male == row.male && label.age == Float(row.boneage))
            let sample = one.plan(.train, epoch: 1).sample(3 * 8 + slot)
            patch.withUnsafeMutableBufferPointer {
                augmenter.apply(sample.augmentation, image: cache.pixels(index: row.index)!, patch: sample.patch, to: $0.baseAddress!)
            }
            #expect(Array(forward[3].pixels[(slot * 4096)..<((slot + 1) * 4096)]) == patch)
        }
        // And they survive the wire.
        #expect(try Batch(frames: forward[5].frames()) == forward[5])
    }

    /// bench stream's no-transport reference does a worker's work: every batch of the epoch, built by
    /// the same plan, each pixel read once, whatever the number of producers.
    @Test func theHandOffReferenceReadsEveryBatchOfThePlanOnce() throws {
        let (dir, cache, train, validation) = try Self.fixture()
        defer { withExtendedLifetime(dir) {} }
        let settings = StreamSettings(samplesPerEpoch: 100, batchSize: 8, seed: 5, grid: PatchGrid(imageSize: 120, patchSize: 64, perSide: 3),
                                      pool: AugmentationPool(entries: [(.identity, 1), (.flip, 1), (.rotate, 1), (.blur, 1)]))
        func builder() -> BatchBuilder {
            BatchBuilder(cache: cache, train: train, validation: validation, settings: settings, configHash: [UInt8](repeating: 7, count: 16))
        }
        let reference = builder()
        let expected = (0..<13).map { reference.build(.train, epoch: 2, batch: $0) }
            .reduce(UInt64(0)) { sum, batch in batch.pixels.withUnsafeBytes { sum &+ PixelStatistics.sum($0) } }
        for producers in [1, 2, 3] {
            let result = HandOff.run(builders: (0..<producers).map { _ in builder() }, epoch: 2, buffersPerProducer: 2)
            #expect(result.patches == 100 && result.pixelSum == expected && result.patchesPerSecond > 0, "\(producers) producer(s)")
        }
        let unread = HandOff.run(builders: [builder(), builder()], epoch: 2, readPixels: false)
        #expect(unread.patches == 100 && unread.pixelSum == 0)
    }

    @Test func validationBatchesGroupEachImagesPatches() throws {
        let (dir, cache, train, validation) = try Self.fixture()
        defer { withExtendedLifetime(dir) {} }
        let settings = StreamSettings(batchSize: 4, grid: PatchGrid(imageSize: 120, patchSize: 64, perSide: 3))
        let builder = BatchBuilder(cache: cache, train: train, validation: validation, settings: settings, configHash: [UInt8](repeating: 0, count: 16))
        let plan = builder.plan(.validation, epoch: 0)
        let labels = (0..<plan.batchCount).flatMap { builder.build(.validation, epoch: 0, batch: $0).labels }
        #expect(labels.count == builder.validation.count * 9)
        #expect(labels.map(\.imageIndex) == builder.validation.flatMap { Array(repeating: UInt32($0.index), count: 9) })
        #expect(labels.allSatisfy { $0.operation == 0 })
    }
}
