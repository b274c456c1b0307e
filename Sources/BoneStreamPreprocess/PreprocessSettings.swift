import BoneStreamCore
import BoneStreamImage
import Foundation

/// What decides the pixels of a cached image. Its hash names the cache, so images made with
/// different settings never mix.
public struct PreprocessSettings: Sendable, Codable, Equatable {
    /// Bumped whenever the pipeline's arithmetic changes.
    public var algorithmVersion = 1
    public var crop: CropFractions
    public var size: Int
    public var resize: Resize.Method
    public var claheClip: Double
    public var claheTiles: Int

    public init(crop: CropFractions, size: Int = 500, resize: Resize.Method = .bilinear, claheClip: Double = 2, claheTiles: Int = 8) {
        self.crop = crop
        self.size = size
        self.resize = resize
        self.claheClip = claheClip
        self.claheTiles = claheTiles
    }

    public init(config: PipelineConfig) {
        self.init(crop: CropFractions(top: config.double("preprocess.crop_top"), bottom: config.double("preprocess.crop_bottom"),
                                      left: config.double("preprocess.crop_left"), right: config.double("preprocess.crop_right")),
                  size: config.int("preprocess.size"), resize: Resize.Method(rawValue: config.string("preprocess.resize")) ?? .bilinear,
                  claheClip: config.double("preprocess.clahe_clip"), claheTiles: config.int("preprocess.clahe_tiles"))
    }

    /// SHA-256 of the canonical JSON of these settings.
    public var hash: String {
        // JSONFile sorts keys, so the text (and hash) depends only on the values.
        (try? JSONFile.encode(self)).map(Hashing.sha256) ?? ""
    }

    /// The cache subfolder name: the first 16 hex digits of the hash.
    public var cacheKey: String { String(hash.prefix(16)) }
}

/// Time spent in each step of preprocessing one image, in seconds.
public struct StepTimes: Sendable {
    public var decode = 0.0, crop = 0.0, resize = 0.0, clahe = 0.0

    public init(decode: Double = 0, crop: Double = 0, resize: Double = 0, clahe: Double = 0) {
        self.decode = decode
        self.crop = crop
        self.resize = resize
        self.clahe = clahe
    }

    public static func + (a: StepTimes, b: StepTimes) -> StepTimes {
        StepTimes(decode: a.decode + b.decode, crop: a.crop + b.crop, resize: a.resize + b.resize, clahe: a.clahe + b.clahe)
    }

    public var total: Double { decode + crop + resize + clahe }
}

/// The per-image pipeline: decode, crop, resize, CLAHE.
public enum ImagePipeline {
    /// Preprocesses the PNG at `path`. Errors are `ImageError`s naming the file.
    public static func run(path: String, settings: PreprocessSettings, limits: DecodeLimits) throws -> GrayImage {
        var times = StepTimes()
        return try run(path: path, settings: settings, limits: limits, times: &times)
    }

    /// The same, adding each step's time to `times`.
    public static func run(path: String, settings: PreprocessSettings, limits: DecodeLimits, times: inout StepTimes) throws -> GrayImage {
        var clock = ContinuousClock.now
        func lap() -> Double {
            let now = ContinuousClock.now
            defer { clock = now }
            let d = now - clock
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        // The crop happens inside the decoder (rows below it are never inflated); "crop" times the
        // 16-to-8-bit step that must follow it.
        let decoded = try PNGCodec.decode(path: path, limits: limits, cropping: settings.crop)
        times.decode += lap()
        let cropped = decoded.eightBit()
        times.crop += lap()
        let resized = Resize.resize(cropped, width: settings.size, height: settings.size, method: settings.resize)
        times.resize += lap()
        let result = CLAHE.apply(resized, clipLimit: settings.claheClip, tilesX: settings.claheTiles, tilesY: settings.claheTiles)
        times.clahe += lap()
        return result
    }
}
