import ArgumentParser
import BoneStreamEngine
import Foundation

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect the CNN models.",
        subcommands: [Summary.self, Init.self])

    struct Summary: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Layers, output shapes and parameter counts, like Keras's summary(): vanilla, channel_attention, cbam, inception_v4.")

        @Argument(help: "vanilla | channel_attention | cbam | inception_v4 (or resnet18 | resnet18-cam | resnet18-cbam | inception-v4)")
        var model: String

        func run() throws {
            try reportingErrors {
                guard let kind = ModelKind(name: model) else {
                    throw ValidationError("unknown model '\(model)'; choose one of \(ModelKind.namesHelp)")
                }
                say(kind.build().summary)
            }
        }
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a freshly initialised model (Glorot uniform, Keras's defaults) as a safetensors checkpoint.")

        @Argument(help: "vanilla | channel_attention | cbam | inception_v4 (or resnet18 | resnet18-cam | resnet18-cbam | inception-v4)")
        var model: String

        @Option(help: "The checkpoint to write.")
        var out: String

        @Option(help: "Initialisation seed.")
        var seed: UInt64 = 0

        func run() throws {
            try reportingErrors {
                guard let kind = ModelKind(name: model) else {
                    throw ValidationError("unknown model '\(model)'; choose one of \(ModelKind.namesHelp)")
                }
                let built = kind.build(seed: seed)
                try Checkpoint.save(built.graph.store, to: out, metadata: ["model": kind.rawValue, "seed": String(seed)])
                say("\(out): \(kind.rawValue), \(built.graph.store.entries.count) tensors, \(built.graph.store.count) parameters")
            }
        }
    }
}
