import ArgumentParser
import BoneStreamEngine
import Foundation

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect the CNN models.",
        subcommands: [Summary.self])

    struct Summary: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Layers, output shapes and parameter counts, like Keras's summary(): vanilla, channel_attention, cbam.")

        @Argument(help: "vanilla | channel_attention | cbam")
        var model: String

        func run() throws {
            try reportingErrors {
                guard let kind = ModelKind(rawValue: model) else {
                    throw ValidationError("unknown model '\(model)'; choose one of \(ModelKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                say(ResNet18.build(kind).summary)
            }
        }
    }
}
