// Inception-v4 (Szegedy et al. 2016) as the authors' Keras code builds it: stem, 4 x Inception-A,
// Reduction-A, 7 x Inception-B, Reduction-B, 3 x Inception-C; every convolution with a bias, then
// batch norm (gamma and beta) and ReLU; global average pool, Dropout 0.2, concat with the sex branch,
// Dense(1). At 224x224 the last grid is 5x5x1536 and the model has 41,239,153 parameters, the paper's
// Table 3. Parameter names follow timm's `inception_v4` (`features.N.branchK.M.conv.weight`,
// `...bn.running_mean`, `last_linear.weight`); the conv biases are ours (timm's convolutions have none).
import Foundation

/// Input size and a width scale (1 = the paper's filter counts), so tests and the demo can build a
/// small model of the same structure.
public struct InceptionSize: Sendable {
    public var input = 224
    public var scale = 1.0
    /// Channels the first convolution is declared for; the gray input is replicated into them.
    public var inputChannels = 3

    public init(input: Int = 224, scale: Double = 1) {
        self.input = input
        self.scale = scale
    }

    /// The smallest input whose grid survives every `valid` reduction (75 pixels: the last grid is 1x1).
    public static let minimumInput = 75

    func filters(_ n: Int) -> Int { max(1, Int((Double(n) * scale).rounded())) }
}

public enum InceptionV4 {
    /// Builds the model with parameters initialised from `seed`.
    public static func build(size: InceptionSize = InceptionSize(), seed: UInt64 = 0) -> Model {
        precondition(size.input >= InceptionSize.minimumInput, "Inception-v4 needs at least \(InceptionSize.minimumInput)x\(InceptionSize.minimumInput) input")
        let g = Graph()
        let image = g.input("image", channels: 1, height: size.input, width: size.input)
        let sex = g.input("sex", channels: 1)
        var b = Builder(g: g, size: size)
        var x = b.stem(image)
        for i in 0..<4 { x = b.inceptionA("features.\(6 + i)", x) }
        x = b.reductionA("features.10", x)
        for i in 0..<7 { x = b.inceptionB("features.\(11 + i)", x) }
        x = b.reductionB("features.18", x)
        for i in 0..<3 { x = b.inceptionC("features.\(19 + i)", x) }
        let features = b.channels[x]!
        x = g.add("global_pool", GlobalPool(.average), x)
        x = g.add("head_drop", Dropout(rate: 0.2), x)
        var s = g.add("sex.dense", Dense(units: 16, inputs: 1), sex)
        s = g.add("sex.relu", ReLU(), s)
        let joined = g.add("concat", Concat(), x, s)
        let output = g.add("last_linear", Dense(units: 1, inputs: features + 16), joined)
        g.finalize(seed: seed)
        return Model(kind: .inceptionV4, graph: g, image: image, sex: sex, output: output)
    }

    /// Keeps each node's channel count while the graph is built.
    struct Builder {
        let g: Graph
        let size: InceptionSize
        var channels: [Node: Int] = [:]

        init(g: Graph, size: InceptionSize) {
            self.g = g
            self.size = size
        }

        /// Conv (with bias) + BN + ReLU: the authors' conv2d_bn, timm's ConvNormAct (`name.conv`, `name.bn`).
        mutating func conv(_ name: String, _ x: Node, _ filters: Int, _ kernel: (Int, Int), stride: Int = 1,
                           padding: Padding = .same, fromGray: Bool = false) -> Node {
            let out = size.filters(filters)
            let layer = fromGray
                ? Conv2D(filters: out, kernel: kernel, stride: (stride, stride), padding: padding, inputChannels: size.inputChannels, replicatedFrom1: true)
                : Conv2D(filters: out, kernel: kernel, stride: (stride, stride), padding: padding, inputChannels: channels[x]!)
            var y = g.add("\(name).conv", layer, x)
            y = g.add("\(name).bn", BatchNorm(channels: out), y)
            y = g.add("\(name).relu", ReLU(), y)
            channels[y] = out
            return y
        }

        /// Convolutions one after another (a branch), named `name.0`, `name.1`, ...
        mutating func chain(_ name: String, _ x: Node, _ layers: [(Int, (Int, Int), Int, Padding)]) -> Node {
            var y = x
            for (i, (filters, kernel, stride, padding)) in layers.enumerated() {
                y = conv("\(name).\(i)", y, filters, kernel, stride: stride, padding: padding)
            }
            return y
        }

        mutating func pool(_ name: String, _ mode: Pool2D.Mode, _ x: Node, stride: Int, padding: Padding) -> Node {
            let y = g.add(name, Pool2D(mode, size: 3, stride: stride, padding: padding), x)
            channels[y] = channels[x]!
            return y
        }

        mutating func concat(_ name: String, _ parts: [Node]) -> Node {
            let y = g.add(name, Concat(), parts)
            channels[y] = parts.reduce(0) { $0 + channels[$1]! }
            return y
        }

        /// timm's features.0-5: three convolutions, then Mixed3a (max pool | conv), Mixed4a (two
        /// branches with the 1x7/7x1 pair), Mixed5a (conv | max pool).
        mutating func stem(_ image: Node) -> Node {
            var x = conv("features.0", image, 32, (3, 3), stride: 2, padding: .valid, fromGray: true)
            x = conv("features.1", x, 32, (3, 3), padding: .valid)
            x = conv("features.2", x, 64, (3, 3))
            x = concat("features.3", [pool("features.3.maxpool", .max, x, stride: 2, padding: .valid),
                                      conv("features.3.conv", x, 96, (3, 3), stride: 2, padding: .valid)])
            let b0 = chain("features.4.branch0", x, [(64, (1, 1), 1, .same), (96, (3, 3), 1, .valid)])
            let b1 = chain("features.4.branch1", x, [(64, (1, 1), 1, .same), (64, (1, 7), 1, .same), (64, (7, 1), 1, .same),
                                                     (96, (3, 3), 1, .valid)])
            x = concat("features.4", [b0, b1])
            return concat("features.5", [conv("features.5.conv", x, 192, (3, 3), stride: 2, padding: .valid),
                                         pool("features.5.maxpool", .max, x, stride: 2, padding: .valid)])
        }

        mutating func inceptionA(_ name: String, _ x: Node) -> Node {
            let b0 = conv("\(name).branch0", x, 96, (1, 1))
            let b1 = chain("\(name).branch1", x, [(64, (1, 1), 1, .same), (96, (3, 3), 1, .same)])
            let b2 = chain("\(name).branch2", x, [(64, (1, 1), 1, .same), (96, (3, 3), 1, .same), (96, (3, 3), 1, .same)])
            let b3 = conv("\(name).branch3.1", pool("\(name).branch3.0", .average, x, stride: 1, padding: .same), 96, (1, 1))
            return concat(name, [b0, b1, b2, b3])
        }

        mutating func reductionA(_ name: String, _ x: Node) -> Node {
            let b0 = conv("\(name).branch0", x, 384, (3, 3), stride: 2, padding: .valid)
            let b1 = chain("\(name).branch1", x, [(192, (1, 1), 1, .same), (224, (3, 3), 1, .same), (256, (3, 3), 2, .valid)])
            return concat(name, [b0, b1, pool("\(name).branch2", .max, x, stride: 2, padding: .valid)])
        }

        mutating func inceptionB(_ name: String, _ x: Node) -> Node {
            let b0 = conv("\(name).branch0", x, 384, (1, 1))
            let b1 = chain("\(name).branch1", x, [(192, (1, 1), 1, .same), (224, (1, 7), 1, .same), (256, (7, 1), 1, .same)])
            let b2 = chain("\(name).branch2", x, [(192, (1, 1), 1, .same), (192, (7, 1), 1, .same), (224, (1, 7), 1, .same),
                                                  (224, (7, 1), 1, .same), (256, (1, 7), 1, .same)])
            let b3 = conv("\(name).branch3.1", pool("\(name).branch3.0", .average, x, stride: 1, padding: .same), 128, (1, 1))
            return concat(name, [b0, b1, b2, b3])
        }

        mutating func reductionB(_ name: String, _ x: Node) -> Node {
            let b0 = chain("\(name).branch0", x, [(192, (1, 1), 1, .same), (192, (3, 3), 2, .valid)])
            let b1 = chain("\(name).branch1", x, [(256, (1, 1), 1, .same), (256, (1, 7), 1, .same), (320, (7, 1), 1, .same),
                                                  (320, (3, 3), 2, .valid)])
            return concat(name, [b0, b1, pool("\(name).branch2", .max, x, stride: 2, padding: .valid)])
        }

        mutating func inceptionC(_ name: String, _ x: Node) -> Node {
            let b0 = conv("\(name).branch0", x, 256, (1, 1))
            let b1 = conv("\(name).branch1_0", x, 384, (1, 1))
            let b1a = conv("\(name).branch1_1a", b1, 256, (1, 3))
            let b1b = conv("\(name).branch1_1b", b1, 256, (3, 1))
            var b2 = conv("\(name).branch2_0", x, 384, (1, 1))
            b2 = conv("\(name).branch2_1", b2, 448, (3, 1))
            b2 = conv("\(name).branch2_2", b2, 512, (1, 3))
            let b2a = conv("\(name).branch2_3a", b2, 256, (1, 3))
            let b2b = conv("\(name).branch2_3b", b2, 256, (3, 1))
            let b3 = conv("\(name).branch3.1", pool("\(name).branch3.0", .average, x, stride: 1, padding: .same), 256, (1, 1))
            return concat(name, [b0, b1a, b1b, b2a, b2b, b3])
        }
    }
}
