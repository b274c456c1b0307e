import ArgumentParser
import BoneStreamCore
import BoneStreamPreprocess
import Foundation

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Crop, resize and CLAHE every image of the canonical tables once, into a memory-mappable cache.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Image root (dataset.root).")
    var data: String?

    @Option(help: "Folder of canonical tables (dataset.tables).")
    var tables: String?

    @Option(help: "Folder of caches (preprocess.cache).")
    var cache: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("dataset.root", data, "--data"), ("dataset.tables", tables, "--tables"),
                                                 ("preprocess.cache", cache, "--cache")])
            try Stages.preprocess(config, quiet: global.quiet)
        }
    }
}
