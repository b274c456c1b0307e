import ArgumentParser
import BoneStreamCore
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every stage end to end: phantoms (when dataset.root holds none), normalize, split, preprocess, then a stream of batches from local workers to a checking sink.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            let root = config.string("dataset.root")
            let started = Date()
            if FileManager.default.fileExists(atPath: root + "/" + config.string("dataset.train.file"))
                && !FileManager.default.fileExists(atPath: root + "/phantoms.json") {
                say("== phantoms: skipped, \(root) holds a dataset")
            } else {
                say("== phantoms -> \(root)")
                try Stages.phantoms(config, quiet: global.quiet)
            }
            say("== normalize -> \(config.string("dataset.tables"))")
            try Stages.normalize(config, quiet: global.quiet)
            say("== split -> \(config.string("split.out"))")
            try Stages.split(config)
            say("== preprocess -> \(config.string("preprocess.cache"))")
            try Stages.preprocess(config, quiet: global.quiet)
            say("== stream -> \(config.int("stream.workers")) worker(s), \(config.int("stream.epochs")) epoch(s), sink on \(config.string("stream.data"))")
            try Stages.stream(config)
            say("== done in \(Progress.duration(Date().timeIntervalSince(started)))")
        }
    }
}
