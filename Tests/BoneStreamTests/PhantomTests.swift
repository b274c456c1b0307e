import BoneStreamCore
import BoneStreamDataset
import BoneStreamImage
@testable import BoneStreamPhantoms
import Foundation
import Logging
import Testing

@Suite struct PhantomTests {
    private func options(count: Int = 30, seed: Int = 7, sides: (Int, Int) = (64, 96)) throws -> PhantomOptions {
        var config = PipelineConfig()
        try config.apply(assignments: ["phantoms.count=\(count)", "phantoms.seed=\(seed)",
                                       "phantoms.min_side=\(sides.0)", "phantoms.max_side=\(sides.1)"])
        return PhantomOptions(config: config)
    }

    @Test func subjectsFollowRSNAProportionsAndRanges() throws {
        let subjects = PhantomGenerator.subjects(try options(count: 2000))
        let counts = Dictionary(grouping: subjects, by: \.split).mapValues(\.count)
        #expect(counts["validation"] == 202)
        #expect(counts["test"] == 28)
        #expect(counts["train"] == 1770)
        #expect(Set(subjects.map(\.id)).count == 2000)
        #expect(subjects.allSatisfy { (0...228).contains($0.boneage) })
        #expect(subjects.contains { $0.boneage < 24 } && subjects.contains { $0.boneage > 204 })
        let male = Double(subjects.filter(\.male).count) / 2000
        #expect(male > 0.5 && male < 0.58)
        #expect(subjects.filter { $0.split != "test" }.allSatisfy { $0.boneage == $0.boneage.rounded() })
        // Tiny sets still get every split.
        let tiny = PhantomGenerator.subjects(try options(count: 3))
        #expect(Set(tiny.map(\.split)) == ["train", "validation", "test"])
    }

    @Test func renderingDependsOnlyOnSeedAndID() throws {
        let opts = try options()
        let subject = PhantomGenerator.subjects(opts)[0]
        let a = PhantomGenerator.render(subject, options: opts)
        #expect(a == PhantomGenerator.render(subject, options: opts))
        #expect(a != PhantomGenerator.render(subject, options: try options(seed: 8)))
        #expect((64...96).contains(a.width) && (64...96).contains(a.height))
    }

    @Test func realisticSizesHaveDarkBackgroundAndBrightBones() throws {
        let opts = try options(sides: (1500, 2500))
        let subject = PhantomSubject(id: 4242, split: "train", male: true, boneage: 150)
        let image = PhantomGenerator.render(subject, options: opts)
        #expect((1500...2500).contains(image.width) && (1500...2500).contains(image.height))
        var histogram = [Int](repeating: 0, count: 256)
        for p in image.pixels { histogram[Int(p)] += 1 }
        let total = Double(image.pixels.count)
        let dark = Double(histogram[0..<50].reduce(0, +)) / total
        let bright = Double(histogram[150...].reduce(0, +)) / total
        #expect(dark > 0.4, "most of the field is open background")
        #expect(bright > 0.005, "bones, borders and labels are bright")
    }

    @Test func bonesMatureWithAge() {
        func ossified(_ maturity: Double) -> Int {
            HandModel(maturity: maturity).primitives().filter { if case .blob = $0 { return true } else { return false } }.count
        }
        let counts = stride(from: 0.0, through: 1.05, by: 0.05).map(ossified)
        #expect(zip(counts, counts.dropFirst()).allSatisfy { $0 <= $1 }, "nothing un-ossifies: \(counts)")
        #expect(counts.first! < counts.last! - 20)
        // Girls reach each stage earlier.
        #expect(HandModel.maturity(boneAgeMonths: 120, male: false) > HandModel.maturity(boneAgeMonths: 120, male: true))
    }

    @Test func writesRSNALayoutAndFormatsAndResumes() throws {
        let dir = try TemporaryDirectory("phantoms")
        let opts = try options(count: 12)
        let first = try PhantomGenerator.run(opts, out: dir.path, logger: Logger(label: "t"), showProgress: false)
        #expect(first.written == 12)
        let train = try CSV.read(path: dir.path + "/boneage-training-dataset.csv")
        #expect(train[0].fields == ["id", "boneage", "male"])
        #expect(train.dropFirst().allSatisfy { ["True", "False"].contains($0.fields[2]) })
        let validation = try CSV.read(path: dir.path + "/Validation Dataset.csv")
        #expect(validation[0].fields == ["Image ID", "male", "Bone Age (months)"])
        let test = try XLSX.read(path: dir.path + "/Bone age ground truth.xlsx")
        #expect(test[0].fields == ["Case ID", "Sex", "Ground truth bone age (months)"])
        #expect(test.dropFirst().allSatisfy { ["M", "F"].contains($0.fields[1]) })
        #expect(train.count - 1 + validation.count - 1 + test.count - 1 == 12)
        for subject in first.subjects {
            let folder = PhantomGenerator.imageFolders[subject.split]!
            let info = try PNGCodec.readInfo(path: dir.path + "/\(folder)/\(subject.id).png")
            #expect(info.bitDepth == 8 && info.colorType == 0)
        }
        let again = try PhantomGenerator.run(opts, out: dir.path, logger: Logger(label: "t"), showProgress: false)
        #expect(again.written == 0 && again.skipped == 12)
    }

    @Test func outputIsByteForByteDeterministic() throws {
        let a = try TemporaryDirectory("pa"), b = try TemporaryDirectory("pb")
        let opts = try options(count: 8)
        _ = try PhantomGenerator.run(opts, out: a.path, logger: Logger(label: "t"), showProgress: false)
        _ = try PhantomGenerator.run(opts, out: b.path, logger: Logger(label: "t"), showProgress: false)
        let files = try FileManager.default.subpathsOfDirectory(atPath: a.path).sorted()
        #expect(files == (try FileManager.default.subpathsOfDirectory(atPath: b.path).sorted()))
        #expect(files.count > 8)
        for file in files {
            #expect(FileManager.default.contents(atPath: a.path + "/" + file) == FileManager.default.contents(atPath: b.path + "/" + file), "\(file)")
        }
    }
}
