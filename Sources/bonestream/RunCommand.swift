import ArgumentParser
import BoneStreamCore
import BoneStreamTrain
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "The main job end to end: phantoms (when dataset.root holds no dataset), normalize, split, preprocess, the coordinator with its workers and the trainer, evaluation on the test split, and the report.",
        discussion: "`--profile demo` is small enough for a 2-core machine in a few minutes; `--profile paper` is the paper's setup (docs/config.md).")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Continue the run's training from its last checkpoint instead of starting again.")
    var resume = false

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            StopSignal.install()
            let root = config.string("dataset.root")
            let started = Date()
            if let profile = global.profile { say("== profile \(profile)") }
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
            say("== train -> \(config.string("train.out")), \(config.int("stream.workers")) worker(s) streaming over \(config.string("stream.data"))")
            let summary = try Stages.train(config, resume: resume, produce: true, quiet: global.quiet)
            if summary?.interrupted == true {
                say("== stopped; `bonestream run --resume\(global.profile.map { " --profile \($0)" } ?? "")` continues the training")
                throw ExitCode(130)
            }
            say("== evaluate -> test split")
            let evaluation = try Stages.evaluate(config, split: "test", checkpoint: nil, quiet: global.quiet)
            say("== report")
            let report = try RunReport.write(runDirectory: config.string("train.out"))
            say("report: \(report)")
            say("== done in \(Progress.duration(Date().timeIntervalSince(started)))")
            say(String(format: "test MAE %.2f months (predict-the-mean baseline %.2f months)", evaluation.maeMedian, evaluation.baselineMAE))
        }
    }
}
