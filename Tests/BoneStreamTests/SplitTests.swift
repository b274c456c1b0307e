import BoneStreamCore
import BoneStreamDataset
@testable import BoneStreamSplit
import Foundation
import Testing

@Suite struct SplitTests {
    /// Canonical tables of `n` synthetic rows spread over ages and sexes, written through normalize's writer.
    private func tables(_ n: Int = 400) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory("split")
        var random = CounterRandom(seed: 9)
        var rows: [CanonicalRow] = []
        for i in 0..<n {
            rows.append(CanonicalRow(index: 1000 + i * 3, male: random.unit() < 0.5, boneage: (random.uniform(0, 228) * 10).rounded() / 10))
        }
        let train = Array(rows[0..<(n * 8 / 10)]), validation = Array(rows[(n * 8 / 10)..<(n * 9 / 10)]), test = Array(rows[(n * 9 / 10)...])
        var hashes: [String: String] = [:]
        for (name, part) in [("train", train), ("validation", validation), ("test", test)] {
            try CanonicalTable.write(part, to: dir.path + "/tables/\(name).csv")
            hashes["\(name).csv"] = try Hashing.sha256(fileAt: dir.path + "/tables/\(name).csv")
        }
        let manifest = TablesManifest(tables: hashes, rows: [:], kept: [:], rejected: 0)
        try AtomicFile.write(manifest.json(), to: dir.path + "/tables/manifest.json")
        return dir
    }

    private func options(_ dir: TemporaryDirectory, _ assignments: [String]) throws -> SplitOptions {
        var config = PipelineConfig()
        try config.apply(assignments: ["dataset.tables=\(dir.path)/tables", "split.out=\(dir.path)/out"] + assignments)
        try config.validate()
        return SplitOptions(config: config)
    }

    private func read(_ dir: TemporaryDirectory, _ name: String) throws -> [CanonicalRow] {
        try CanonicalTable.read(path: dir.path + "/out/\(name).csv")
    }

    @Test func officialKeepsTheTablesAsTheyAre() throws {
        let dir = try tables()
        let manifest = try Splitter.run(options(dir, ["split.mode=official"]))
        for name in ["train", "validation", "test"] {
            #expect(dir.read("out/\(name).csv") == dir.read("tables/\(name).csv"))
        }
        #expect(manifest.splits.map(\.count) == [320, 40, 40])
        #expect(manifest.inputs["train.csv"] == (try Hashing.sha256(fileAt: dir.path + "/tables/train.csv")))
    }

    @Test func stratifiedIsDisjointCompleteAndBalanced() throws {
        let dir = try tables()
        try Splitter.run(options(dir, ["split.mode=stratified", "split.train_fraction=0.7", "split.validation_fraction=0.15"]))
        let train = try read(dir, "train"), validation = try read(dir, "validation"), test = try read(dir, "test")
        let ids = train.map(\.index) + validation.map(\.index) + test.map(\.index)
        #expect(Set(ids).count == ids.count, "no id in two splits")
        #expect(ids.count == 400, "every row lands in one split")
        #expect(abs(Double(train.count) / 400 - 0.7) < 0.05)
        #expect(abs(Double(validation.count) / 400 - 0.15) < 0.05)
        // Each split's male share stays near the pool's.
        let pool = train + validation + test
        let poolMale = Double(pool.filter(\.male).count) / 400
        for part in [train, validation, test] {
            #expect(abs(Double(part.filter(\.male).count) / Double(part.count) - poolMale) < 0.1)
        }
    }

    @Test func kfoldPutsEveryPooledRowInExactlyOneValidationFold() throws {
        let dir = try tables()
        let manifest = try Splitter.run(options(dir, ["split.mode=kfold", "split.folds=4"]))
        var seen: [Int: Int] = [:]
        for k in 0..<4 {
            let train = try read(dir, "fold-\(k)/train"), validation = try read(dir, "fold-\(k)/validation")
            #expect(Set(train.map(\.index)).isDisjoint(with: validation.map(\.index)))
            #expect(train.count + validation.count == 360)
            for row in validation { seen[row.index, default: 0] += 1 }
            #expect(abs(validation.count - 90) <= 1)
        }
        #expect(seen.count == 360 && seen.values.allSatisfy { $0 == 1 })
        #expect(dir.read("out/test.csv") == dir.read("tables/test.csv"))
        #expect(manifest.splits.count == 9)
        let folds = try CSV.read(path: dir.path + "/out/folds.csv")
        #expect(folds.count == 361)
    }

    @Test(arguments: ["official", "stratified", "kfold"])
    func sameInputsGiveByteIdenticalOutputs(mode: String) throws {
        let dir = try tables()
        let opts = try options(dir, ["split.mode=\(mode)"])
        try Splitter.run(opts)
        let first = try snapshot(dir.path + "/out")
        try FileManager.default.removeItem(atPath: dir.path + "/out")
        try Splitter.run(opts)
        #expect(try snapshot(dir.path + "/out") == first)
        // Another seed moves rows (except in official mode).
        try Splitter.run(options(dir, ["split.mode=\(mode)", "split.seed=43"]))
        let other = try snapshot(dir.path + "/out")
        if mode != "official" {
            #expect(other.filter { $0.key.hasSuffix(".csv") } != first.filter { $0.key.hasSuffix(".csv") })
        }
    }

    @Test func manifestRecordsCountsBySexAndAgeBin() throws {
        let dir = try tables()
        let manifest = try Splitter.run(options(dir, ["split.age_bin_months=60"]))
        for counts in manifest.splits {
            #expect(counts.male + counts.female == counts.count)
            #expect(counts.ageBins.reduce(0) { $0 + $1.count } == counts.count)
            #expect(counts.ageBins.allSatisfy { $0.toMonths - $0.fromMonths == 60 })
        }
        let json = try #require(dir.read("out/split-manifest.json"))
        #expect(json.contains("\"config_sha256\""))
        #expect(json.contains("\"age_bins\""))
    }

    @Test func editedTableIsCaughtByTheManifest() throws {
        let dir = try tables()
        try dir.write("index,male,boneage\n1,1,10.0\n", to: "tables/validation.csv")
        do {
            try Splitter.run(options(dir, []))
            Issue.record("expected an error")
        } catch let error as TableError {
            #expect(error.file.hasSuffix("validation.csv"))
            #expect(error.reason.contains("rerun `bonestream normalize`"))
        }
    }

    private func snapshot(_ directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: directory)
        while let name = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[name] = FileManager.default.contents(atPath: directory + "/" + name)
            }
        }
        return files
    }
}
