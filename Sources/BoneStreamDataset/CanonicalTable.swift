import BoneStreamCore
import Foundation

/// One image of the canonical table: `index,male,boneage`.
public struct CanonicalRow: Sendable, Equatable, Hashable {
    public var index: Int
    public var male: Bool
    /// Bone age in months.
    public var boneage: Double

    public init(index: Int, male: Bool, boneage: Double) {
        self.index = index
        self.male = male
        self.boneage = boneage
    }
}

/// Why a canonical table could not be read.
public struct TableError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int?
    public let reason: String
    public var description: String { line.map { "\(file):\($0): \(reason)" } ?? "\(file): \(reason)" }
}

/// The canonical per-split table that every stage after normalize reads: header
/// `index,male,boneage`, index an integer, male 0/1, boneage in months as a decimal, sorted by index.
public enum CanonicalTable {
    public static let header = "index,male,boneage"

    /// The table's text, rows sorted by index.
    public static func render(_ rows: [CanonicalRow]) -> String {
        var out = header + "\n"
        for row in rows.sorted(by: { $0.index < $1.index }) {
            out += "\(row.index),\(row.male ? 1 : 0),\(formatMonths(row.boneage))\n"
        }
        return out
    }

    /// Writes `rows` to `path` atomically.
    public static func write(_ rows: [CanonicalRow], to path: String) throws {
        try AtomicFile.write(render(rows), to: path)
    }

    /// Reads a canonical table, strictly: it is our own format, so any deviation is an error.
    public static func read(path: String) throws -> [CanonicalRow] {
        let records = try CSV.read(path: path)
        guard let first = records.first, first.fields.joined(separator: ",") == header else {
            throw TableError(file: path, line: 1, reason: "expected the header '\(header)'")
        }
        var rows: [CanonicalRow] = []
        rows.reserveCapacity(records.count - 1)
        for record in records.dropFirst() {
            guard record.fields.count == 3, let index = Int(record.fields[0]),
                  let male = Int(record.fields[1]), male == 0 || male == 1,
                  let age = Double(record.fields[2]), age.isFinite else {
                throw TableError(file: path, line: record.line, reason: "malformed row '\(record.fields.joined(separator: ","))'")
            }
            rows.append(CanonicalRow(index: index, male: male == 1, boneage: age))
        }
        return rows
    }

    /// Months as a decimal with at least one and at most four decimals: 120 -> "120.0", 168.934 -> "168.934".
    public static func formatMonths(_ months: Double) -> String {
        var text = String(format: "%.4f", months)
        while text.hasSuffix("0") && !text.hasSuffix(".0") { text.removeLast() }
        return text
    }
}
