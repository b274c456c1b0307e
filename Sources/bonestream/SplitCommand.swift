import ArgumentParser
import BoneStreamCore
import Foundation

struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Make the training splits (official, stratified or k-fold) and their manifest.")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("in"), help: "Folder of canonical tables (dataset.tables).")
    var input: String?

    @Option(help: "Output folder (split.out).")
    var out: String?

    @Option(help: "official, stratified or kfold (split.mode).")
    var mode: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("dataset.tables", input, "--in"), ("split.out", out, "--out"),
                                                 ("split.mode", mode, "--mode")])
            try Stages.split(config)
        }
    }
}
