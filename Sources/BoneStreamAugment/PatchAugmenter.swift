/// Applies augmentations to patches of cached images, reusing its scratch memory: one per thread.
public final class PatchAugmenter {
    public let grid: PatchGrid
    private let scratch: UnsafeMutablePointer<UInt16>

    public init(grid: PatchGrid) {
        self.grid = grid
        scratch = .allocate(capacity: grid.patchSize * grid.patchSize)
    }

    deinit { scratch.deallocate() }

    /// Writes patch `patch` of `image` (imageSize x imageSize bytes), augmented by `augmentation`, to
    /// `destination` (patchSize x patchSize bytes).
    public func apply(_ augmentation: Augmentation, image: UnsafePointer<UInt8>, patch: Int,
                      to destination: UnsafeMutablePointer<UInt8>) {
        let (x, y) = grid.origin(of: patch)
        let source = image + y * grid.imageSize + x
        let size = grid.patchSize, stride = grid.imageSize
        switch augmentation {
        case .identity: PatchKernels.copy(source, sourceStride: stride, size: size, to: destination)
        case .horizontalFlip: PatchKernels.flipHorizontal(source, sourceStride: stride, size: size, to: destination)
        case .verticalFlip: PatchKernels.flipVertical(source, sourceStride: stride, size: size, to: destination)
        case .rotate(let degrees): PatchKernels.rotate(source, sourceStride: stride, size: size, degrees: degrees, to: destination)
        case .blur(let sigma): PatchKernels.blur(source, sourceStride: stride, size: size, sigma: sigma, scratch: scratch, to: destination)
        }
    }
}
