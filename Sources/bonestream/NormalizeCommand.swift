import ArgumentParser
import BoneStreamCore
import Foundation

struct NormalizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "normalize",
        abstract: "Read RSNA's three split files into one canonical table per split, reporting rejected rows.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Folder with the split files and image folders (dataset.root).")
    var data: String?

    @Option(help: "Output folder for the tables (dataset.tables).")
    var out: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("dataset.root", data, "--data"), ("dataset.tables", out, "--out")])
            try Stages.normalize(config, quiet: global.quiet)
        }
    }
}
