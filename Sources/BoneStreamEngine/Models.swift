// The paper's models, exact as the authors' Keras code (pinned by the parameter counts of the paper's
// Table 3): ResNet18 vanilla, with channel attention, with CBAM; each with the sex branch.
import Foundation

public enum ModelKind: String, Sendable, CaseIterable {
    case vanilla, channelAttention = "channel_attention", cbam, inceptionV4 = "inception_v4"

    /// The three ResNet18 variants.
    public static let resnets: [ModelKind] = [.vanilla, .channelAttention, .cbam]

    /// The names the trainer's configuration uses (`resnet18`, `resnet18-cam`, `resnet18-cbam`, `inception-v4`).
    public var configName: String {
        switch self {
        case .vanilla: "resnet18"
        case .channelAttention: "resnet18-cam"
        case .cbam: "resnet18-cbam"
        case .inceptionV4: "inception-v4"
        }
    }

    /// The smallest patch side the model takes.
    public var minimumInput: Int { self == .inceptionV4 ? InceptionSize.minimumInput : 32 }

    /// Builds the model at `input` x `input` with width `width`: the ResNets' first stage (64 in the
    /// paper; stages double it), Inception-v4's filter counts scaled by width / 64.
    public func build(input: Int = 224, width: Int = 64, seed: UInt64 = 0) -> Model {
        switch self {
        case .inceptionV4:
            return InceptionV4.build(size: InceptionSize(input: input, scale: Double(width) / 64), seed: seed)
        default:
            return ResNet18.build(self, size: ResNetSize(input: input, widths: [width, 2 * width, 4 * width, 8 * width]), seed: seed)
        }
    }

    /// Either spelling: `vanilla` / `resnet18`, `channel_attention` / `resnet18-cam`, `cbam` / `resnet18-cbam`,
    /// `inception_v4` / `inception-v4`.
    public init?(name: String) {
        guard let kind = ModelKind(rawValue: name) ?? ModelKind.allCases.first(where: { $0.configName == name }) else { return nil }
        self = kind
    }

    public static var namesHelp: String { allCases.map { "\($0.rawValue) (\($0.configName))" }.joined(separator: ", ") }

    public var title: String {
        switch self {
        case .vanilla: "resnet18_vanilla"
        case .channelAttention: "resnet18_channel_attention"
        case .cbam: "resnet18_cbam"
        case .inceptionV4: "inception_v4"
        }
    }
}

/// Widths and input size, so tests can build a small model of the same structure.
public struct ResNetSize: Sendable {
    public var input: Int = 224
    public var widths: [Int] = [64, 128, 256, 512]
    /// Channels the first convolution is declared for; the gray input is replicated into them.
    public var inputChannels: Int = 3
    /// The attention MLP's reduction (C / ratio hidden units).
    public var ratio: Int = 8
    public init() {}
    public init(input: Int, widths: [Int]) {
        self.input = input
        self.widths = widths
    }
}

/// A built model: its graph and the nodes a trainer feeds and reads.
public final class Model {
    public let kind: ModelKind
    public let graph: Graph
    public let image: Node
    public let sex: Node
    public let output: Node

    init(kind: ModelKind, graph: Graph, image: Node, sex: Node, output: Node) {
        self.kind = kind
        self.graph = graph
        self.image = image
        self.sex = sex
        self.output = output
    }

    public var summary: String { graph.summary(title: kind.title) }
}

public enum ResNet18 {
    /// Builds the model with parameters initialised from `seed`. Parameter names follow torchvision
    /// (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, `fc.weight`),
    /// with `attention.*`, `layerN.M.attention.*` and `sex.*` for the additions.
    public static func build(_ kind: ModelKind, size: ResNetSize = ResNetSize(), seed: UInt64 = 0) -> Model {
        precondition(kind != .inceptionV4, "ResNet18.build builds the ResNets; InceptionV4.build builds Inception-v4")
        let g = Graph()
        let image = g.input("image", channels: 1, height: size.input, width: size.input)
        let sex = g.input("sex", channels: 1)
        var x = g.add("conv1", Conv2D(filters: size.widths[0], kernel: (7, 7), stride: (2, 2), inputChannels: size.inputChannels,
                                      replicatedFrom1: true), image)
        x = g.add("bn1", BatchNorm(channels: size.widths[0]), x)
        x = g.add("relu", ReLU(), x)
        x = attention(g, kind, "attention", x, channels: size.widths[0], ratio: size.ratio)
        x = g.add("maxpool", Pool2D(.max, size: 3, stride: 2), x)
        var channels = size.widths[0]
        for (stage, width) in size.widths.enumerated() {
            for block in 0..<2 {
                let stride = stage > 0 && block == 0 ? 2 : 1
                x = basicBlock(g, kind, "layer\(stage + 1).\(block)", x, from: channels, to: width, stride: stride, ratio: size.ratio)
                channels = width
            }
        }
        x = g.add("avgpool", GlobalPool(.average), x)
        var s = g.add("sex.dense", Dense(units: 16, inputs: 1), sex)
        s = g.add("sex.relu", ReLU(), s)
        let joined = g.add("concat", Concat(), x, s)
        let output = g.add("fc", Dense(units: 1, inputs: channels + 16), joined)
        g.finalize(seed: seed)
        return Model(kind: kind, graph: g, image: image, sex: sex, output: output)
    }

    /// conv3x3 + BN + ReLU, conv3x3 + BN, attention, + shortcut (1x1/2 conv + BN when the shape changes), ReLU.
    static func basicBlock(_ g: Graph, _ kind: ModelKind, _ name: String, _ input: Node, from: Int, to: Int, stride: Int, ratio: Int) -> Node {
        var x = g.add("\(name).conv1", Conv2D(filters: to, kernel: (3, 3), stride: (stride, stride), inputChannels: from), input)
        x = g.add("\(name).bn1", BatchNorm(channels: to), x)
        x = g.add("\(name).relu1", ReLU(), x)
        x = g.add("\(name).conv2", Conv2D(filters: to, kernel: (3, 3), inputChannels: to), x)
        x = g.add("\(name).bn2", BatchNorm(channels: to), x)
        x = attention(g, kind, "\(name).attention", x, channels: to, ratio: ratio)
        var shortcut = input
        if stride != 1 || from != to {
            shortcut = g.add("\(name).downsample.0", Conv2D(filters: to, kernel: (1, 1), stride: (stride, stride), inputChannels: from), input)
            shortcut = g.add("\(name).downsample.1", BatchNorm(channels: to), shortcut)
        }
        x = g.add("\(name).add", Add(), x, shortcut)
        return g.add("\(name).relu2", ReLU(), x)
    }

    /// Channel attention (shared MLP over the average- and max-pooled vectors, summed, sigmoid,
    /// multiplied in), then for CBAM spatial attention (channel mean and max, 7x7 conv, sigmoid).
    static func attention(_ g: Graph, _ kind: ModelKind, _ name: String, _ input: Node, channels: Int, ratio: Int) -> Node {
        guard kind != .vanilla else { return input }
        let hidden = Dense(units: channels / ratio, inputs: channels), outer = Dense(units: channels, inputs: channels / ratio)
        let average = g.add("\(name).avg", GlobalPool(.average), input)
        let maximum = g.add("\(name).max", GlobalPool(.max), input)
        // One MLP for both vectors: its parameters are named after the first use (fc1, fc2).
        let a = g.add("\(name).fc2", outer, g.add("\(name).relu_avg", ReLU(), g.add("\(name).fc1", hidden, average)))
        let m = g.add("\(name).fc2_max", outer, g.add("\(name).relu_max", ReLU(), g.add("\(name).fc1_max", hidden, maximum)))
        let gate = g.add("\(name).sigmoid", Sigmoid(), g.add("\(name).sum", Add(), a, m))
        var x = g.add("\(name).scale", Multiply(), input, gate)
        if kind == .cbam {
            let pooled = g.add("\(name).spatial_pool", ChannelMeanMax(), x)
            let conv = g.add("\(name).spatial", Conv2D(filters: 1, kernel: (7, 7), bias: false, inputChannels: 2), pooled)
            let spatialGate = g.add("\(name).spatial_sigmoid", Sigmoid(), conv)
            x = g.add("\(name).spatial_scale", Multiply(), x, spatialGate)
        }
        return x
    }
}
