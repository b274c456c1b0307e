import Foundation

/// Data-parallel loops over the machine's cores.
public enum Parallel {
    /// Calls `body` for every index in 0..<count on all cores, in chunks of `grain`, and returns the
    /// results in index order. `body` must be safe to run concurrently.
    public static func map<T: Sendable>(count: Int, grain: Int = 1, _ body: @Sendable (Int) throws -> T) rethrows -> [T] {
        guard count > 0 else { return [] }
        let results = ResultSlots<T>(count: count)
        let chunks = (count + grain - 1) / grain
        try withoutActuallyEscaping(body) { body in
            let firstError = ErrorSlot()
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                for i in (chunk * grain)..<min(count, (chunk + 1) * grain) where !firstError.isSet {
                    do { results.store(try body(i), at: i) } catch { firstError.set(error) }
                }
            }
            if let error = firstError.error { throw error }
        }
        return results.collect()
    }

    /// Result storage written at distinct indices from several threads.
    private final class ResultSlots<T>: @unchecked Sendable {
        private let base: UnsafeMutablePointer<T?>
        private let count: Int

        init(count: Int) {
            self.count = count
            base = .allocate(capacity: count)
            base.initialize(repeating: nil, count: count)
        }

        deinit {
            base.deinitialize(count: count)
            base.deallocate()
        }

        func store(_ value: T, at index: Int) { base[index] = value }

        func collect() -> [T] { (0..<count).map { base[$0]! } }
    }

    private final class ErrorSlot: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Error?

        var isSet: Bool { lock.withLock { stored != nil } }
        var error: Error? { lock.withLock { stored } }
        func set(_ error: Error) { lock.withLock { if stored == nil { stored = error } } }
    }
}
