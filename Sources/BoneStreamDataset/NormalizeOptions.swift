import BoneStreamCore

/// Where one RSNA split file is and how its columns map onto the canonical table.
public struct SplitSource: Sendable {
    public enum Format: String, Sendable { case csv, xlsx }

    public var split: String
    public var file: String
    public var format: Format
    public var sheet: String
    public var images: String
    public var idColumn: String
    public var sexColumn: String
    public var ageColumn: String

    public init(split: String, file: String, format: Format, sheet: String = "", images: String,
                idColumn: String, sexColumn: String, ageColumn: String) {
        self.split = split
        self.file = file
        self.format = format
        self.sheet = sheet
        self.images = images
        self.idColumn = idColumn
        self.sexColumn = sexColumn
        self.ageColumn = ageColumn
    }
}

/// Everything `normalize` needs, taken from the `dataset` section.
public struct NormalizeOptions: Sendable {
    public var root: String
    public var out: String
    public var sources: [SplitSource]
    public var maleValues: Set<String>
    public var femaleValues: Set<String>
    public var maxAgeMonths: Double
    public var rejectThreshold: Double
    public var checkImages: Bool

    public init(config: PipelineConfig) {
        root = config.string("dataset.root")
        out = config.string("dataset.tables")
        maleValues = Set(config.strings("dataset.male_values").map { $0.lowercased() })
        femaleValues = Set(config.strings("dataset.female_values").map { $0.lowercased() })
        maxAgeMonths = config.double("dataset.max_age_months")
        rejectThreshold = config.double("dataset.reject_threshold")
        checkImages = config.bool("dataset.check_images")
        sources = PipelineSchema.splits.map { split in
            let p = "dataset.\(split)"
            let file = config.string("\(p).file")
            let format: SplitSource.Format
            switch config.string("\(p).format") {
            case "csv": format = .csv
            case "xlsx": format = .xlsx
            default: format = file.lowercased().hasSuffix(".xlsx") ? .xlsx : .csv
            }
            return SplitSource(split: split, file: file, format: format, sheet: config.string("\(p).sheet"),
                               images: config.string("\(p).images"), idColumn: config.string("\(p).id_column"),
                               sexColumn: config.string("\(p).sex_column"), ageColumn: config.string("\(p).age_column"))
        }
    }
}
