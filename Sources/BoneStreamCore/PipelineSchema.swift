/// Every key pipeline.yaml accepts, its type, default and documentation. docs/config.md and the
/// repository's pipeline.yaml are generated from this table (`bonestream config docs`,
/// `bonestream config show --defaults`), and a test keeps them in step.
public enum PipelineSchema {
    /// The three RSNA splits, in the order they are processed.
    public static let splits = ["train", "validation", "test"]

    public static let sections: [ConfigSection] = [
        ConfigSection(name: "phantoms", doc: """
            The synthetic hand-radiograph dataset that `bonestream phantoms` writes in RSNA's layout, \
            so that every stage runs with no download.
            """, keys: [
                ConfigKey("phantoms.count", .int(1...1_000_000), .int(240),
                          "Number of images over all three splits."),
                ConfigKey("phantoms.seed", .int(0...Int.max), .int(2026),
                          "Seed: the same seed and settings give byte-identical files."),
                ConfigKey("phantoms.validation_fraction", .double(0...0.9), .double(0.1011),
                          "Share of images in the validation split (RSNA: 1,425 of 14,236)."),
                ConfigKey("phantoms.test_fraction", .double(0...0.9), .double(0.0141),
                          "Share of images in the test split (RSNA: 200 of 14,236)."),
                ConfigKey("phantoms.min_side", .int(64...10_000), .int(1500),
                          "Smallest image side in pixels."),
                ConfigKey("phantoms.max_side", .int(64...10_000), .int(2500),
                          "Largest image side in pixels."),
                ConfigKey("phantoms.noise", .double(0...50), .double(2.5),
                          "Standard deviation of the pixel noise, in gray levels."),
                ConfigKey("phantoms.png_compression", .int(0...9), .int(1),
                          "zlib level of the written PNGs (0 none, 9 smallest; noisy radiographs gain little past 1, which is three times faster than 6)."),
            ]),
        ConfigSection(name: "dataset", doc: """
            Where the RSNA split files and images are, how their columns map onto the canonical \
            table, and what `bonestream normalize` accepts.
            """, keys: [
                ConfigKey("dataset.root", .string, .string("data/phantoms"),
                          "Folder holding the split files and image folders (relative paths are from the working directory)."),
                ConfigKey("dataset.tables", .string, .string("work/tables"),
                          "Folder the canonical tables train.csv, validation.csv, test.csv and rejects.csv are written to."),
                ConfigKey("dataset.max_age_months", .double(1...10_000), .double(240),
                          "Ages above this are rejected."),
                ConfigKey("dataset.reject_threshold", .double(0...1), .double(0.01),
                          "normalize exits non-zero when more than this share of rows is rejected."),
                ConfigKey("dataset.check_images", .bool, .bool(true),
                          "Check that every image exists and has a valid PNG header."),
                ConfigKey("dataset.male_values", .strings, .strings(["true", "t", "1", "m", "male"]),
                          "Sex-column values that mean male (compared without case)."),
                ConfigKey("dataset.female_values", .strings, .strings(["false", "f", "0", "female"]),
                          "Sex-column values that mean female (compared without case)."),
            ] + splitKeys(split: "train", file: "boneage-training-dataset.csv", images: "boneage-training-dataset",
                          id: "id", sex: "male", age: "boneage")
              + splitKeys(split: "validation", file: "Validation Dataset.csv", images: "boneage-validation-dataset",
                          id: "Image ID", sex: "male", age: "Bone Age (months)")
              + splitKeys(split: "test", file: "Bone age ground truth.xlsx", images: "boneage-test-dataset",
                          id: "Case ID", sex: "Sex", age: "Ground truth bone age (months)")),
        ConfigSection(name: "split", doc: """
            How `bonestream split` turns the canonical tables into the splits that training uses.
            """, keys: [
                ConfigKey("split.mode", .choice(["official", "stratified", "kfold"]), .string("official"),
                          "official keeps RSNA's splits; stratified pools all tables and re-splits by sex x age bin; kfold pools train and validation into folds and keeps the official test split."),
                ConfigKey("split.out", .string, .string("work/splits"),
                          "Folder the split tables and split-manifest.json are written to."),
                ConfigKey("split.seed", .int(0...Int.max), .int(42),
                          "Seed of the stratified and k-fold assignment."),
                ConfigKey("split.train_fraction", .double(0...1), .double(0.8),
                          "stratified: share of each stratum that goes to train."),
                ConfigKey("split.validation_fraction", .double(0...1), .double(0.1),
                          "stratified: share of each stratum that goes to validation (test gets the rest)."),
                ConfigKey("split.folds", .int(2...100), .int(5),
                          "kfold: number of folds."),
                ConfigKey("split.age_bin_months", .double(1...240), .double(24),
                          "Width of the age bins used for stratification and for the manifest's counts."),
            ]),
        ConfigSection(name: "preprocess", doc: """
            How `bonestream preprocess` turns each image into the cached 8-bit square that workers cut \
            patches from: crop, resize, CLAHE. Changing any key that affects pixels makes a new cache.
            """, keys: [
                ConfigKey("preprocess.cache", .string, .string("work/cache"),
                          "Folder of caches; each preprocessing configuration gets its own subfolder named by its hash."),
                ConfigKey("preprocess.crop_top", .double(0...0.45), .double(0.05), "Share of the height removed at the top."),
                ConfigKey("preprocess.crop_bottom", .double(0...0.45), .double(0.05), "Share of the height removed at the bottom."),
                ConfigKey("preprocess.crop_left", .double(0...0.45), .double(0.05), "Share of the width removed at the left."),
                ConfigKey("preprocess.crop_right", .double(0...0.45), .double(0.05), "Share of the width removed at the right."),
                ConfigKey("preprocess.size", .int(32...4096), .int(500), "Side of the square the cropped image is resized to."),
                ConfigKey("preprocess.resize", .choice(["bilinear", "area"]), .string("bilinear"),
                          "bilinear as OpenCV's INTER_LINEAR (the paper's choice); area averages, better for large shrink factors."),
                ConfigKey("preprocess.clahe_clip", .double(0...100), .double(2.0),
                          "CLAHE clip limit (OpenCV's clipLimit); 0 turns clipping off."),
                ConfigKey("preprocess.clahe_tiles", .int(1...64), .int(8), "CLAHE tile grid: tiles per side."),
                ConfigKey("preprocess.bad_images", .choice(["skip", "fail"]), .string("skip"),
                          "skip reports an image that cannot be decoded in rejects.csv and goes on; fail stops the run."),
                ConfigKey("preprocess.max_side", .int(1...1_000_000), .int(20_000),
                          "Images wider or taller than this are refused before decoding."),
                ConfigKey("preprocess.max_pixels", .int(1...Int(Int32.max)), .int(100_000_000),
                          "Images with more pixels than this are refused before decoding (decompression bombs)."),
            ]),
        ConfigSection(name: "patches", doc: """
            The overlapping patch grid cut from each cached image.
            """, keys: [
                ConfigKey("patches.per_side", .int(1...32), .int(5), "Patches per side (5 gives the paper's 25)."),
                ConfigKey("patches.size", .int(8...4096), .int(224), "Patch side in pixels."),
            ]),
        ConfigSection(name: "augment", doc: """
            The random augmentation each training patch gets: one operation drawn from a weighted pool.
            """, keys: [
                ConfigKey("augment.pool", .strings, .strings(["identity", "flip"]),
                          "Operations to draw from, each optionally with a weight (rotate:2): identity, flip (horizontal or vertical, 50/50), hflip, vflip, rotate, blur. The paper: identity and flip for ResNet18; identity, flip, rotate, blur for Inception-v4."),
                ConfigKey("augment.rotate_degrees", .double(0...180), .double(30), "Rotation angles are uniform in [-this, +this] degrees."),
                ConfigKey("augment.blur_sigma_min", .double(0.05...10), .double(0.2), "Smallest Gaussian blur sigma."),
                ConfigKey("augment.blur_sigma_max", .double(0.05...10), .double(1.0), "Largest Gaussian blur sigma."),
                ConfigKey("augment.seed", .int(0...Int.max), .int(1234),
                          "Seed of every sample draw (image, patch, augmentation): a (seed, epoch, sample) key gives the same patch bytes anywhere."),
            ]),
        ConfigSection(name: "stream", doc: """
            How epochs are planned and cut into batches.
            """, keys: [
                ConfigKey("stream.samples_per_epoch", .int(1...100_000_000), .int(16_000),
                          "Training samples per epoch when sampling with replacement (the paper: 16,000)."),
                ConfigKey("stream.batch_size", .int(1...65_536), .int(40), "Patches per batch (the paper: 40)."),
                ConfigKey("stream.sampling", .choice(["with_replacement", "permutation"]), .string("with_replacement"),
                          "with_replacement draws image, patch and augmentation at random for every sample, as the authors did; permutation visits every (image, patch) pair once per epoch in a seeded order."),
                ConfigKey("stream.epochs", .int(1...100_000), .int(1), "Epochs the coordinator plans before it ends the stream."),
                ConfigKey("stream.validation", .bool, .bool(true), "Send a validation pass (every patch of every validation image, unaugmented) after each training epoch."),
                ConfigKey("stream.workers", .int(0...256), .int(2), "Local worker processes `bonestream produce` starts; 0 means workers come from elsewhere."),
                ConfigKey("stream.control", .string, .string("ipc://work/stream-control"),
                          "The coordinator's control endpoint (it binds; workers, consumers and status/scale/stop connect). Across hosts tcp://HOST:PORT, or tcp://*:PORT (every interface; this host's processes connect to 127.0.0.1)."),
                ConfigKey("stream.data", .string, .string("ipc://work/stream-data"),
                          "The consumer's data endpoint (the consumer binds; workers connect). With tcp://*:PORT a worker connects to the host it reaches the coordinator at."),
                ConfigKey("stream.credit", .int(1...4096), .int(32), "Batches a consumer lets be in flight towards it: the bound on every queue. A consumer acknowledges half of it per message. 32 streamed faster than 16 with two local workers, 64 no faster (docs/performance.md)."),
                ConfigKey("stream.shared_memory", .bool, .bool(true),
                          "With an ipc:// data endpoint, workers write pixels into slots in /dev/shm and send only a reference (no pixel crosses a socket); false sends pixels inline. Every BoneStream consumer reads both."),
                ConfigKey("stream.work_board", .bool, .bool(true),
                          "Workers on the coordinator's host take their work from a board in /dev/shm instead of a WORK message per batch, which leaves the coordinator idle between acknowledgements; workers on other hosts always ask by message. false: every worker asks by message."),
            ]),
        ConfigSection(name: "shards", doc: """
            Recorded streams (docs/shards.md): `bonestream record` writes every batch to shard files, \
            `bonestream replay` streams them again, `bonestream shard verify|ls` checks and lists them.
            """, keys: [
                ConfigKey("shards.out", .string, .string("work/shards"),
                          "The shard folder `record` writes and `replay`, `shard verify|ls` and `train --shards` read when no folder is given."),
                ConfigKey("shards.shard_mb", .int(1...65_536), .int(256), "Size cap of one shard file in MB; a full shard is completed and a new one begun."),
                ConfigKey("shards.on_damage", .choice(["skip", "fail"]), .string("skip"),
                          "A damaged batch in replay: skip finds every damaged batch before the replay starts, reports it and leaves it out; fail stops at the first, naming file and byte offset."),
            ]),
        ConfigSection(name: "train", doc: """
            The trainer (`bonestream train`): model, loss, optimiser, early stopping, and where the run's \
            checkpoints, metrics and report go. Epochs, samples per epoch and batch size are the stream's \
            (`stream.epochs`, `stream.samples_per_epoch`, `stream.batch_size`).
            """, keys: [
                ConfigKey("train.model", .choice(["resnet18", "resnet18-cam", "resnet18-cbam", "inception-v4"]), .string("resnet18-cam"),
                          "resnet18 (vanilla), resnet18-cam (channel attention, the paper's best ResNet), resnet18-cbam, or inception-v4 (the paper's best model; needs patches.size of at least 75)."),
                ConfigKey("train.width", .int(4...512), .int(64),
                          "Filters of the first stage; each later stage doubles them (the paper: 64, giving 64/128/256/512). Inception-v4 scales all its filter counts by width / 64 (64: the paper's)."),
                ConfigKey("train.loss", .choice(["mse", "mae"]), .string("mse"), "Training loss (the paper's best ResNet: mse)."),
                ConfigKey("train.learning_rate", .double(1e-7...1), .double(0.0005), "Adam's learning rate (the paper's best ResNet: 0.0005)."),
                ConfigKey("train.monitor", .choice(["val_loss", "val_median_mae"]), .string("val_loss"),
                          "What early stopping and the best checkpoint watch: the per-patch validation loss (as the paper did) or the validation MAE of each image's median patch prediction (the paper's proposed future work)."),
                ConfigKey("train.patience", .int(0...100_000), .int(10),
                          "Stop after this many epochs without improvement of the monitor; 0 never stops early."),
                ConfigKey("train.seed", .int(0...Int.max), .int(1), "Seed of the model's initial weights."),
                ConfigKey("train.out", .string, .string("work/run"),
                          "The run folder: last.safetensors, best.safetensors, metrics.jsonl, predictions and report.html."),
            ]),
    ]

    private static func splitKeys(split: String, file: String, images: String,
                                  id: String, sex: String, age: String) -> [ConfigKey] {
        let p = "dataset.\(split)"
        return [
            ConfigKey("\(p).file", .string, .string(file),
                      "The \(split) split file, CSV or XLSX, relative to dataset.root."),
            ConfigKey("\(p).format", .choice(["auto", "csv", "xlsx"]), .string("auto"),
                      "File format; auto decides by the file's extension."),
            ConfigKey("\(p).sheet", .string, .string(""),
                      "XLSX only: the sheet to read; empty means the first."),
            ConfigKey("\(p).images", .string, .string(images),
                      "Folder of the \(split) images, <id>.png, relative to dataset.root."),
            ConfigKey("\(p).id_column", .string, .string(id), "Header of the image id column."),
            ConfigKey("\(p).sex_column", .string, .string(sex), "Header of the sex column."),
            ConfigKey("\(p).age_column", .string, .string(age), "Header of the bone age column, in months."),
        ]
    }

    /// All keys by dotted path.
    public static let keysByPath: [String: ConfigKey] = {
        var table: [String: ConfigKey] = [:]
        for section in sections {
            for key in section.keys { table[key.path] = key }
        }
        return table
    }()

    /// All keys in documentation order.
    public static var allKeys: [ConfigKey] { sections.flatMap(\.keys) }
}
