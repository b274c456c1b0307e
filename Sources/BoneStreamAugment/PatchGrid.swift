/// The overlapping patch grid of the paper (after Pan): `perSide` x `perSide` patches of `patchSize`,
/// offsets `i * (patchSize - overlap)` with `overlap = (patchSize * perSide - imageSize) / (perSide - 1)`
/// (integer division, as the authors' Python `//`): 0, 69, 138, 207, 276 for 5 patches of 224 in 500.
public struct PatchGrid: Sendable, Equatable {
    public let imageSize: Int
    public let patchSize: Int
    public let perSide: Int

    public init(imageSize: Int = 500, patchSize: Int = 224, perSide: Int = 5) {
        precondition(patchSize <= imageSize && perSide >= 1, "patches must fit the image")
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.perSide = perSide
    }

    public var overlap: Int { perSide > 1 ? (patchSize * perSide - imageSize) / (perSide - 1) : 0 }
    public var stride: Int { patchSize - overlap }
    public var count: Int { perSide * perSide }

    /// Offsets along one side.
    public var offsets: [Int] { (0..<perSide).map { $0 * stride } }

    /// Top-left corner (x, y) of patch `index` (row-major: index = row * perSide + column).
    public func origin(of index: Int) -> (x: Int, y: Int) {
        (x: (index % perSide) * stride, y: (index / perSide) * stride)
    }
}
