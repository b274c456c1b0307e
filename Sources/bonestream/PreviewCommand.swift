import ArgumentParser
import BoneStreamAugment
import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import BoneStreamPreprocess
import Foundation

struct PreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "Write PNGs of every preprocessing step and augmentation of one image, for a person to look at.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Image id (index in the canonical tables).")
    var id: Int

    @Option(help: "Output folder (default: work/preview/<id>).")
    var out: String?

    @Option(help: "Which of the patches to augment (row-major; default: the centre one).")
    var patch: Int?

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            let options = PreprocessOptions(config: config)
            let folder = out ?? "work/preview/\(id)"
            var path: String?
            for split in PipelineSchema.splits {
                let candidate = options.root + "/" + options.imageFolders[split]! + "/\(id).png"
                if FileManager.default.fileExists(atPath: candidate) { path = candidate; break }
            }
            guard let path else {
                throw PreprocessError(message: "no image \(id).png in any split folder under \(options.root)")
            }
            let written = try Preview.write(path: path, config: config, patch: patch, to: folder)
            for file in written { say(file) }
        }
    }
}

/// The preview's pictures: each step of preprocessing, the patch grid, and each augmentation.
enum Preview {
    static func write(path: String, config: PipelineConfig, patch: Int?, to folder: String) throws -> [String] {
        let options = PreprocessOptions(config: config)
        let settings = options.settings
        var written: [String] = []
        func save(_ image: GrayImage, _ name: String) throws {
            let file = folder + "/" + name
            try PNGCodec.write(image, to: file, level: 1)
            written.append(file)
        }
        let decoded = try PNGCodec.decode(path: path, limits: options.limits)
        if case .gray8(let original) = decoded { try save(original, "01-original.png") }
        let cropped = decoded.cropped(settings.crop)
        try save(cropped, "02-crop.png")
        let resized = Resize.resize(cropped, width: settings.size, height: settings.size, method: settings.resize)
        try save(resized, "03-resize.png")
        let clahe = CLAHE.apply(resized, clipLimit: settings.claheClip, tilesX: settings.claheTiles, tilesY: settings.claheTiles)
        try save(clahe, "04-clahe.png")

        let grid = PatchGrid(imageSize: settings.size, patchSize: config.int("patches.size"), perSide: config.int("patches.per_side"))
        var outlined = clahe
        for p in 0..<grid.count {
            let (x0, y0) = grid.origin(of: p)
            let value: UInt8 = p % 2 == 0 ? 255 : 0
            for i in 0..<grid.patchSize {
                for (x, y) in [(x0 + i, y0), (x0 + i, y0 + grid.patchSize - 1), (x0, y0 + i), (x0 + grid.patchSize - 1, y0 + i)] {
                    outlined[x, y] = value
                }
            }
        }
        try save(outlined, "05-patch-grid.png")

        // All patches side by side, 4 px apart.
        let gap = 4, n = grid.perSide, side = n * grid.patchSize + (n - 1) * gap
        var montage = GrayImage(width: side, height: side, fill: 128)
        let augmenter = PatchAugmenter(grid: grid)
        var buffer = [UInt8](repeating: 0, count: grid.patchSize * grid.patchSize)
        clahe.pixels.withUnsafeBufferPointer { image in
            for p in 0..<grid.count {
                buffer.withUnsafeMutableBufferPointer { augmenter.apply(.identity, image: image.baseAddress!, patch: p, to: $0.baseAddress!) }
                let ox = (p % n) * (grid.patchSize + gap), oy = (p / n) * (grid.patchSize + gap)
                for y in 0..<grid.patchSize {
                    for x in 0..<grid.patchSize { montage[ox + x, oy + y] = buffer[y * grid.patchSize + x] }
                }
            }
        }
        try save(montage, "06-patches.png")

        let chosen = patch ?? grid.count / 2
        let maxDegrees = config.double("augment.rotate_degrees")
        let augmentations: [(Augmentation, String)] = [
            (.identity, "07-patch-identity.png"), (.horizontalFlip, "08-patch-hflip.png"), (.verticalFlip, "09-patch-vflip.png"),
            (.rotate(degrees: maxDegrees), "10-patch-rotate+\(Int(maxDegrees)).png"),
            (.rotate(degrees: -maxDegrees), "11-patch-rotate-\(Int(maxDegrees)).png"),
            (.blur(sigma: config.double("augment.blur_sigma_min")), "12-patch-blur-min.png"),
            (.blur(sigma: config.double("augment.blur_sigma_max")), "13-patch-blur-max.png"),
        ]
        for (augmentation, name) in augmentations {
            clahe.pixels.withUnsafeBufferPointer { image in
                buffer.withUnsafeMutableBufferPointer { augmenter.apply(augmentation, image: image.baseAddress!, patch: chosen, to: $0.baseAddress!) }
            }
            try save(GrayImage(width: grid.patchSize, height: grid.patchSize, pixels: buffer), name)
        }
        return written
    }
}
