import BoneStreamCore
@testable import BoneStreamDataset
import Foundation
import Testing

@Suite struct XLSXTests {
    @Test func roundTripsTextAndNumbers() throws {
        let dir = try TemporaryDirectory()
        let data = try XLSX.write(rows: [[.text("Case ID"), .text("Sex"), .text("Age & <notes>")],
                                         [.number(4360), .text("M"), .number(168.934)],
                                         [.number(4361), .text("F \"quoted\""), .number(12)]])
        try data.write(to: URL(fileURLWithPath: dir.path + "/t.xlsx"))
        let rows = try XLSX.read(path: dir.path + "/t.xlsx")
        #expect(rows.map(\.fields) == [["Case ID", "Sex", "Age & <notes>"], ["4360", "M", "168.934"], ["4361", "F \"quoted\"", "12"]])
        #expect(rows.map(\.line) == [1, 2, 3])
    }

    @Test func writingIsDeterministic() throws {
        let rows: [[XLSXCell]] = [[.text("a")], [.number(1.5)]]
        #expect(try XLSX.write(rows: rows) == XLSX.write(rows: rows))
    }

    @Test func readsWhatLibreOfficeWrote() throws {
        // Converted from CSV by LibreOffice Calc 7.4 (`soffice --headless --convert-to xlsx`): shared strings, styles.
        let rows = try XLSX.read(path: repositoryRoot + "/Tests/Fixtures/libreoffice-test-ground-truth.xlsx")
        #expect(rows.first?.fields == ["Case ID", "Sex", "Ground truth bone age (months)", "Comment"])
        #expect(rows.count == 6)
        #expect(rows[1].fields.prefix(3) == ["4360", "M", "168.934"])
        #expect(rows[3].fields == ["4362", "M", "73.7257", "quoted, comma"])
        #expect(rows[5].line == 6)
    }

    @Test func readsANamedSheetAndSparseCellsFromOpenpyxl() throws {
        let path = repositoryRoot + "/Tests/Fixtures/openpyxl-two-sheets.xlsx"
        let first = try XLSX.read(path: path)
        #expect(first.first?.fields.first?.hasPrefix("Ground truth of the test set") == true)
        let rows = try XLSX.read(path: path, sheet: "Ground truth")
        #expect(rows[0].fields == ["Case ID", "Sex", "Ground truth bone age (months)"])
        #expect(rows[1].fields == ["5001", "M", "120.5"])
        #expect(rows[2].fields.prefix(2) == ["5002", "F"])          // the empty age cell is absent
        #expect(rows[3].fields == ["5003", "f", "33", "", "far cell"])  // E4 lands in column 5
        #expect(throws: XLSXError.self) { try XLSX.read(path: path, sheet: "Nope") }
    }

    @Test func notAZipIsAClearError() throws {
        let dir = try TemporaryDirectory()
        try dir.write("id,age\n1,2\n", to: "fake.xlsx")
        do {
            _ = try XLSX.read(path: dir.path + "/fake.xlsx")
            Issue.record("expected an error")
        } catch let error as XLSXError {
            #expect(error.file.hasSuffix("fake.xlsx"))
        }
    }

    @Test(arguments: [("A1", 0), ("Z9", 25), ("AA10", 26), ("AB3", 27), ("XFD1", 16383)])
    func columnReferences(reference: String, index: Int) {
        #expect(XLSX.columnIndex(ofReference: reference) == index)
        #expect(XLSX.columnName(index) + reference.drop { $0.isLetter } == reference)
    }
}
