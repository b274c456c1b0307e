/// Named sets of settings laid over pipeline.yaml (`--profile NAME`): above the file, below command
/// flags and `--set`.
public enum PipelineProfiles {
    public struct Profile: Sendable {
        public let name: String
        public let doc: String
        public let settings: [(String, String)]
    }

    public static let all: [Profile] = [
        Profile(name: "demo", doc: """
            Small enough to run end to end on a 2-core machine in a few minutes and still learn: 1,000 \
            small phantoms (a tenth each for validation and test), 128x128 preprocessed images, 64x64 \
            patches, a ResNet18 with channel attention at a quarter of the width, 16 epochs of 4,000 patches.
            """, settings: [
                ("phantoms.count", "1000"), ("phantoms.min_side", "384"), ("phantoms.max_side", "512"),
                ("phantoms.validation_fraction", "0.1"), ("phantoms.test_fraction", "0.1"),
                ("dataset.root", "data/phantoms-demo"), ("dataset.tables", "work/demo/tables"), ("split.out", "work/demo/splits"),
                ("preprocess.size", "128"), ("patches.size", "64"),
                ("stream.samples_per_epoch", "4000"), ("stream.epochs", "16"),
                ("train.model", "resnet18-cam"), ("train.width", "16"), ("train.learning_rate", "0.0005"), ("train.patience", "6"),
                ("train.out", "work/demo/run"), ("shards.out", "work/demo/shards"),
            ]),
        Profile(name: "demo-inception", doc: """
            The demo with the paper's best model: Inception-v4 at a quarter of the width on 96x96 patches \
            (its valid-padded reductions need at least 75 pixels, so the demo's 64 will not do), 1,000 \
            small phantoms, 128x128 images, 16 epochs of 4,000 patches.
            """, settings: [
                ("phantoms.count", "1000"), ("phantoms.min_side", "384"), ("phantoms.max_side", "512"),
                ("phantoms.validation_fraction", "0.1"), ("phantoms.test_fraction", "0.1"),
                ("dataset.root", "data/phantoms-demo"), ("dataset.tables", "work/demo/tables"), ("split.out", "work/demo/splits"),
                ("preprocess.size", "128"), ("patches.size", "96"),
                ("stream.samples_per_epoch", "4000"), ("stream.epochs", "16"),
                ("train.model", "inception-v4"), ("train.width", "16"), ("train.learning_rate", "0.0005"), ("train.patience", "6"),
                ("train.out", "work/demo-inception/run"), ("shards.out", "work/demo-inception/shards"),
            ]),
        Profile(name: "paper", doc: """
            The paper's best ResNet18 setup: channel attention, MSE, learning rate 0.0005, flips, crop \
            0.05 on every side, 500x500 images, 25 patches of 224, 16,000 patches per epoch in batches \
            of 40, 50 epochs with early stopping on the validation loss.
            """, settings: [
                ("preprocess.size", "500"), ("patches.size", "224"), ("patches.per_side", "5"),
                ("preprocess.crop_top", "0.05"), ("preprocess.crop_bottom", "0.05"),
                ("preprocess.crop_left", "0.05"), ("preprocess.crop_right", "0.05"),
                ("augment.pool", "identity,flip"), ("stream.samples_per_epoch", "16000"), ("stream.batch_size", "40"),
                ("stream.sampling", "with_replacement"), ("stream.epochs", "50"),
                ("train.model", "resnet18-cam"), ("train.width", "64"), ("train.loss", "mse"), ("train.learning_rate", "0.0005"),
                ("train.monitor", "val_loss"), ("train.out", "work/paper/run"),
            ]),
        Profile(name: "paper-inception", doc: """
            The paper's best model, Inception-v4 (6.33 months MAE by the median of patches): MAE loss, \
            learning rate 0.0001, flips, rotations and blur, crop 0.1 top, 0.05 bottom, 0.1 left and \
            right, 500x500 images, 25 patches of 224, 16,000 patches per epoch in batches of 40, 50 epochs.
            """, settings: [
                ("preprocess.size", "500"), ("patches.size", "224"), ("patches.per_side", "5"),
                ("preprocess.crop_top", "0.1"), ("preprocess.crop_bottom", "0.05"),
                ("preprocess.crop_left", "0.1"), ("preprocess.crop_right", "0.1"),
                ("augment.pool", "identity,flip,rotate,blur"), ("stream.samples_per_epoch", "16000"), ("stream.batch_size", "40"),
                ("stream.sampling", "with_replacement"), ("stream.epochs", "50"),
                ("train.model", "inception-v4"), ("train.width", "64"), ("train.loss", "mae"), ("train.learning_rate", "0.0001"),
                ("train.monitor", "val_loss"), ("train.out", "work/paper-inception/run"),
            ]),
    ]

    public static var names: [String] { all.map(\.name) }

    public static func named(_ name: String) -> Profile? { all.first { $0.name == name } }
}

extension PipelineConfig {
    /// Lays profile `name` over this configuration.
    public mutating func apply(profile name: String) throws {
        guard let profile = PipelineProfiles.named(name) else {
            throw ConfigError(source: "--profile \(name)", message: "unknown profile; known: \(PipelineProfiles.names.joined(separator: ", "))")
        }
        for (key, value) in profile.settings { try override(key, with: value, flag: "--profile \(name)") }
    }
}
