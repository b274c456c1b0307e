import BoneStreamCore

/// One augmentation applied to one patch, with its parameters drawn.
public enum Augmentation: Sendable, Equatable, CustomStringConvertible {
    case identity
    case horizontalFlip
    case verticalFlip
    /// Rotation about the patch centre, counter-clockwise in degrees, bilinear, zero outside.
    case rotate(degrees: Double)
    /// Gaussian blur with kernel size `2 * ceil(2 * sigma) + 1`.
    case blur(sigma: Double)

    public var description: String {
        switch self {
        case .identity: return "identity"
        case .horizontalFlip: return "hflip"
        case .verticalFlip: return "vflip"
        case .rotate(let degrees): return "rotate(\(degrees))"
        case .blur(let sigma): return "blur(\(sigma))"
        }
    }

    /// Its kind, as named in `augment.pool`.
    public var kind: AugmentationPool.Kind {
        switch self {
        case .identity: return .identity
        case .horizontalFlip: return .hflip
        case .verticalFlip: return .vflip
        case .rotate: return .rotate
        case .blur: return .blur
        }
    }
}

/// The weighted pool augmentations are drawn from (`augment.pool`), with their parameter ranges.
public struct AugmentationPool: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case identity, flip, hflip, vflip, rotate, blur
    }

    public var entries: [(kind: Kind, weight: Double)]
    public var maxDegrees: Double
    public var sigmaRange: ClosedRange<Double>

    public static func == (a: AugmentationPool, b: AugmentationPool) -> Bool {
        a.entries.map(\.kind) == b.entries.map(\.kind) && a.entries.map(\.weight) == b.entries.map(\.weight)
            && a.maxDegrees == b.maxDegrees && a.sigmaRange == b.sigmaRange
    }

    public init(entries: [(kind: Kind, weight: Double)], maxDegrees: Double = 30, sigmaRange: ClosedRange<Double> = 0.2...1.0) {
        precondition(!entries.isEmpty && entries.allSatisfy { $0.weight > 0 }, "a pool needs positive weights")
        self.entries = entries
        self.maxDegrees = maxDegrees
        self.sigmaRange = sigmaRange
    }

    /// Parses pool items such as `identity`, `flip`, `rotate:2` (kind, optional weight).
    public static func parse(_ items: [String]) throws -> [(kind: Kind, weight: Double)] {
        try items.map { item in
            let parts = item.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let kind = Kind(rawValue: parts[0]) else {
                throw PoolError(item: item, reason: "unknown augmentation (known: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var weight = 1.0
            if parts.count == 2 {
                guard let w = Double(parts[1]), w > 0, w.isFinite else {
                    throw PoolError(item: item, reason: "the weight after ':' must be a positive number")
                }
                weight = w
            }
            return (kind, weight)
        }
    }

    public struct PoolError: Error, CustomStringConvertible, Sendable {
        public let item: String
        public let reason: String
        public var description: String { "augment.pool item '\(item)': \(reason)" }
    }

    /// The pool of `augment.*` in `config` (validated by `PipelineConfig.validate`).
    public init(config: PipelineConfig) throws {
        self.init(entries: try AugmentationPool.parse(config.strings("augment.pool")),
                  maxDegrees: config.double("augment.rotate_degrees"),
                  sigmaRange: config.double("augment.blur_sigma_min")...config.double("augment.blur_sigma_max"))
    }

    /// Draws one augmentation: a kind by weight, then its parameters. "flip" is horizontal or
    /// vertical with equal odds, as in the authors' code.
    public func draw(_ random: inout CounterRandom) -> Augmentation {
        let total = entries.reduce(0) { $0 + $1.weight }
        var pick = random.unit() * total
        var kind = entries[entries.count - 1].kind
        for entry in entries {
            if pick < entry.weight { kind = entry.kind; break }
            pick -= entry.weight
        }
        switch kind {
        case .identity: return .identity
        case .flip: return random.unit() < 0.5 ? .horizontalFlip : .verticalFlip
        case .hflip: return .horizontalFlip
        case .vflip: return .verticalFlip
        case .rotate: return .rotate(degrees: random.uniform(-maxDegrees, maxDegrees))
        case .blur: return .blur(sigma: random.uniform(sigmaRange.lowerBound, sigmaRange.upperBound))
        }
    }
}
