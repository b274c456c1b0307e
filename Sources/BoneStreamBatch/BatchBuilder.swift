import BoneStreamAugment
import BoneStreamCore
import BoneStreamDataset
import BoneStreamPreprocess

/// Makes batches from the cache: the work of a worker, without any transport. Not thread-safe; use
/// one per thread.
public final class BatchBuilder {
    public let cache: ImageCache
    public let settings: StreamSettings
    public let configHash: [UInt8]
    /// Rows of each split that the cache holds, in table order.
    public let train: [CanonicalRow]
    public let validation: [CanonicalRow]
    private let augmenter: PatchAugmenter
    private var plans: [String: EpochPlan] = [:]

    public init(cache: ImageCache, train: [CanonicalRow], validation: [CanonicalRow], settings: StreamSettings, configHash: [UInt8]) {
        precondition(cache.size == settings.grid.imageSize, "cache images are \(cache.size), the grid expects \(settings.grid.imageSize)")
        self.cache = cache
        self.settings = settings
        self.configHash = configHash
        self.train = train.filter { cache.slots[$0.index] != nil }
        self.validation = validation.filter { cache.slots[$0.index] != nil }
        augmenter = PatchAugmenter(grid: settings.grid)
    }

    /// The header's config hash: what decides a batch's bytes (preprocessing, the patch grid,
    /// augmentation and the epoch plan), not the number of workers, the endpoints or the credit.
    public static func configHash(_ config: PipelineConfig) -> [UInt8] {
        let planKeys = ["stream.samples_per_epoch", "stream.batch_size", "stream.sampling"]
        return Array(Hashing.sha256Bytes(PreprocessSettings(config: config).hash + config.hash(sections: ["patches", "augment"])
                                         + config.hash(keys: planKeys)).prefix(16))
    }

    /// The plan of (kind, epoch), computed once and kept.
    public func plan(_ kind: BatchHeader.Kind, epoch: Int) -> EpochPlan {
        let key = "\(kind.rawValue)-\(epoch)"
        if let plan = plans[key] { return plan }
        let plan = EpochPlan(kind: kind, epoch: epoch, images: kind == .train ? train.count : validation.count, settings: settings)
        if plans.count > 4 { plans.removeAll() }
        plans[key] = plan
        return plan
    }

    /// Writes batch `batch` of (kind, epoch) into `pixels` (batchSize x size x size bytes) and `labels`
    /// (batchSize x 16 bytes) and returns its header. Allocates nothing once the plan exists.
    public func build(_ kind: BatchHeader.Kind, epoch: Int, batch: Int, pixels: UnsafeMutablePointer<UInt8>,
                      labels: UnsafeMutableRawPointer) -> BatchHeader {
        let plan = plan(kind, epoch: epoch)
        let rows = kind == .train ? train : validation
        let range = plan.samples(inBatch: batch)
        let patchBytes = settings.grid.patchSize * settings.grid.patchSize
        for (slot, i) in range.enumerated() {
            let sample = plan.sample(i)
            let row = rows[sample.image]
            let image = cache.pixels(slot: cache.slots[row.index]!)
            augmenter.apply(sample.augmentation, image: image, patch: sample.patch, to: pixels + slot * patchBytes)
            let (operation, parameter): (UInt8, Float)
            switch sample.augmentation {
            case .identity: (operation, parameter) = (0, 0)
            case .horizontalFlip: (operation, parameter) = (1, 0)
            case .verticalFlip: (operation, parameter) = (2, 0)
            case .rotate(let degrees): (operation, parameter) = (3, Float(degrees))
            case .blur(let sigma): (operation, parameter) = (4, Float(sigma))
            }
            SampleLabel(imageIndex: UInt32(row.index), patch: UInt8(sample.patch), operation: operation, male: row.male,
                        age: Float(row.boneage), parameter: parameter).encode(into: labels + slot * SampleLabel.size)
        }
        return BatchHeader(kind: kind, epoch: UInt32(epoch), batchIndex: UInt32(batch), batchesInEpoch: UInt32(plan.batchCount),
                           count: UInt32(range.count), height: UInt16(settings.grid.patchSize), width: UInt16(settings.grid.patchSize),
                           seed: settings.seed, configHash: configHash)
    }

    /// The same, into a new `Batch`.
    public func build(_ kind: BatchHeader.Kind, epoch: Int, batch: Int) -> Batch {
        let patchBytes = settings.grid.patchSize * settings.grid.patchSize
        let count = plan(kind, epoch: epoch).samples(inBatch: batch).count
        var pixels = [UInt8](repeating: 0, count: count * patchBytes)
        var labelBytes = [UInt8](repeating: 0, count: count * SampleLabel.size)
        let header = pixels.withUnsafeMutableBufferPointer { p in
            labelBytes.withUnsafeMutableBytes { l in build(kind, epoch: epoch, batch: batch, pixels: p.baseAddress!, labels: l.baseAddress!) }
        }
        let labels = labelBytes.withUnsafeBytes { raw in
            (0..<count).map { try! SampleLabel(decoding: raw.baseAddress! + $0 * SampleLabel.size) }  // our own encoding: cannot fail
        }
        return Batch(header: header, pixels: pixels, labels: labels)
    }
}
