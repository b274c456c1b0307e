import Foundation

/// A counter-based random generator: every stream is a pure function of its key, so a value drawn
/// for (seed, epoch, sample) is the same whichever process or thread draws it.
///
/// The mixing function is SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014); keys are folded in with the same finaliser.
public struct CounterRandom: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    /// A stream keyed by `seed` and any number of further key words (epoch, sample index, ...).
    public init(seed: UInt64, _ keys: UInt64...) {
        self.init(seed: seed, keys: keys)
    }

    /// The same from an array of key words.
    public init(seed: UInt64, keys: [UInt64]) {
        var s = CounterRandom.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for key in keys {
            s = CounterRandom.mix(s ^ CounterRandom.mix(key &+ 0xD1B5_4A32_D192_ED03))
        }
        state = s
    }

    /// The same stream as `init(seed:_:...)` with exactly two keys, without the variadic
    /// call's array (the engine's dropout asks for one per element; a training step allocates nothing).
    @inlinable
    public init(seed: UInt64, keys first: UInt64, _ second: UInt64) {
        var s = CounterRandom.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        s = CounterRandom.mix(s ^ CounterRandom.mix(first &+ 0xD1B5_4A32_D192_ED03))
        s = CounterRandom.mix(s ^ CounterRandom.mix(second &+ 0xD1B5_4A32_D192_ED03))
        state = s
    }

    /// SplitMix64's finaliser: a bijective avalanche of 64 bits.
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return CounterRandom.mix(state)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * unit()
    }

    /// Standard normal by Box-Muller.
    public mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300)
        let u2 = unit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// Fisher-Yates shuffle driven by this stream.
    public mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            items.swapAt(i, j)
        }
    }
}

