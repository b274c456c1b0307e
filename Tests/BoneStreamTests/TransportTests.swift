import BoneStreamBatch
import BoneStreamTransport
import Foundation
import Testing

@Suite struct TransportTests {
    @Test func pushPullCarriesMultipartMessagesIntact() throws {
        let dir = try TemporaryDirectory("zmq")
        let context = ZMQContext()
        let pull = try ZMQSocket(context, .pull)
        try pull.bind("ipc://\(dir.path)/data")
        let push = try ZMQSocket(context, .push)
        try push.connect("ipc://\(dir.path)/data")
        let big = MessageBuffer(count: 224 * 224 * 40)
        for i in 0..<big.count { big.base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31), toByteOffset: i, as: UInt8.self) }
        let expected = Data(bytes: big.base, count: big.count)
        try push.send(buffers: [MessageBuffer(copying: Data("head".utf8)), big, MessageBuffer(count: 0)])
        let frames = try #require(try pull.receive(timeoutMs: 5000))
        #expect(frames.count == 3)
        #expect(frames[0] == Data("head".utf8))
        #expect(frames[1] == expected)
        #expect(frames[2].isEmpty)
    }

    @Test func receiveTimesOutWithNil() throws {
        let dir = try TemporaryDirectory("zmq")
        let pull = try ZMQSocket(ZMQContext(), .pull)
        try pull.bind("ipc://\(dir.path)/quiet")
        let start = Date()
        #expect(try pull.receive(timeoutMs: 50) == nil)
        #expect(Date().timeIntervalSince(start) >= 0.04)
    }

    @Test func routerSeesTheDealersRoutingID() throws {
        let dir = try TemporaryDirectory("zmq")
        let context = ZMQContext()
        let router = try ZMQSocket(context, .router)
        try router.bind("ipc://\(dir.path)/control")
        let dealer = try ZMQSocket(context, .dealer)
        try dealer.setRoutingID("worker-1")
        try dealer.connect("ipc://\(dir.path)/control")
        try dealer.send([Data("READY".utf8)])
        let frames = try #require(try router.receive(timeoutMs: 5000))
        #expect(frames == [Data("worker-1".utf8), Data("READY".utf8)])
        try router.send([frames[0], Data("WORK".utf8)])
        #expect(try dealer.receive(timeoutMs: 5000) == [Data("WORK".utf8)])
    }

    @Test func aBatchSurvivesTheSocket() throws {
        let dir = try TemporaryDirectory("zmq")
        let context = ZMQContext()
        let pull = try ZMQSocket(context, .pull)
        try pull.bind("ipc://\(dir.path)/b")
        let push = try ZMQSocket(context, .push)
        try push.connect("ipc://\(dir.path)/b")
        let header = BatchHeader(kind: .train, epoch: 1, batchIndex: 2, batchesInEpoch: 3, count: 1, height: 2, width: 2, seed: 9,
                                 configHash: [UInt8](repeating: 1, count: 16))
        let batch = Batch(header: header, pixels: [1, 2, 3, 4],
                          labels: [SampleLabel(imageIndex: 5, patch: 6, operation: 1, male: true, age: 100, parameter: 0)])
        try push.send(batch.frames())
        #expect(try Batch(frames: try #require(try pull.receive(timeoutMs: 5000))) == batch)
    }

    @Test func badEndpointsNameThemselves() throws {
        let socket = try ZMQSocket(ZMQContext(), .pull)
        do {
            try socket.bind("nonsense://here")
            Issue.record("expected an error")
        } catch let error as ZMQError {
            #expect(error.description.contains("nonsense://here"))
        }
    }
}
