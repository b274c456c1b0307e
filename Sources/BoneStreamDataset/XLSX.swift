import BoneStreamCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import ZIPFoundation

/// Why an XLSX workbook could not be read.
public struct XLSXError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let reason: String
    public var description: String { "\(file): \(reason)" }
}

/// A cell value to write.
public enum XLSXCell: Sendable {
    case text(String)
    case number(Double)
}

/// Office Open XML spreadsheets (.xlsx): a ZIP archive (ZIPFoundation) of XML parts (Foundation's
/// XMLParser). Reads what spreadsheet programs write: shared or inline strings, rich-text runs,
/// sparse cells, several sheets. Writes one sheet with inline strings, deterministically.
public enum XLSX {
    // MARK: reading

    /// Reads one sheet (the first when `sheet` is empty) as records; `line` is the spreadsheet row number.
    public static func read(path: String, sheet: String = "") throws -> [CSVRecord] {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw XLSXError(file: path, reason: "not a readable XLSX (ZIP) file: \(error)")
        }
        func part(_ name: String) throws -> Data? {
            guard let entry = archive[name] else { return nil }
            var data = Data()
            do {
                _ = try archive.extract(entry) { data.append($0) }
            } catch {
                throw XLSXError(file: path, reason: "damaged part \(name): \(error)")
            }
            return data
        }
        guard let workbook = try part("xl/workbook.xml") else {
            throw XLSXError(file: path, reason: "no xl/workbook.xml: not a spreadsheet")
        }
        let sheets = try parse(workbook, file: path, handler: WorkbookHandler()).sheets
        guard !sheets.isEmpty else { throw XLSXError(file: path, reason: "the workbook has no sheets") }
        let chosen: (name: String, relationship: String)
        if sheet.isEmpty {
            chosen = sheets[0]
        } else if let match = sheets.first(where: { $0.name == sheet }) {
            chosen = match
        } else {
            throw XLSXError(file: path, reason: "no sheet named '\(sheet)' (sheets: \(sheets.map(\.name).joined(separator: ", ")))")
        }
        var target = "xl/worksheets/sheet1.xml"
        if let rels = try part("xl/_rels/workbook.xml.rels") {
            let targets = try parse(rels, file: path, handler: RelationshipsHandler()).targets
            guard let found = targets[chosen.relationship] else {
                throw XLSXError(file: path, reason: "sheet '\(chosen.name)' has no relationship \(chosen.relationship)")
            }
            target = found.hasPrefix("/") ? String(found.dropFirst()) : "xl/" + found
        }
        var shared: [String] = []
        if let strings = try part("xl/sharedStrings.xml") {
            shared = try parse(strings, file: path, handler: SharedStringsHandler()).strings
        }
        guard let sheetData = try part(target) else {
            throw XLSXError(file: path, reason: "missing sheet part \(target)")
        }
        let handler = try parse(sheetData, file: path, handler: SheetHandler(shared: shared))
        if let problem = handler.problem { throw XLSXError(file: path, reason: problem) }
        return handler.rows
    }

    private static func parse<H: XMLParserDelegate>(_ data: Data, file: String, handler: H) throws -> H {
        let parser = XMLParser(data: data)
        parser.delegate = handler
        guard parser.parse() else {
            let reason = parser.parserError.map { "\($0)" } ?? "unknown"
            throw XLSXError(file: file, reason: "malformed XML at line \(parser.lineNumber): \(reason)")
        }
        return handler
    }

    /// "AB12" -> 27 (0-based column), or nil.
    static func columnIndex(ofReference reference: String) -> Int? {
        var column = 0
        var sawLetter = false
        for scalar in reference.unicodeScalars {
            guard scalar.value >= 65 && scalar.value <= 90 else { break }
            column = column * 26 + Int(scalar.value - 64)
            sawLetter = true
        }
        return sawLetter ? column - 1 : nil
    }

    /// 0 -> "A", 27 -> "AB".
    static func columnName(_ index: Int) -> String {
        var n = index + 1
        var name = ""
        while n > 0 {
            let r = (n - 1) % 26
            name = String(UnicodeScalar(UInt8(65 + r))) + name
            n = (n - 1) / 26
        }
        return name
    }

    // MARK: writing

    /// A workbook with one sheet holding `rows`. Every byte is a function of the input.
    public static func write(rows: [[XLSXCell]], sheetName: String = "Sheet1") throws -> Data {
        var sheet = #"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"# + "\n"
        sheet += #"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#
        for (r, row) in rows.enumerated() {
            sheet += #"<row r="\#(r + 1)">"#
            for (c, cell) in row.enumerated() {
                let ref = columnName(c) + String(r + 1)
                switch cell {
                case .text(let text):
                    sheet += #"<c r="\#(ref)" t="inlineStr"><is><t>\#(escape(text))</t></is></c>"#
                case .number(let value):
                    sheet += #"<c r="\#(ref)"><v>\#(format(value))</v></c>"#
                }
            }
            sheet += "</row>"
        }
        sheet += "</sheetData></worksheet>"

        let header = #"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"# + "\n"
        let parts: [(String, String)] = [
            ("[Content_Types].xml", header + #"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#),
            ("_rels/.rels", header + #"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
            ("xl/workbook.xml", header + #"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="\#(escape(sheetName))" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
            ("xl/_rels/workbook.xml.rels", header + #"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#),
            ("xl/styles.xml", header + #"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>"#),
            ("xl/worksheets/sheet1.xml", sheet),
        ]
        let archive: Archive
        do {
            archive = try Archive(accessMode: .create)
        } catch {
            throw XLSXError(file: "<memory>", reason: "cannot create a ZIP archive: \(error)")
        }
        // A fixed timestamp keeps the bytes reproducible.
        let epoch = Date(timeIntervalSince1970: 1_577_836_800)  // 2020-01-01
        for (name, text) in parts {
            let data = Data(text.utf8)
            try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), modificationDate: epoch,
                                 permissions: 0o644, compressionMethod: .deflate) { position, size in
                data.subdata(in: Int(position)..<(Int(position) + size))
            }
        }
        guard let bytes = archive.data else {
            throw XLSXError(file: "<memory>", reason: "the in-memory ZIP archive has no data")
        }
        return bytes
    }

    private static func escape(_ text: String) -> String {
        var out = ""
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }

    private static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

private func localName(_ qualified: String) -> String {
    if let colon = qualified.lastIndex(of: ":") { return String(qualified[qualified.index(after: colon)...]) }
    return qualified
}

/// xl/workbook.xml: the sheets, in order, with their relationship ids.
private final class WorkbookHandler: NSObject, XMLParserDelegate {
    var sheets: [(name: String, relationship: String)] = []

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String]) {
        guard localName(elementName) == "sheet" else { return }
        let rid = attributes.first { localName($0.key) == "id" && $0.key != "sheetId" }?.value ?? ""
        sheets.append((attributes["name"] ?? "", rid))
    }
}

/// xl/_rels/workbook.xml.rels: relationship id -> part path.
private final class RelationshipsHandler: NSObject, XMLParserDelegate {
    var targets: [String: String] = [:]

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String]) {
        guard localName(elementName) == "Relationship", let id = attributes["Id"], let target = attributes["Target"] else { return }
        targets[id] = target
    }
}

/// xl/sharedStrings.xml: each <si> is the concatenation of its <t> texts (rich-text runs included,
/// phonetic <rPh> runs excluded).
private final class SharedStringsHandler: NSObject, XMLParserDelegate {
    var strings: [String] = []
    private var current = ""
    private var inText = false
    private var phoneticDepth = 0

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String]) {
        switch localName(elementName) {
        case "si": current = ""
        case "rPh": phoneticDepth += 1
        case "t": inText = phoneticDepth == 0
        default: break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if inText { current += string }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        switch localName(elementName) {
        case "si": strings.append(current)
        case "rPh": phoneticDepth -= 1
        case "t": inText = false
        default: break
        }
    }
}

/// A worksheet's <sheetData>: rows of cells placed by their references.
private final class SheetHandler: NSObject, XMLParserDelegate {
    let shared: [String]
    var rows: [CSVRecord] = []
    var problem: String?
    private var rowNumber = 0
    private var cells: [Int: String] = [:]
    private var cellColumn = 0
    private var nextColumn = 0
    private var cellType = ""
    private var text = ""
    private var capture = false
    private var inInline = false

    init(shared: [String]) { self.shared = shared }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String]) {
        switch localName(elementName) {
        case "row":
            rowNumber = attributes["r"].flatMap { Int($0) } ?? rowNumber + 1
            cells = [:]
            nextColumn = 0
        case "c":
            cellColumn = attributes["r"].flatMap(XLSX.columnIndex(ofReference:)) ?? nextColumn
            nextColumn = cellColumn + 1
            cellType = attributes["t"] ?? "n"
            text = ""
        case "v":
            capture = true
        case "is":
            inInline = true
        case "t":
            capture = inInline
        default:
            break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if capture { text += string }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        switch localName(elementName) {
        case "v", "t":
            capture = false
        case "is":
            inInline = false
        case "c":
            var value = text
            switch cellType {
            case "s":
                guard let index = Int(text.trimmingCharacters(in: .whitespaces)), shared.indices.contains(index) else {
                    problem = problem ?? "row \(rowNumber): shared-string index '\(text)' out of range"
                    return
                }
                value = shared[index]
            case "b":
                value = text == "1" ? "TRUE" : "FALSE"
            default:
                break
            }
            cells[cellColumn] = value
        case "row":
            guard let last = cells.keys.max() else { return }
            let fields = (0...last).map { cells[$0] ?? "" }
            if !fields.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
                rows.append(CSVRecord(fields: fields, line: rowNumber))
            }
        default:
            break
        }
    }
}
