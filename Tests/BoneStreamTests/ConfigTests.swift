import BoneStreamCore
import Foundation
import Testing

@Suite struct ConfigTests {
    private func error(of yaml: String) -> ConfigError? {
        do {
            _ = try PipelineConfig.parse(yaml: yaml, source: "p.yaml")
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test func emptyFileGivesTheEmbeddedDefaults() throws {
        let config = try PipelineConfig.parse(yaml: "", source: "p.yaml")
        #expect(config.values == PipelineConfig().values)
        #expect(config.string("dataset.root") == "data/phantoms")
        #expect(config.string("dataset.test.file") == "Bone age ground truth.xlsx")
    }

    @Test func repositoryPipelineYamlIsTheDefaults() throws {
        let config = try PipelineConfig.load(path: repositoryRoot + "/pipeline.yaml")
        #expect(config.values == PipelineConfig().values)
        let text = try String(contentsOfFile: repositoryRoot + "/pipeline.yaml", encoding: .utf8)
        #expect(text == "# BoneStream pipeline configuration: every key at its default. Reference: docs/config.md.\n\n"
                + PipelineConfig().yaml(docs: true) + "\n", "regenerate with `bonestream config show --defaults > pipeline.yaml`")
    }

    @Test func docsConfigMdListsEveryKeyAndIsCurrent() throws {
        let text = try String(contentsOfFile: repositoryRoot + "/docs/config.md", encoding: .utf8)
        #expect(text == PipelineConfig.markdownReference(), "regenerate with `bonestream config docs > docs/config.md`")
        for key in PipelineSchema.allKeys { #expect(text.contains("`\(key.path)`")) }
    }

    @Test func valuesOverrideDefaultsAndRecordTheirLine() throws {
        let config = try PipelineConfig.parse(yaml: "split:\n  mode: kfold\n  folds: 10\ndataset:\n  train:\n    file: t.csv\n",
                                              source: "p.yaml")
        #expect(config.string("split.mode") == "kfold")
        #expect(config.int("split.folds") == 10)
        #expect(config.string("dataset.train.file") == "t.csv")
        #expect(config.origins["split.folds"] == .file("p.yaml", line: 3))
        #expect(config.int("split.seed") == 42)
    }

    @Test func unknownKeyNamesKeyLineAndSuggestion() throws {
        let e = try #require(error(of: "split:\n  mode: official\n  sed: 3\n"))
        #expect(e.key == "split.sed")
        #expect(e.line == 3)
        #expect(e.description.contains("did you mean 'split.seed'"))
        #expect(e.description.hasPrefix("p.yaml:3: split.sed: unknown key"))
    }

    @Test func unknownSectionIsAnError() throws {
        let e = try #require(error(of: "nonsense:\n  a: 1\n"))
        #expect(e.key == "nonsense")
        #expect(e.line == 1)
    }

    @Test(arguments: [
        ("split:\n  folds: many\n", "split.folds", 2, "expected integer"),
        ("split:\n  folds: 1\n", "split.folds", 2, "out of range"),
        ("split:\n  train_fraction: 1.5\n", "split.train_fraction", 2, "out of range"),
        ("split:\n  mode: random\n", "split.mode", 2, "one of official"),
        ("dataset:\n  check_images: maybe\n", "dataset.check_images", 2, "true or false"),
        ("dataset:\n  root:\n", "dataset.root", 2, "has no value"),
        ("dataset:\n  root: [a, b]\n", "dataset.root", 2, "got a list"),
        ("phantoms:\n  count:\n    deep: 1\n", "phantoms.count", 2, "got a mapping"),
        ("split: 3\n", "split", 1, "expected a mapping"),
        ("split:\n  seed: 1\n  seed: 2\n", "seed", 2, "appears twice"),
    ])
    func wrongValuesNameTheKeyAndLine(yaml: String, key: String, line: Int, message: String) throws {
        let e = try #require(error(of: yaml))
        #expect(e.key == key)
        #expect(e.line == line)
        #expect(e.description.contains(message), "\(e)")
    }

    @Test func invalidYamlReportsALine() throws {
        let e = try #require(error(of: "split:\n  mode: [unclosed\n"))
        #expect(e.line != nil)
        #expect(e.description.contains("not valid YAML"))
    }

    @Test func flagsOverrideTheFileAndAreValidated() throws {
        var config = try PipelineConfig.parse(yaml: "split:\n  seed: 3\n", source: "p.yaml")
        try config.apply(assignments: ["split.seed=9", "dataset.male_values=M, boy"])
        #expect(config.int("split.seed") == 9)
        #expect(config.strings("dataset.male_values") == ["M", "boy"])
        #expect(config.origins["split.seed"] == .flag("--set split.seed=9"))
        #expect(throws: ConfigError.self) { try config.apply(assignments: ["split.seed=-1"]) }
        #expect(throws: ConfigError.self) { try config.apply(assignments: ["split.sede=1"]) }
        #expect(throws: ConfigError.self) { try config.apply(assignments: ["novalue"]) }
    }

    @Test func crossKeyRulesNameTheKey() throws {
        let config = try PipelineConfig.parse(yaml: "phantoms:\n  min_side: 3000\n", source: "p.yaml")
        #expect(throws: ConfigError.self) { try config.validate() }
        let both = try PipelineConfig.parse(yaml: "dataset:\n  female_values: [f, m]\n", source: "p.yaml")
        do {
            try both.validate()
            Issue.record("expected an error")
        } catch let e as ConfigError {
            #expect(e.key == "dataset.female_values")
            #expect(e.line == 2)
        }
    }

    @Test func showOutputParsesBackToTheSameValues() throws {
        var config = try PipelineConfig.parse(yaml: "dataset:\n  root: \"my data: 2024\"\n  male_values: [\"yes\", '1']\n", source: "p.yaml")
        try config.apply(assignments: ["split.seed=7", "dataset.test.sheet=Sheet 1"])
        let again = try PipelineConfig.parse(yaml: config.yaml(annotate: true, docs: true), source: "shown")
        #expect(again.values == config.values)
    }

    @Test func hashChangesWithTheSectionOnly() throws {
        let a = PipelineConfig()
        var b = PipelineConfig()
        try b.override("split.seed", with: "43", flag: "--seed")
        #expect(a.hash(sections: ["split"]) != b.hash(sections: ["split"]))
        #expect(a.hash(sections: ["dataset"]) == b.hash(sections: ["dataset"]))
    }
}
