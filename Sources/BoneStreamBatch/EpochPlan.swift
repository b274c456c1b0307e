import BoneStreamAugment
import BoneStreamCore

/// How epochs are drawn (the `stream` section).
public struct StreamSettings: Sendable, Equatable {
    public enum Sampling: String, Sendable { case withReplacement = "with_replacement", permutation }

    public var samplesPerEpoch: Int
    public var batchSize: Int
    public var sampling: Sampling
    public var seed: UInt64
    public var grid: PatchGrid
    public var pool: AugmentationPool

    public init(samplesPerEpoch: Int = 16_000, batchSize: Int = 40, sampling: Sampling = .withReplacement, seed: UInt64 = 1234,
                grid: PatchGrid = PatchGrid(), pool: AugmentationPool = AugmentationPool(entries: [(.identity, 1), (.flip, 1)])) {
        self.samplesPerEpoch = samplesPerEpoch
        self.batchSize = batchSize
        self.sampling = sampling
        self.seed = seed
        self.grid = grid
        self.pool = pool
    }

    public init(config: PipelineConfig) throws {
        self.init(samplesPerEpoch: config.int("stream.samples_per_epoch"), batchSize: config.int("stream.batch_size"),
                  sampling: Sampling(rawValue: config.string("stream.sampling")) ?? .withReplacement,
                  seed: UInt64(config.int("augment.seed")),
                  grid: PatchGrid(imageSize: config.int("preprocess.size"), patchSize: config.int("patches.size"),
                                  perSide: config.int("patches.per_side")),
                  pool: try AugmentationPool(config: config))
    }
}

/// One planned sample: which image (position in its split's table), which patch, which augmentation.
public struct PlannedSample: Sendable, Equatable {
    public var image: Int
    public var patch: Int
    public var augmentation: Augmentation
}

/// The plan of one epoch, a pure function of (settings, kind, epoch, image count): any process can
/// compute any batch of it, which is what makes delivery exactly-once and resumable.
///
/// - Training, with replacement (the authors' way): sample i of epoch e draws its image, patch and
///   augmentation from `CounterRandom(seed, e, i)`; `samplesPerEpoch` samples.
/// - Training, permutation: every (image, patch) pair once, in an order shuffled by (seed, e);
///   augmentations still from `CounterRandom(seed, e, i)`.
/// - Validation: every patch of every image, unaugmented, in image order (25 consecutive samples per
///   image), so a consumer can take each image's median.
public struct EpochPlan: Sendable {
    public let kind: BatchHeader.Kind
    public let epoch: Int
    public let images: Int
    public let settings: StreamSettings
    public let sampleCount: Int
    private let permutation: [Int32]?

    public init(kind: BatchHeader.Kind, epoch: Int, images: Int, settings: StreamSettings) {
        self.kind = kind
        self.epoch = epoch
        self.images = images
        self.settings = settings
        let pairs = images * settings.grid.count
        switch (kind, settings.sampling) {
        case (.validation, _):
            sampleCount = pairs
            permutation = nil
        case (.train, .withReplacement):
            sampleCount = images > 0 ? settings.samplesPerEpoch : 0
            permutation = nil
        case (.train, .permutation):
            sampleCount = pairs
            var order = (0..<pairs).map { Int32($0) }
            var random = CounterRandom(seed: settings.seed, UInt64(epoch), 0x5045_524D)  // "PERM"
            random.shuffle(&order)
            permutation = order
        }
    }

    public var batchCount: Int { (sampleCount + settings.batchSize - 1) / settings.batchSize }

    /// The samples of batch `batch`.
    public func samples(inBatch batch: Int) -> Range<Int> {
        precondition(batch >= 0 && batch < batchCount, "batch \(batch) out of 0..<\(batchCount)")
        return (batch * settings.batchSize)..<min(sampleCount, (batch + 1) * settings.batchSize)
    }

    public func sample(_ i: Int) -> PlannedSample {
        let patches = settings.grid.count
        if kind == .validation {
            return PlannedSample(image: i / patches, patch: i % patches, augmentation: .identity)
        }
        var random = CounterRandom(seed: settings.seed, UInt64(epoch), UInt64(i))
        if let permutation {
            let pair = Int(permutation[i])
            return PlannedSample(image: pair / patches, patch: pair % patches, augmentation: settings.pool.draw(&random))
        }
        let image = Int(random.next() % UInt64(images)), patch = Int(random.next() % UInt64(patches))
        return PlannedSample(image: image, patch: patch, augmentation: settings.pool.draw(&random))
    }
}
