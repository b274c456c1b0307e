import BoneStreamCore
@testable import BoneStreamDataset
import BoneStreamImage
import Foundation
import Logging
import Testing

@Suite struct NormalizeTests {
    let logger = Logger(label: "test")

    @Test func goodSplitsBecomeCanonicalTables() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        let report = try Normalizer.run(fixture.options(), logger: logger, showProgress: false)
        #expect(report.rejects.isEmpty)
        #expect(fixture.dir.read("tables/train.csv") == "index,male,boneage\n1,1,100.0\n2,0,50.0\n3,1,12.0\n4,0,200.0\n5,1,0.0\n6,0,240.0\n")
        #expect(fixture.dir.read("tables/validation.csv") == "index,male,boneage\n10,1,30.0\n11,0,150.0\n")
        #expect(fixture.dir.read("tables/test.csv") == "index,male,boneage\n20,1,168.934\n21,0,73.5\n")
        #expect(fixture.dir.read("tables/rejects.csv") == "file,line,id,reason\n")
        _ = try TablesManifest.verify(directory: fixture.tables)
        // No temp files are left beside the outputs.
        let names = try FileManager.default.contentsOfDirectory(atPath: fixture.tables).sorted()
        #expect(names == ["manifest.json", "rejects.csv", "test.csv", "train.csv", "validation.csv"])
    }

    /// Every kind of bad row, planted among good ones: each is reported with its file and line,
    /// and every good row is kept.
    @Test func plantedBadRowsAreEachRejectedWithFileAndLine() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        try fixture.file("boneage-training-dataset.csv", """
            id,boneage,male,extra
            1,100,True,a
            2,50,False,b
            3,abc,True,c
            2,60,True,d
            ../etc/passwd,10,True,e
            7,-3,False,f
            8,250,True,g
            9,,True,h
            12,100,X,i
            13,100,True
            14,100,True,j
            15,100,True,k
            007,10,True,l

            16,"120",true,"quoted, x"
            17,80,,n
            ,80,True,o
            18,80,True,p
            19,90,False,q

            """)
        try fixture.images([1, 2, 3, 7, 8, 9, 12, 13, 16, 17, 18, 19], in: "boneage-training-dataset")
        try fixture.file("boneage-training-dataset/15.png", "this is not a png")
        // 18: a PNG cut short (its header intact, its end gone).
        let whole = try PNGCodec.encode(GrayImage(width: 8, height: 8, fill: 9))
        try whole.prefix(whole.count - 16).write(to: URL(fileURLWithPath: fixture.root + "/boneage-training-dataset/18.png"))
        try fixture.file("Validation Dataset.csv", "\u{FEFF}Image ID,male,Bone Age (months)\r\n10,TRUE,30\r\n1,FALSE,40\r\n\r\n11,FALSE,150\r\n")

        let report = try Normalizer.run(fixture.options(), logger: logger, showProgress: false)
        let train = fixture.root + "/boneage-training-dataset.csv"
        let validation = fixture.root + "/Validation Dataset.csv"
        let expected: [(String, Int, String, String)] = [
            (train, 4, "3", "non-numeric age"),
            (train, 5, "2", "duplicate id (first at \(train):3)"),
            (train, 6, "../etc/passwd", "id is not a plain non-negative integer"),
            (train, 7, "7", "negative age"),
            (train, 8, "8", "age over 240.0 months"),
            (train, 9, "9", "missing age"),
            (train, 10, "12", "unrecognised sex value"),
            (train, 11, "13", "ragged row"),
            (train, 12, "14", "missing image"),
            (train, 13, "15", "unreadable image"),
            (train, 14, "007", "id is not a plain non-negative integer"),
            (train, 17, "17", "missing sex"),
            (train, 18, "", "missing id"),
            (train, 19, "18", "unreadable image"),
            (validation, 3, "1", "duplicate id (first at \(train):2)"),
        ]
        let rejects = report.rejects.sorted { ($0.file, $0.line) < ($1.file, $1.line) }
        #expect(rejects.count == expected.count)
        for (reject, want) in zip(rejects, expected.sorted { ($0.0, $0.1) < ($1.0, $1.1) }) {
            #expect(reject.file == want.0)
            #expect(reject.line == want.1)
            #expect(reject.id == want.2)
            #expect(reject.reason.hasPrefix(want.3), "\(reject.reason) should start with \(want.3)")
        }
        #expect(rejects.first { $0.id == "18" }?.reason.contains("truncated") == true)
        // Every good row is kept.
        let kept = try CanonicalTable.read(path: fixture.tables + "/train.csv")
        #expect(kept.map(\.index) == [1, 2, 16, 19])
        #expect(kept.first { $0.index == 16 } == CanonicalRow(index: 16, male: true, boneage: 120))
        #expect(try CanonicalTable.read(path: fixture.tables + "/validation.csv").map(\.index) == [10, 11])
        // rejects.csv carries the same rows, quoted where needed.
        let rejectRows = try CSV.read(path: fixture.tables + "/rejects.csv")
        #expect(rejectRows.count == expected.count + 1)
        #expect(rejectRows.contains { $0.fields[0] == validation && $0.fields[1] == "3" })
        #expect(report.overThreshold)
        #expect(report.summary.contains("rejected 15 of"))
    }

    @Test func missingColumnNamesTheFileAndTheKeyToSet() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        try fixture.file("boneage-training-dataset.csv", "id,age,male\n1,100,True\n")
        do {
            _ = try Normalizer.run(fixture.options(), logger: logger, showProgress: false)
            Issue.record("expected an error")
        } catch let error as NormalizeError {
            #expect(error.message.contains("boneage-training-dataset.csv:1: no column 'boneage'"))
            #expect(error.message.contains("dataset.train.age_column"))
        }
    }

    @Test func missingSplitFileIsAClearError() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        try FileManager.default.removeItem(atPath: fixture.root + "/Validation Dataset.csv")
        #expect(throws: NormalizeError.self) { try Normalizer.run(fixture.options(), logger: logger, showProgress: false) }
        #expect(!FileManager.default.fileExists(atPath: fixture.tables + "/train.csv"))  // nothing half-written
    }

    @Test func columnMappingAndFormatsComeFromTheConfig() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        // The training split as XLSX with other headers and sex values.
        try fixture.xlsx("train.xlsx", [[.text("Patient"), .text("Gender"), .text("Months")],
                                        [.number(1), .text("boy"), .number(100)], [.number(2), .text("girl"), .number(50)]])
        let options = try fixture.options { config in
            try config.apply(assignments: ["dataset.train.file=train.xlsx", "dataset.train.id_column=Patient",
                                           "dataset.train.sex_column=Gender", "dataset.train.age_column=Months",
                                           "dataset.male_values=boy,m,true", "dataset.female_values=girl,f,false"])
        }
        let report = try Normalizer.run(options, logger: logger, showProgress: false)
        #expect(report.rejects.isEmpty)
        #expect(try CanonicalTable.read(path: fixture.tables + "/train.csv") == [
            CanonicalRow(index: 1, male: true, boneage: 100), CanonicalRow(index: 2, male: false, boneage: 50)])
    }

    @Test func readsTheLibreOfficeWorkbookAsTheTestSplit() throws {
        let fixture = try DatasetFixture()
        try fixture.writeGoodSplits()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/Fixtures/libreoffice-test-ground-truth.xlsx",
                                         toPath: fixture.root + "/lo.xlsx")
        try fixture.images([4360, 4361, 4362, 4363, 4364], in: "boneage-test-dataset")
        let options = try fixture.options { try $0.apply(assignments: ["dataset.test.file=lo.xlsx"]) }
        let report = try Normalizer.run(options, logger: logger, showProgress: false)
        #expect(try CanonicalTable.read(path: fixture.tables + "/test.csv").map(\.index) == [4360, 4361, 4362, 4363])
        #expect(report.rejects.map(\.line) == [6])
        #expect(report.rejects.first?.reason.hasPrefix("unrecognised sex value: 'X'") == true)
    }

    @Test(arguments: ["0", "1", "123456"])
    func plainIDsParse(text: String) { #expect(Normalizer.parseID(text) == Int(text)) }

    @Test(arguments: ["", "-1", "+1", "01", "1.0", "1e3", "../1", "1/2", " 1", "١٢", "12345678901234567890"])
    func otherIDsAreRefused(text: String) { #expect(Normalizer.parseID(text) == nil) }

    @Test func monthsFormatting() {
        #expect(CanonicalTable.formatMonths(120) == "120.0")
        #expect(CanonicalTable.formatMonths(168.934) == "168.934")
        #expect(CanonicalTable.formatMonths(0.5) == "0.5")
    }
}
