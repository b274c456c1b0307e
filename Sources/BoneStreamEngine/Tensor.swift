// Tensors, shapes and the threads every layer shares. In the spirit of llm.c: flat float buffers,
// explicit shapes, no allocation once a graph is prepared for a batch size.
import COpenBLAS
import CWorkPool
import Foundation

/// NCHW. A vector batch (dense layers) is (n, c, 1, 1).
public struct Shape: Equatable, Sendable, CustomStringConvertible {
    public var n: Int, c: Int, h: Int, w: Int

    public init(_ n: Int, _ c: Int, _ h: Int = 1, _ w: Int = 1) {
        self.n = n
        self.c = c
        self.h = h
        self.w = w
    }

    public var count: Int { n * c * h * w }
    public var perImage: Int { c * h * w }
    public var plane: Int { h * w }
    public var description: String { "(\(n), \(c), \(h), \(w))" }
    /// Keras's way of writing the shape of one sample: (None, H, W, C) or (None, C).
    public var keras: String { h == 1 && w == 1 ? "(None, \(c))" : "(None, \(h), \(w), \(c))" }
}

/// A float32 buffer with a shape. Allocated once; its contents change every step.
public final class Tensor {
    public let shape: Shape
    public let data: UnsafeMutablePointer<Float>

    public init(_ shape: Shape) {
        self.shape = shape
        data = .allocate(capacity: max(shape.count, 1))
        data.initialize(repeating: 0, count: max(shape.count, 1))
    }

    public convenience init(_ shape: Shape, values: [Float]) {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        self.init(shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { data.deallocate() }

    public var count: Int { shape.count }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }
    public var array: [Float] { Array(buffer) }
    public func zero() { data.update(repeating: 0, count: count) }
    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }
}

/// Where a layer writes its output: a tensor of its own, or its channels' slice of a concatenation
/// (image i's channel f at base + i * imageStride + f * plane).
struct OutputTarget {
    let base: UnsafeMutablePointer<Float>
    let imageStride: Int

    init(_ tensor: Tensor, channelOffset: Int = 0) {
        base = tensor.data + channelOffset * tensor.shape.plane
        imageStride = tensor.shape.perImage
    }
}

/// The engine's threads: one per core, for every loop and every matrix product (each thread calls a
/// single-threaded OpenBLAS on its share). OpenBLAS's own pool stays idle (asleep once its threads'
/// start-up spin, about 90 ms as the process loads, is over), so no thread waits for another library's
/// pool: two cores run two threads. The loops run on a fixed pool
/// (`CWorkPool`: the calling thread plus `count - 1` helpers) rather than Dispatch, whose
/// concurrentPerform allocates on every call; with loop bodies that capture nothing, a warmed-up
/// training step allocates nothing outside OpenBLAS (docs/engine.md).
public enum Threads {
    public static let count = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Runs once, thread-safely (a static's initialiser), whichever thread multiplies first.
    private static let singleThreadedBLAS: Void = openblas_set_num_threads(1)

    /// Makes OpenBLAS single-threaded (the engine splits products itself). Called by every product.
    public static func configureBLAS() { _ = singleThreadedBLAS }

    /// Runs `body(captures, range)` over `0..<n` in up to `count` contiguous chunks, on several
    /// threads when each chunk gets at least `minimum` items. `body` captures nothing: what it reads
    /// comes in `captures` (a tuple of pointers and sizes, usually), because handing a capturing
    /// closure to another thread takes a heap box per call (`withoutActuallyEscaping` makes one),
    /// and a training step runs hundreds of loops. `captures` and `body` stay on the caller's stack,
    /// and nothing here allocates (EngineAllocationTests).
    public static func parallel<C>(_ n: Int, minimum: Int = 16_384, _ captures: C, _ body: @escaping (C, Range<Int>) -> Void) {
        guard n > 0 else { return }
        let chunks = chunkCount(n, minimum)
        if chunks == 1 { return body(captures, 0..<n) }
        withUnsafePointer(to: RangeBody(captures: captures, body: body)) { run(chunks, n, UnsafeRawPointer($0), RangeBody<C>.self) }
    }

    /// The same, also passing the chunk's number (below `count`), e.g. to pick a per-thread buffer.
    /// A call from inside a chunk (or while another thread's loop runs) runs its chunks in order on
    /// the calling thread.
    public static func parallelChunks<C>(_ n: Int, minimum: Int = 16_384, _ captures: C, _ body: @escaping (C, Int, Range<Int>) -> Void) {
        guard n > 0 else { return }
        let chunks = chunkCount(n, minimum)
        if chunks == 1 { return body(captures, 0, 0..<n) }
        withUnsafePointer(to: ChunkBody(captures: captures, body: body)) { run(chunks, n, UnsafeRawPointer($0), ChunkBody<C>.self) }
    }

    private static func chunkCount(_ n: Int, _ minimum: Int) -> Int { min(count, max(1, n / max(minimum, 1))) }

    /// Runs every chunk of the loop whose (captures, body) is at `state` on the pool. The body is
    /// reached through a metatype (`LoopBody`), not a closure, so that even where the compiler does
    /// not specialise the generic functions above (debug builds compile file by file), nothing is
    /// boxed: a metatype and its witness table are made once per type, then cached by the runtime.
    private static func run(_ chunks: Int, _ n: Int, _ state: UnsafeRawPointer, _ body: LoopBody.Type) {
        var loop = Loop(body: body, state: state, n: n, chunks: chunks)
        withUnsafeMutablePointer(to: &loop) { pointer in
            _ = bs_pool_run(Int32(count - 1), Int64(chunks), { context, chunk in
                let loop = context!.assumingMemoryBound(to: Loop.self)
                let i = Int(chunk), n = loop.pointee.n, chunks = loop.pointee.chunks
                loop.pointee.body.run(loop.pointee.state, i, i * n / chunks..<(i + 1) * n / chunks)
            }, pointer)
        }
    }

    /// One loop, read by the pool's threads through a pointer to the caller's stack.
    private struct Loop {
        let body: LoopBody.Type
        let state: UnsafeRawPointer
        let n: Int
        let chunks: Int
    }
}

/// How the pool's threads call a loop's body: `state` points to a `RangeBody` or `ChunkBody`. (Structs,
/// not tuples: a closure stored in a struct keeps the abstraction of its declared type, while one
/// stored in a generic tuple is wrapped in a reabstraction thunk, which allocates.)
private protocol LoopBody {
    static func run(_ state: UnsafeRawPointer, _ chunk: Int, _ range: Range<Int>)
}

private struct RangeBody<C>: LoopBody {
    let captures: C
    let body: (C, Range<Int>) -> Void

    static func run(_ state: UnsafeRawPointer, _ chunk: Int, _ range: Range<Int>) {
        let s = state.assumingMemoryBound(to: RangeBody<C>.self)
        s.pointee.body(s.pointee.captures, range)
    }
}

private struct ChunkBody<C>: LoopBody {
    let captures: C
    let body: (C, Int, Range<Int>) -> Void

    static func run(_ state: UnsafeRawPointer, _ chunk: Int, _ range: Range<Int>) {
        let s = state.assumingMemoryBound(to: ChunkBody<C>.self)
        s.pointee.body(s.pointee.captures, chunk, range)
    }
}

/// Row-major single-precision matrix product C = alpha op(A) op(B) + beta C, split over the cores
/// by columns of C (or by rows when C is narrow); each share is one single-threaded sgemm.
func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
          split: Bool = true) {
    Threads.configureBLAS()
    let call = Product(transA: transA, transB: transB, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    let work = Double(m) * Double(n) * Double(k)
    let parts = work < 4_000_000 || !split ? 1 : Threads.count
    if parts == 1 { return call.run(rows: 0..<m, columns: 0..<n) }
    if n >= 64 * parts {
        // Column shares rounded to 16 for the kernels' sake.
        let share = (n / parts + 15) / 16 * 16
        Threads.parallel(parts, minimum: 1, (call, m, n, share, parts)) { captures, r in
            let (call, m, n, share, parts) = captures
            for p in r { call.run(rows: 0..<m, columns: min(n, p * share)..<(p == parts - 1 ? n : min(n, (p + 1) * share))) }
        }
    } else {
        let share = (m + parts - 1) / parts
        Threads.parallel(parts, minimum: 1, (call, m, n, share)) { captures, r in
            let (call, m, n, share) = captures
            for p in r { call.run(rows: min(m, p * share)..<min(m, (p + 1) * share), columns: 0..<n) }
        }
    }
}

/// One sgemm's operands, so that a share of it can run on any thread.
private struct Product {
    let transA: Bool, transB: Bool, k: Int, alpha: Float
    let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int

    func run(rows: Range<Int>, columns: Range<Int>) {
        guard !rows.isEmpty, !columns.isEmpty else { return }
        // Row r of op(A) starts at a + r*lda (no transpose) or a + r (transpose); column j of op(B)
        // at b + j (no transpose) or b + j*ldb (transpose).
        let aStart = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
        let bStart = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(rows.count), Int32(columns.count), Int32(k), alpha, aStart, Int32(lda), bStart, Int32(ldb), beta,
                    c + rows.lowerBound * ldc + columns.lowerBound, Int32(ldc))
    }
}
