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
