import BoneStreamTransport
import Foundation
import Testing

/// The work board (docs/protocol.md, "Work board"): the coordinator posts, workers claim.
@Suite struct WorkBoardTests {
    @Test func postedEntriesAreClaimedEarliestInThePlanFirstAndOnlyOnce() throws {
        let board = try WorkBoard(entries: 8)
        #expect(board.path.hasPrefix(SharedMemory.directory + "/bonestream-\(getpid())-") && board.path.hasSuffix(".board"))
        let worker = try WorkBoard(attaching: board.path, token: board.token)
        #expect(worker.claim(worker: 1) == nil, "nothing posted")
        // Posted out of plan order: claims follow the plan.
        for order in [5, 2, 9, 0] { _ = try #require(board.post((1, UInt64(order) * 10), order: UInt64(order))) }
        var claimed: [UInt64] = []
        while let (entry, words) = worker.claim(worker: 3) {
            claimed.append(words.1)
            #expect(board.owner(entry) == .claimed(3))
            #expect(worker.markPushed(entry, worker: 3) && board.owner(entry) == .pushed(3))
            #expect(!worker.markPushed(entry, worker: 4), "only the claiming worker marks its entry")
        }
        #expect(claimed == [0, 20, 50, 90])
    }

    @Test func aFullBoardRefusesAPostUntilAnEntryIsFreed() throws {
        let board = try WorkBoard(entries: 2)
        let a = try #require(board.post((0, 1), order: 1))
        _ = try #require(board.post((0, 2), order: 2))
        #expect(board.post((0, 3), order: 3) == nil)
        board.free(a)
        #expect(board.owner(a) == .free)
        #expect(board.post((0, 3), order: 3) == a)
        #expect(board.batch(a) == (0, 3))
    }

    @Test func retractTakesBackOnlyUnclaimedEntries() throws {
        let board = try WorkBoard(entries: 4)
        let open = try #require(board.post((0, 1), order: 1))
        let taken = try #require(board.post((0, 2), order: 0))
        let (entry, _) = try #require(board.claim(worker: 7))
        #expect(entry == taken)
        #expect(!board.retract(taken), "a claimed entry is the worker's")
        #expect(board.retract(open) && board.owner(open) == .free)
        #expect(board.claim(worker: 8) == nil)
    }

    @Test func aDeadWorkersEntriesAreFreedOnlyByItsNumber() throws {
        let board = try WorkBoard(entries: 4)
        let first = try #require(board.post((0, 1), order: 1))
        let second = try #require(board.post((0, 2), order: 2))
        #expect(board.claim(worker: 5)?.entry == first)
        board.markPushed(first, worker: 5)
        #expect(board.claim(worker: 5)?.entry == second)
        // The coordinator frees what worker 5 claimed and never pushed; not another worker's, not a pushed one.
        #expect(!board.freeIfClaimed(second, by: 6))
        #expect(!board.freeIfClaimed(first, by: 5))
        #expect(board.freeIfClaimed(second, by: 5) && board.owner(second) == .free)
        #expect(board.owner(first) == .pushed(5))
        // What it pushed may have died in its socket's buffer: freed too, but only its own pushed entry.
        #expect(!board.freeIfPushed(first, by: 6) && board.freeIfPushed(first, by: 5) && board.owner(first) == .free)
        // Its late mark finds the entry gone and changes nothing.
        #expect(!board.markPushed(second, worker: 5) && board.owner(second) == .free)
    }

    @Test func aLeavingWorkerGivesItsClaimBackToTheOthers() throws {
        let board = try WorkBoard(entries: 4)
        let entry = try #require(board.post((0, 42), order: 0))
        #expect(board.claim(worker: 1)?.entry == entry)
        #expect(!board.unclaim(entry, worker: 2))
        #expect(board.unclaim(entry, worker: 1) && board.owner(entry) == .open)
        let again = try #require(board.claim(worker: 2))
        #expect(again.entry == entry && again.batch == (0, 42))
    }

    @Test func aSleepingWorkerWakesOnAPost() throws {
        let board = try WorkBoard(entries: 4)
        let worker = try WorkBoard(attaching: board.path, token: board.token)
        let start = Date()
        let posted = DispatchSemaphore(value: 0)
        let path = board.path, token = board.token
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
            // The coordinator's side through a mapping of its own, as in another process.
            let coordinator = try! WorkBoard(attaching: path, token: token)
            _ = coordinator.post((0, 9), order: 0)
            coordinator.announce()
            posted.signal()
        }
        let claimed = worker.claim(worker: 1, waitMs: 5000)
        let waited = Date().timeIntervalSince(start)
        posted.wait()
        #expect(claimed.map { $0.batch == (0, 9) } == true)
        #expect(waited >= 0.15 && waited < 2, "woken by the post (\(waited) s), not by the 5-s timeout")
        // With nothing posted the wait ends at its timeout.
        let idle = Date()
        #expect(worker.claim(worker: 1, waitMs: 100) == nil)
        #expect(Date().timeIntervalSince(idle) >= 0.09)
    }

    @Test func workersRacingForEntriesClaimEachExactlyOnce() async throws {
        let board = try WorkBoard(entries: 64)
        let total = 4000
        let path = board.path, token = board.token
        // The coordinator posts as entries come free; four workers claim and push concurrently.
        let claims = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for number in 1...4 {
                group.addTask {
                    let worker = try WorkBoard(attaching: path, token: token)
                    var mine: [UInt64] = []
                    var idle = 0
                    while idle < 50 {
                        guard let (entry, words) = worker.claim(worker: UInt32(number), waitMs: 10) else {
                            idle += 1
                            continue
                        }
                        idle = 0
                        mine.append(words.1)
                        #expect(worker.markPushed(entry, worker: UInt32(number)))
                    }
                    return mine
                }
            }
            var next = 0
            while next < total {
                // Pushed entries are done (the coordinator frees them on the consumer's acknowledgement).
                for entry in 0..<board.entryCount { if case .pushed = board.owner(entry) { board.free(entry) } }
                while next < total, board.post((0, UInt64(next)), order: UInt64(next)) != nil { next += 1 }
                board.announce()
            }
            var all: [[UInt64]] = []
            for try await mine in group { all.append(mine) }
            return all
        }
        let every = claims.flatMap { $0 }
        #expect(every.count == total && Set(every).count == total, "each posted batch claimed once: \(every.count) claims, \(Set(every).count) distinct")
    }

    @Test func aWorkerAttachesOnlyToTheBoardItWasToldOf() throws {
        let board = try WorkBoard(entries: 4)
        #expect(throws: SharedMemoryError.self) { try WorkBoard(attaching: board.path, token: board.token &+ 1) }
        #expect(throws: SharedMemoryError.self) { try WorkBoard(attaching: SharedMemory.directory + "/bonestream-0-missing.board", token: 1) }
        #expect(throws: SharedMemoryError.self) { try WorkBoard(attaching: "/etc/passwd", token: 1) }
        // A file with the right name but not a board.
        let fake = SharedMemory.directory + "/bonestream-\(getpid())-fake.board"
        #expect(FileManager.default.createFile(atPath: fake, contents: Data(count: 8192)))
        defer { unlink(fake) }
        #expect(throws: SharedMemoryError.self) { try WorkBoard(attaching: fake, token: 1) }
        // The board goes with its coordinator.
        let path = board.path
        _ = consume board
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func theCoordinatorsHeartbeatIsSeenByWorkers() throws {
        let board = try WorkBoard(entries: 4)
        let worker = try WorkBoard(attaching: board.path, token: board.token)
        let now = SharedMemory.milliseconds()
        board.beat(now: now)
        #expect(worker.coordinatorSilence(now: now + 31_000) == 31_000)
        #expect(worker.coordinatorSilence(now: now) == 0)
    }
}
