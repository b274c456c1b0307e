import BoneStreamCore
import Foundation
import Testing

@Suite struct CSVTests {
    @Test func parsesPlainRowsWithLineNumbers() throws {
        let records = try CSV.parse(Data("a,b\n1,2\n3,4\n".utf8))
        #expect(records == [CSVRecord(fields: ["a", "b"], line: 1), CSVRecord(fields: ["1", "2"], line: 2),
                            CSVRecord(fields: ["3", "4"], line: 3)])
    }

    @Test func stripsByteOrderMarkAndHandlesCRLF() throws {
        let records = try CSV.parse(Data([0xEF, 0xBB, 0xBF] + Array("id,age\r\n7,12\r\n".utf8)))
        #expect(records.map(\.fields) == [["id", "age"], ["7", "12"]])
    }

    @Test func quotedFieldsKeepCommasQuotesAndLineBreaks() throws {
        let records = try CSV.parse(Data("a,b\n\"x,y\",\"say \"\"hi\"\"\"\n\"two\nlines\",z\nnext,row\n".utf8))
        #expect(records[1].fields == ["x,y", "say \"hi\""])
        #expect(records[2].fields == ["two\nlines", "z"])
        #expect(records[2].line == 3)
        #expect(records[3].line == 5)  // the embedded line break counts
    }

    @Test func skipsBlankLinesButKeepsTheirNumbering() throws {
        let records = try CSV.parse(Data("h\n\n1\n\r\n2".utf8))
        #expect(records.map(\.line) == [1, 3, 5])
        #expect(records.last?.fields == ["2"])
    }

    @Test func keepsEmptyFieldsAndQuotedEmptyRow() throws {
        let records = try CSV.parse(Data("a,b,c\n1,,3\n\"\"\n".utf8))
        #expect(records[1].fields == ["1", "", "3"])
        #expect(records[2].fields == [""])
    }

    @Test func unterminatedQuoteIsAnErrorAtItsLine() {
        #expect(throws: CSVError.self) { try CSV.parse(Data("a\n\"open\nstill".utf8), file: "x.csv") }
        do {
            _ = try CSV.parse(Data("a\n\"open\nstill".utf8), file: "x.csv")
        } catch let error as CSVError {
            #expect(error.line == 2)
            #expect(error.description.hasPrefix("x.csv:2:"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func textAfterClosingQuoteIsAnError() {
        #expect(throws: CSVError.self) { try CSV.parse(Data("\"a\"b,c\n".utf8)) }
    }

    @Test func writerQuotesOnlyWhatNeedsIt() throws {
        let line = CSV.line(["plain", "a,b", "say \"x\"", "multi\nline"])
        #expect(line == "plain,\"a,b\",\"say \"\"x\"\"\",\"multi\nline\"\n")
        #expect(try CSV.parse(Data(line.utf8))[0].fields == ["plain", "a,b", "say \"x\"", "multi\nline"])
    }
}
