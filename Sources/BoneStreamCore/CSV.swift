import Foundation

/// One CSV record and the 1-based line it starts on.
public struct CSVRecord: Sendable, Equatable {
    public var fields: [String]
    public var line: Int

    public init(fields: [String], line: Int) {
        self.fields = fields
        self.line = line
    }
}

/// A CSV syntax error: where and why.
public struct CSVError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}

/// RFC 4180 CSV, as spreadsheets write it: a UTF-8 byte-order mark, CRLF or LF line ends, quoted
/// fields with doubled quotes and embedded line breaks. Blank lines are skipped.
public enum CSV {
    /// Parses `data` into records. `file` only names the source in errors.
    public static func parse(_ data: Data, file: String = "<csv>") throws -> [CSVRecord] {
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var records: [CSVRecord] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1
        var recordLine = 1
        var inQuotes = false
        var fieldWasQuoted = false
        var i = 0
        let n = bytes.count

        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            fieldWasQuoted = false
        }
        func endRecord() {
            let quoted = fieldWasQuoted
            endField()
            // A blank line is one empty unquoted field: skip it.
            if !(fields.count == 1 && fields[0].isEmpty && !quoted) {
                records.append(CSVRecord(fields: fields, line: recordLine))
            }
            fields.removeAll(keepingCapacity: true)
        }

        while i < n {
            let b = bytes[i]
            if inQuotes {
                if b == UInt8(ascii: "\"") {
                    if i + 1 < n && bytes[i + 1] == UInt8(ascii: "\"") {
                        field.append(b)
                        i += 2
                        continue
                    }
                    inQuotes = false
                } else {
                    if b == UInt8(ascii: "\n") { line += 1 }
                    field.append(b)
                }
                i += 1
                continue
            }
            switch b {
            case UInt8(ascii: ","):
                endField()
            case UInt8(ascii: "\""):
                if field.isEmpty && !fieldWasQuoted {
                    inQuotes = true
                    fieldWasQuoted = true
                } else {
                    throw CSVError(file: file, line: line, reason: "unexpected quote inside an unquoted field")
                }
            case UInt8(ascii: "\r"):
                if i + 1 < n && bytes[i + 1] == UInt8(ascii: "\n") { i += 1 }
                endRecord()
                line += 1
                recordLine = line
            case UInt8(ascii: "\n"):
                endRecord()
                line += 1
                recordLine = line
            default:
                if fieldWasQuoted {
                    throw CSVError(file: file, line: line, reason: "text after a closing quote")
                }
                field.append(b)
            }
            i += 1
        }
        if inQuotes {
            throw CSVError(file: file, line: recordLine, reason: "quoted field is never closed")
        }
        if !field.isEmpty || !fields.isEmpty || fieldWasQuoted { endRecord() }
        return records
    }

    /// Parses the file at `path`.
    public static func read(path: String) throws -> [CSVRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileSystemError(call: "read", path: path, code: access(path, R_OK) == 0 ? EIO : errno)
        }
        return try parse(data, file: path)
    }

    /// One CSV line (with trailing LF), quoting fields that need it.
    public static func line(_ fields: [String]) -> String {
        fields.map(quote).joined(separator: ",") + "\n"
    }

    /// Quotes `field` if it holds a comma, quote or line break.
    public static func quote(_ field: String) -> String {
        if field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return field
    }
}
