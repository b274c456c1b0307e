import BoneStreamCore
import Foundation
import Testing

@Suite struct CoreTests {
    @Test func atomicWriteReplacesWholeAndLeavesNoTemp() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/sub/out.txt"
        try AtomicFile.write("first", to: path)
        try AtomicFile.write("second", to: path)
        #expect(dir.read("sub/out.txt") == "second")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/sub") == ["out.txt"])
    }

    @Test func atomicWriteIntoAnUnwritablePlaceNamesThePath() throws {
        do {
            try AtomicFile.write("x", to: "/proc/bonestream-cannot-write/file")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("/proc/bonestream-cannot-write"))
        }
    }

    @Test func staleTempsAreRemoved() throws {
        let dir = try TemporaryDirectory()
        try dir.write("partial", to: ".train.csv.tmp-123-456")
        try dir.write("keep", to: "train.csv")
        AtomicFile.removeStaleTemps(in: dir.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["train.csv"])
    }

    @Test func sha256MatchesTheStandardVectors() throws {
        // FIPS 180-2 examples.
        #expect(Hashing.sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hashing.sha256("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let dir = try TemporaryDirectory()
        try dir.write("abc", to: "f")
        #expect(try Hashing.sha256(fileAt: dir.path + "/f") == Hashing.sha256("abc"))
    }

    @Test func counterRandomIsAPureFunctionOfItsKey() {
        var a = CounterRandom(seed: 1, 2, 3), b = CounterRandom(seed: 1, 2, 3), c = CounterRandom(seed: 1, 3, 2)
        let xs = (0..<4).map { _ in a.next() }
        #expect(xs == (0..<4).map { _ in b.next() })
        #expect(xs != (0..<4).map { _ in c.next() })
        // The two-key initialiser (no array; the engine's dropout) is the same stream as the general one.
        var g = CounterRandom(seed: 1, keys: [2, 3])
        #expect(xs == (0..<4).map { _ in g.next() })
        var d = CounterRandom(seed: 1, keys: 2, 3), e = CounterRandom(seed: 1, 2, 3, 4), f = CounterRandom(seed: 1, keys: [2, 3, 4])
        #expect(xs == (0..<4).map { _ in d.next() })
        #expect(e.next() == f.next())
    }

    @Test func counterRandomIsUniformEnough() {
        var random = CounterRandom(seed: 11)
        let n = 100_000
        var buckets = [Int](repeating: 0, count: 10)
        var sum = 0.0, sumSquares = 0.0
        for _ in 0..<n {
            buckets[Int(random.unit() * 10)] += 1
            let z = random.normal()
            sum += z
            sumSquares += z * z
        }
        #expect(buckets.allSatisfy { abs($0 - n / 10) < 600 })  // ~6 standard deviations
        #expect(abs(sum / Double(n)) < 0.02)
        #expect(abs(sumSquares / Double(n) - 1) < 0.03)
    }

    @Test func parallelMapKeepsOrderAndPropagatesErrors() throws {
        struct Boom: Error {}
        #expect(Parallel.map(count: 1000, grain: 7) { $0 * 2 } == (0..<1000).map { $0 * 2 })
        #expect(throws: Boom.self) { try Parallel.map(count: 100) { i -> Int in if i == 50 { throw Boom() }; return i } }
    }

    @Test func rateLinesComeEveryIntervalWithTheRateSinceThePreviousOne() {
        var lines = RateLines(everySeconds: 5)
        let t0 = ContinuousClock.now
        #expect(lines.due(count: 100, now: t0) == nil, "the first call starts the clock")
        #expect(lines.due(count: 900, now: t0 + .seconds(4)) == nil)
        #expect(lines.due(count: 1100, now: t0 + .seconds(5)) == 200, "1000 units in 5 s")
        #expect(lines.due(count: 1500, now: t0 + .seconds(9)) == nil)
        #expect(lines.due(count: 3100, now: t0 + .seconds(13)) == 250, "2000 units in 8 s, since the previous line")
    }
}
