import BoneStreamCore
import BoneStreamImage
import Foundation
import Logging

/// A row normalize refused: where it is and why.
public struct Reject: Sendable, Equatable {
    public var file: String
    public var line: Int
    public var id: String
    public var reason: String
}

/// What one normalize run did.
public struct NormalizeReport: Sendable {
    public struct SplitCount: Sendable {
        public var split: String
        public var rows = 0
        public var kept = 0
    }

    public var counts: [SplitCount] = []
    public var rejects: [Reject] = []
    public var tables: [String: [CanonicalRow]] = [:]
    public var rejectThreshold = 0.0

    public var totalRows: Int { counts.reduce(0) { $0 + $1.rows } }
    public var rejectedShare: Double { totalRows == 0 ? 0 : Double(rejects.count) / Double(totalRows) }
    /// True when more than the configured share of rows was rejected.
    public var overThreshold: Bool { rejectedShare > rejectThreshold }

    /// The lines `normalize` prints at the end.
    public var summary: String {
        var lines = counts.map { "\($0.split): \($0.kept) of \($0.rows) rows kept" }
        var reasons: [String: Int] = [:]
        for reject in rejects { reasons[Reject.category(of: reject.reason), default: 0] += 1 }
        lines.append(String(format: "rejected %d of %d rows (%.2f%%, threshold %.2f%%)",
                            rejects.count, totalRows, 100 * rejectedShare, 100 * rejectThreshold))
        for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) { lines.append("  \(count) x \(reason)") }
        return lines.joined(separator: "\n")
    }
}

extension Reject {
    /// The reason without its row-specific detail, for the summary.
    static func category(of reason: String) -> String {
        String(reason.prefix { $0 != ":" && $0 != "(" }).trimmingCharacters(in: .whitespaces)
    }
}

/// A problem that stops normalize as a whole (a missing split file or column), not one row.
public struct NormalizeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The normalize stage: RSNA's three differently shaped split files into one canonical table per
/// split, with every refused row reported in rejects.csv.
public enum Normalizer {
    /// Reads every split, checks every row, writes the tables, rejects.csv and manifest.json atomically.
    public static func run(_ options: NormalizeOptions, logger: Logger, showProgress: Bool = true) throws -> NormalizeReport {
        var report = NormalizeReport()
        report.rejectThreshold = options.rejectThreshold
        var firstSeen: [Int: String] = [:]  // index -> "file:line" of the row that kept it
        var candidates: [(split: String, row: CanonicalRow, file: String, line: Int, id: String, image: String)] = []

        for source in options.sources {
            let path = options.root + "/" + source.file
            guard FileManager.default.fileExists(atPath: path) else {
                throw NormalizeError(message: "\(path): the \(source.split) split file does not exist (set dataset.root or dataset.\(source.split).file)")
            }
            let records: [CSVRecord]
            switch source.format {
            case .csv: records = try CSV.read(path: path)
            case .xlsx: records = try XLSX.read(path: path, sheet: source.sheet)
            }
            var count = NormalizeReport.SplitCount(split: source.split)
            guard let header = records.first else {
                throw NormalizeError(message: "\(path): the file is empty; expected a header row")
            }
            let names = header.fields.map { $0.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() }
            func column(_ name: String, key: String) throws -> Int {
                let wanted = name.trimmingCharacters(in: .whitespaces).lowercased()
                guard let index = names.firstIndex(of: wanted) else {
                    throw NormalizeError(message: "\(path):\(header.line): no column '\(name)' in the header (columns: \(header.fields.joined(separator: ", "))); set dataset.\(source.split).\(key)")
                }
                return index
            }
            let idColumn = try column(source.idColumn, key: "id_column")
            let sexColumn = try column(source.sexColumn, key: "sex_column")
            let ageColumn = try column(source.ageColumn, key: "age_column")

            for record in records.dropFirst() {
                count.rows += 1
                var fields = record.fields
                // XLSX leaves out empty trailing cells; a CSV row must match its header.
                if source.format == .xlsx && fields.count < header.fields.count {
                    fields += Array(repeating: "", count: header.fields.count - fields.count)
                }
                let rawID = idColumn < fields.count ? fields[idColumn].trimmingCharacters(in: .whitespaces) : ""
                func reject(_ reason: String) {
                    report.rejects.append(Reject(file: path, line: record.line, id: rawID, reason: reason))
                }
                if fields.count != header.fields.count {
                    reject("ragged row: \(fields.count) fields, the header has \(header.fields.count)")
                    continue
                }
                guard let index = parseID(rawID) else {
                    reject(rawID.isEmpty ? "missing id" : "id is not a plain non-negative integer")
                    continue
                }
                let sexText = fields[sexColumn].trimmingCharacters(in: .whitespaces).lowercased()
                let male: Bool
                if options.maleValues.contains(sexText) {
                    male = true
                } else if options.femaleValues.contains(sexText) {
                    male = false
                } else {
                    reject(sexText.isEmpty ? "missing sex" : "unrecognised sex value: '\(fields[sexColumn])'")
                    continue
                }
                let ageText = fields[ageColumn].trimmingCharacters(in: .whitespaces)
                guard !ageText.isEmpty else {
                    reject("missing age")
                    continue
                }
                guard let age = Double(ageText), age.isFinite else {
                    reject("non-numeric age: '\(ageText)'")
                    continue
                }
                guard age >= 0 else {
                    reject("negative age: \(ageText)")
                    continue
                }
                guard age <= options.maxAgeMonths else {
                    reject("age over \(CanonicalTable.formatMonths(options.maxAgeMonths)) months: \(ageText)")
                    continue
                }
                if let first = firstSeen[index] {
                    reject("duplicate id (first at \(first))")
                    continue
                }
                firstSeen[index] = "\(path):\(record.line)"
                count.kept += 1
                candidates.append((source.split, CanonicalRow(index: index, male: male, boneage: age), path, record.line,
                                   rawID, options.root + "/" + source.images + "/\(index).png"))
            }
            report.counts.append(count)
        }

        // Image checks touch one file per row: spread them over the cores.
        var imageProblems = [String?](repeating: nil, count: candidates.count)
        if options.checkImages && !candidates.isEmpty {
            let progress = Progress(label: "normalize: checking images", unit: "images", total: candidates.count,
                                    logger: logger, enabled: showProgress)
            let paths = candidates.map(\.image)
            imageProblems = Parallel.map(count: paths.count, grain: 64) { i in
                defer { progress.advance() }
                return imageProblem(path: paths[i])
            }
            progress.finish()
        }

        for (i, candidate) in candidates.enumerated() {
            if let problem = imageProblems[i] {
                report.rejects.append(Reject(file: candidate.file, line: candidate.line, id: candidate.id, reason: problem))
                if let c = report.counts.firstIndex(where: { $0.split == candidate.split }) { report.counts[c].kept -= 1 }
            } else {
                report.tables[candidate.split, default: []].append(candidate.row)
            }
        }

        try write(report, options: options)
        return report
    }

    /// A plain non-negative decimal integer, no sign, no leading zeros, no path characters.
    static func parseID(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        if text.count > 1 && text.hasPrefix("0") { return nil }
        return Int(text)
    }

    private static func imageProblem(path: String) -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return "missing image \(path)" }
        do {
            let info = try PNGCodec.readInfo(path: path)
            if info.width == 0 || info.height == 0 { return "unreadable image \(path): zero size" }
            if !PNGCodec.hasEndChunk(path: path) { return "unreadable image \(path): truncated (no IEND chunk at the end)" }
            return nil
        } catch let error as ImageError {
            return "unreadable image \(path): \(error.reason)"
        } catch {
            return "unreadable image \(path): \(error)"
        }
    }

    private static func write(_ report: NormalizeReport, options: NormalizeOptions) throws {
        try FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
        AtomicFile.removeStaleTemps(in: options.out)
        var tableHashes: [String: String] = [:]
        for split in PipelineSchema.splits {
            let text = CanonicalTable.render(report.tables[split] ?? [])
            try AtomicFile.write(text, to: options.out + "/\(split).csv")
            tableHashes[split + ".csv"] = Hashing.sha256(text)
        }
        var rejects = CSV.line(["file", "line", "id", "reason"])
        for reject in report.rejects {
            rejects += CSV.line([reject.file, String(reject.line), reject.id, reject.reason])
        }
        try AtomicFile.write(rejects, to: options.out + "/rejects.csv")
        tableHashes["rejects.csv"] = Hashing.sha256(rejects)
        // The manifest goes last: its presence with matching hashes says the set is complete.
        let manifest = TablesManifest(tables: tableHashes,
                                      rows: Dictionary(uniqueKeysWithValues: report.counts.map { ($0.split, $0.rows) }),
                                      kept: Dictionary(uniqueKeysWithValues: report.counts.map { ($0.split, $0.kept) }),
                                      rejected: report.rejects.count)
        try AtomicFile.write(manifest.json(), to: options.out + "/" + TablesManifest.fileName)
    }
}
