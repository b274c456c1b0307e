import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
import Foundation
import Testing

/// The `bonestream` executable, run as a user would, on tiny phantom data.
@Suite(.serialized) struct EndToEndTests {
    private let tinyConfig = """
        phantoms:
          count: 16
          min_side: 96
          max_side: 160
        split:
          mode: stratified
          train_fraction: 0.6
          validation_fraction: 0.2
        preprocess:
          size: 48
        patches:
          size: 32
          per_side: 3
        stream:
          samples_per_epoch: 32
          batch_size: 8
          epochs: 2
          workers: 1
        train:
          width: 4

        """

    @Test func runDoesPhantomsNormalizeAndSplit() throws {
        let dir = try TemporaryDirectory("e2e")
        try dir.write(tinyConfig, to: "pipeline.yaml")
        let result = try runBonestream(["run"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("== phantoms -> data/phantoms"))
        #expect(result.stdout.contains("phantoms: 16 images"))
        #expect(result.stdout.contains("rejected 0 of 16 rows"))
        #expect(result.stdout.contains("splits (stratified) in work/splits"))
        #expect(result.stdout.contains("preprocess: 16 of 16 images cached in work/cache/"))
        for file in ["work/tables/train.csv", "work/tables/validation.csv", "work/tables/test.csv", "work/tables/rejects.csv",
                     "work/splits/train.csv", "work/splits/split-manifest.json", "data/phantoms/Bone age ground truth.xlsx"] {
            #expect(FileManager.default.fileExists(atPath: dir.path + "/" + file), "\(file)")
        }
        let tables = try ["train", "validation", "test"].flatMap { try CanonicalTable.read(path: dir.path + "/work/splits/\($0).csv") }
        #expect(tables.count == 16)
        // Then the trainer on the stream, the test split's evaluation and the report.
        #expect(result.stdout.contains("== train -> work/run, 1 worker(s)"))
        #expect(result.stdout.contains("epoch 2/2: train loss"))
        #expect(result.stdout.contains("report: work/run/report.html"))
        let last = try #require(result.stdout.split(separator: "\n").last)
        #expect(last.hasPrefix("test MAE ") && last.contains(" months (predict-the-mean baseline "), "\(last)")
        for file in ["work/run/best.safetensors", "work/run/last.safetensors", "work/run/metrics.jsonl", "work/run/test-predictions.csv",
                     "work/run/report.html"] {
            #expect(FileManager.default.fileExists(atPath: dir.path + "/" + file), "\(file)")
        }

        // A second run reuses the phantoms and reproduces the same bytes.
        let manifest = dir.read("work/splits/split-manifest.json")
        let again = try runBonestream(["run"], in: dir.path)
        #expect(again.status == 0)
        #expect(again.stdout.contains("0 written, 16 already there"))
        #expect(again.stdout.contains("up to date, nothing written"))
        #expect(dir.read("work/splits/split-manifest.json") == manifest)
    }

    @Test func stagesRunOneByOneWithFlags() throws {
        let dir = try TemporaryDirectory("stages")
        var result = try runBonestream(["phantoms", "--out", "ph", "--count", "9", "--seed", "3",
                                        "--set", "phantoms.min_side=80", "--set", "phantoms.max_side=90"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        result = try runBonestream(["normalize", "--data", "ph", "--out", "tab"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        result = try runBonestream(["split", "--in", "tab", "--out", "spl", "--mode", "kfold", "--set", "split.folds=3"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/spl/fold-2/validation.csv"))
    }

    @Test func badConfigNamesFileLineAndKey() throws {
        let dir = try TemporaryDirectory("badcfg")
        try dir.write("split:\n  mode: official\n  sed: 3\n", to: "pipeline.yaml")
        let result = try runBonestream(["run"], in: dir.path)
        #expect(result.status != 0)
        #expect(result.stderr.contains("error: pipeline.yaml:3: split.sed: unknown key (did you mean 'split.seed'?)"))
        let check = try runBonestream(["config", "check", "pipeline.yaml"], in: dir.path)
        #expect(check.status != 0)
        let flag = try runBonestream(["split", "--config", "/nonexistent.yaml"], in: dir.path)
        #expect(flag.stderr.contains("/nonexistent.yaml"))
    }

    @Test func configShowReportsOrigins() throws {
        let dir = try TemporaryDirectory("show")
        try dir.write("split:\n  seed: 5\n", to: "my.yaml")
        let result = try runBonestream(["config", "show", "--config", "my.yaml", "--set", "split.folds=7"], in: dir.path)
        #expect(result.status == 0)
        #expect(result.stdout.contains("seed: 5    # from my.yaml:2"))
        #expect(result.stdout.contains("folds: 7    # from --set split.folds=7"))
        let check = try runBonestream(["config", "check", "my.yaml"], in: dir.path)
        #expect(check.stdout.contains("my.yaml: OK (1 keys set"))
    }

    @Test func rejectsPastTheThresholdFailTheRunButKeepGoodRows() throws {
        let dir = try TemporaryDirectory("threshold")
        var result = try runBonestream(["phantoms", "--out", "ph", "--count", "10", "--set", "phantoms.min_side=64",
                                        "--set", "phantoms.max_side=64"], in: dir.path)
        #expect(result.status == 0)
        // Append two bad rows to the training file.
        let train = dir.path + "/ph/boneage-training-dataset.csv"
        let original = try #require(dir.read("ph/boneage-training-dataset.csv"))
        try (original + "99999,12,True\nabc,12,False\n").write(toFile: train, atomically: true, encoding: .utf8)
        result = try runBonestream(["normalize", "--data", "ph", "--out", "tab"], in: dir.path)
        #expect(result.status != 0)
        #expect(result.stderr.contains("dataset.reject_threshold"))
        #expect(result.stdout.contains("rejected 2 of 12 rows"))
        let kept = try ["train", "validation", "test"].flatMap { try CanonicalTable.read(path: dir.path + "/tab/\($0).csv") }
        #expect(kept.count == 10)
        // A higher threshold accepts the same input.
        result = try runBonestream(["normalize", "--data", "ph", "--out", "tab", "--set", "dataset.reject_threshold=0.5"], in: dir.path)
        #expect(result.status == 0)
    }

    /// kill -9 at many moments of a normalize run over an earlier run's outputs: every table is always
    /// whole (the old one or the new one, never a part), and the next run completes cleanly.
    @Test func killedNormalizeNeverLeavesAPartialTable() throws {
        let dir = try TemporaryDirectory("kill")
        var result = try runBonestream(["phantoms", "--out", "ph", "--count", "6", "--set", "phantoms.min_side=64",
                                        "--set", "phantoms.max_side=64"], in: dir.path)
        #expect(result.status == 0)
        let args = ["normalize", "--data", "ph", "--out", "tab", "--set", "dataset.check_images=false",
                    "--set", "dataset.reject_threshold=1", "--quiet"]
        // A large training file: 60,000 rows.
        var big = "id,boneage,male\n"
        for i in 0..<60_000 { big += "\(100_000 + i),\(i % 229),\(i % 2 == 0 ? "True" : "False")\n" }
        try big.write(toFile: dir.path + "/ph/boneage-training-dataset.csv", atomically: true, encoding: .utf8)
        result = try runBonestream(args, in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        let oldTrain = try #require(dir.read("tab/train.csv"))
        // The new input differs: a rerun writes a different train.csv.
        try (big + "999999,1,True\n").write(toFile: dir.path + "/ph/boneage-training-dataset.csv", atomically: true, encoding: .utf8)
        var newTrain: String?
        var sawOld = false, sawNew = false
        for delay in stride(from: 0.0, through: 0.6, by: 0.05) {
            let (process, _, _) = try startBonestream(args, in: dir.path)
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let train = try #require(dir.read("tab/train.csv"))
            if train == oldTrain {
                sawOld = true
            } else {
                #expect(train.hasSuffix("999999,1,1.0\n"), "a partial train.csv after kill at \(delay)s")
                #expect(try CanonicalTable.read(path: dir.path + "/tab/train.csv").count == 60_001)
                newTrain = train
                sawNew = true
            }
            for table in ["validation", "test"] { _ = try CanonicalTable.read(path: dir.path + "/tab/\(table).csv") }
        }
        #expect(sawOld, "some kill should land before the rename")
        result = try runBonestream(args, in: dir.path)
        #expect(result.status == 0)
        if let newTrain { #expect(dir.read("tab/train.csv") == newTrain) }
        _ = try TablesManifest.verify(directory: dir.path + "/tab")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tab").filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
        _ = sawNew
    }

    /// kill -9 during phantom generation, then a rerun: the result equals an uninterrupted run, byte for byte.
    @Test func killedPhantomsResumeToTheSameBytes() throws {
        let dir = try TemporaryDirectory("killph")
        let args = ["phantoms", "--count", "24", "--set", "phantoms.min_side=300", "--set", "phantoms.max_side=400", "--quiet"]
        _ = try runBonestream(args + ["--out", "clean"], in: dir.path)
        let (process, _, _) = try startBonestream(args + ["--out", "killed"], in: dir.path)
        // Kill it once a few images are out, mid-way through the set.
        func written() -> Int {
            ((try? FileManager.default.subpathsOfDirectory(atPath: dir.path + "/killed")) ?? []).filter { $0.hasSuffix(".png") }.count
        }
        while process.isRunning && written() < 3 { Thread.sleep(forTimeInterval: 0.005) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let before = written()
        #expect(before < 24, "the kill should land mid-run (\(before) of 24 written)")
        let result = try runBonestream(args + ["--out", "killed"], in: dir.path)
        #expect(result.status == 0)
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir.path + "/clean").sorted()
        #expect(files == (try FileManager.default.subpathsOfDirectory(atPath: dir.path + "/killed").sorted()))
        for file in files {
            #expect(FileManager.default.contents(atPath: dir.path + "/clean/" + file)
                    == FileManager.default.contents(atPath: dir.path + "/killed/" + file), "\(file)")
        }
    }

    /// kill -9 during preprocess, then a rerun: the cache equals an uninterrupted run's, byte for byte.
    @Test func killedPreprocessResumesToTheSameCache() throws {
        let dir = try TemporaryDirectory("killprep")
        try dir.write("phantoms:\n  count: 40\n  min_side: 500\n  max_side: 700\n", to: "pipeline.yaml")
        for args in [["phantoms", "--quiet"], ["normalize", "--quiet"]] {
            #expect(try runBonestream(args, in: dir.path).status == 0)
        }
        let clean = try runBonestream(["preprocess", "--quiet", "--cache", "clean"], in: dir.path)
        #expect(clean.status == 0, "\(clean.stderr)")
        let (process, _, _) = try startBonestream(["preprocess", "--quiet", "--cache", "killed"], in: dir.path)
        func staged() -> Int {
            ((try? FileManager.default.subpathsOfDirectory(atPath: dir.path + "/killed")) ?? []).filter { $0.hasSuffix(".u8") }.count
        }
        while process.isRunning && staged() < 3 { Thread.sleep(forTimeInterval: 0.005) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let killedKey = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/killed").first)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/killed/\(killedKey)/manifest.json"), "the kill should land mid-run")
        let resumed = try runBonestream(["preprocess", "--quiet", "--cache", "killed"], in: dir.path)
        #expect(resumed.status == 0)
        #expect(resumed.stdout.contains("40 of 40 images cached"))
        let key = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/clean").first)
        for name in ["images-1.u8", "index-1.csv"] {
            let a = FileManager.default.contents(atPath: dir.path + "/clean/\(key)/\(name)")
            #expect(a != nil && a == FileManager.default.contents(atPath: dir.path + "/killed/\(key)/\(name)"), "\(name)")
        }
    }

    @Test func previewWritesEveryStep() throws {
        let dir = try TemporaryDirectory("preview")
        try dir.write("phantoms:\n  count: 4\n  min_side: 300\n  max_side: 400\n", to: "pipeline.yaml")
        #expect(try runBonestream(["phantoms", "--quiet"], in: dir.path).status == 0)
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/data/phantoms/boneage-training-dataset").first)
            .replacingOccurrences(of: ".png", with: "")
        let result = try runBonestream(["preview", id, "--out", "pv"], in: dir.path)
        #expect(result.status == 0, "\(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/pv").sorted()
        #expect(files.count == 13)
        #expect(try PNGCodec.readInfo(path: dir.path + "/pv/04-clahe.png").width == 500)
        #expect(try PNGCodec.readInfo(path: dir.path + "/pv/10-patch-rotate+30.png").width == 224)
        let missing = try runBonestream(["preview", "424242"], in: dir.path)
        #expect(missing.status != 0 && missing.stderr.contains("no image 424242.png"))
    }
}
