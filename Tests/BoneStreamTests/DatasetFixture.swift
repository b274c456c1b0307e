import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import Foundation

/// A hand-made RSNA-shaped dataset: split files given as text, tiny valid PNGs for listed ids.
struct DatasetFixture {
    let dir: TemporaryDirectory
    var root: String { dir.path + "/data" }
    var tables: String { dir.path + "/tables" }

    init() throws {
        dir = try TemporaryDirectory("dataset")
        for folder in ["boneage-training-dataset", "boneage-validation-dataset", "boneage-test-dataset"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
    }

    func image(_ id: String, in folder: String) throws {
        let pixels = (0..<64).map { UInt8($0 * 3) }
        try PNGCodec.write(GrayImage(width: 8, height: 8, pixels: pixels), to: root + "/\(folder)/\(id).png")
    }

    func images(_ ids: [Int], in folder: String) throws {
        for id in ids { try image(String(id), in: folder) }
    }

    func file(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + name))
    }

    func xlsx(_ name: String, _ rows: [[XLSXCell]]) throws {
        try XLSX.write(rows: rows).write(to: URL(fileURLWithPath: root + "/" + name))
    }

    /// Normalize options pointing at this fixture, with the default RSNA layouts.
    func options(_ tweak: (inout PipelineConfig) throws -> Void = { _ in }) throws -> NormalizeOptions {
        var config = PipelineConfig()
        try config.override("dataset.root", with: root, flag: "test")
        try config.override("dataset.tables", with: tables, flag: "test")
        try tweak(&config)
        return NormalizeOptions(config: config)
    }

    /// Good files for all three splits: train ids 1-6, validation 10-11, test 20-21.
    func writeGoodSplits() throws {
        try file("boneage-training-dataset.csv", "id,boneage,male\n1,100,True\n2,50,False\n3,12,True\n4,200,False\n5,0,True\n6,240,False\n")
        try images([1, 2, 3, 4, 5, 6], in: "boneage-training-dataset")
        try file("Validation Dataset.csv", "Image ID,male,Bone Age (months)\n10,TRUE,30\n11,FALSE,150\n")
        try images([10, 11], in: "boneage-validation-dataset")
        try xlsx("Bone age ground truth.xlsx", [[.text("Case ID"), .text("Sex"), .text("Ground truth bone age (months)")],
                                                [.number(20), .text("M"), .number(168.934)], [.number(21), .text("F"), .number(73.5)]])
        try images([20, 21], in: "boneage-test-dataset")
    }
}
