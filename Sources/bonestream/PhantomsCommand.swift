import ArgumentParser
import BoneStreamCore
import BoneStreamPhantoms
import Foundation

struct PhantomsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phantoms",
        abstract: "Write a synthetic hand-radiograph dataset in RSNA's layout.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Output folder (default: dataset.root).")
    var out: String?

    @Option(help: "Number of images (phantoms.count).")
    var count: String?

    @Option(help: "Seed (phantoms.seed).")
    var seed: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("dataset.root", out, "--out"), ("phantoms.count", count, "--count"),
                                                 ("phantoms.seed", seed, "--seed")])
            try Stages.phantoms(config, quiet: global.quiet)
        }
    }
}
