import ArgumentParser
import BoneStreamCore
import Foundation

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show, check or document pipeline.yaml.",
        subcommands: [Show.self, Check.self, Docs.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the effective configuration, noting values not at their default.")

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print the embedded defaults with each key's documentation (this is the repository's pipeline.yaml).")
        var defaults = false

        func run() throws {
            try reportingErrors {
                if defaults {
                    say("# BoneStream pipeline configuration: every key at its default. Reference: docs/config.md.\n")
                    say(PipelineConfig().yaml(docs: true))
                } else {
                    say(try global.load().yaml(annotate: true))
                }
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a configuration file.")

        @Argument(help: "The file to check (default: ./pipeline.yaml).")
        var file: String = "pipeline.yaml"

        func run() throws {
            try reportingErrors {
                let config = try PipelineConfig.load(path: file)
                try config.validate()
                let set = config.origins.values.filter { if case .file = $0 { return true } else { return false } }.count
                say("\(file): OK (\(set) keys set, \(PipelineSchema.allKeys.count - set) at their defaults)")
            }
        }
    }

    struct Docs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print docs/config.md, the reference of every key.")

        func run() throws {
            FileHandle.standardOutput.write(Data(PipelineConfig.markdownReference().utf8))
        }
    }
}
