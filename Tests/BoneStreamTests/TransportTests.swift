import BoneStreamBatch
import BoneStreamTransport
import Foundation
import Testing

@Suite struct TransportTests {
    /// A PULL bound at `ipc://<dir>/data` and a PUSH connected to it, in one context.
    private func pushPull(_ dir: TemporaryDirectory) throws -> (context: ZMQContext, pull: ZMQSocket, push: ZMQSocket) {
        let context = ZMQContext()
        let pull = try ZMQSocket(context, .pull)
        try pull.bind("ipc://\(dir.path)/data")
        let push = try ZMQSocket(context, .push)
        try push.connect("ipc://\(dir.path)/data")
        return (context, pull, push)
    }

    /// A ROUTER bound at `ipc://<dir>/control` and a DEALER with routing id `id` connected to it.
    private func routerDealer(_ dir: TemporaryDirectory, _ context: ZMQContext, id: String) throws -> (router: ZMQSocket, dealer: ZMQSocket) {
        let router = try ZMQSocket(context, .router)
        try router.bind("ipc://\(dir.path)/control")
        let dealer = try ZMQSocket(context, .dealer)
        try dealer.setRoutingID(id)
        try dealer.connect("ipc://\(dir.path)/control")
        return (router, dealer)
    }

    @Test func pushPullCarriesMultipartMessagesIntact() throws {
        let dir = try TemporaryDirectory("zmq")
        let (_, pull, push) = try pushPull(dir)
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

    /// `poll` and zero-timeout receives trust the socket's descriptor (ZMQ_FD, edge-triggered) only
    /// when nothing can wait unseen: every way a message can be waiting is looked at here.
    @Test func waitingOnTheSocketsDescriptorMissesNoMessage() throws {
        let dir = try TemporaryDirectory("zmq")
        let (context, pull, push) = try pushPull(dir)
        #expect(try pull.receive(timeoutMs: 0) == nil)
        for round in 0..<50 {
            // Several messages at once: each is there without waiting, the one after them is not.
            let count = 1 + round % 3
            for i in 0..<count { try push.send([Data([UInt8(round), UInt8(i)])]) }
            #expect(try pull.poll(timeoutMs: 5000))
            for i in 0..<count { #expect(try pull.receive(timeoutMs: i == 0 ? 0 : 1000) == [Data([UInt8(round), UInt8(i)])]) }
            #expect(try pull.receive(timeoutMs: 0) == nil)
        }
        // A message sent while the receiver waits wakes it.
        let endpoint = "ipc://\(dir.path)/data"
        let sender = Thread {
            guard let late = try? ZMQSocket(context, .push), (try? late.connect(endpoint)) != nil else { return }
            Thread.sleep(forTimeInterval: 0.05)
            _ = try? late.setLinger(milliseconds: 5000)
            _ = try? late.send([Data("late".utf8)])
        }
        sender.start()
        let start = Date()
        #expect(try pull.poll(timeoutMs: 5000))
        #expect(Date().timeIntervalSince(start) < 4)
        #expect(try pull.receive(timeoutMs: 0) == [Data("late".utf8)])

        // Commands that carry no message (a second peer connecting) do not end the wait early.
        let connector = Thread {
            Thread.sleep(forTimeInterval: 0.02)
            guard let other = try? ZMQSocket(context, .push), (try? other.connect(endpoint)) != nil else { return }
            Thread.sleep(forTimeInterval: 0.3)
        }
        connector.start()
        let quiet = Date()
        #expect(try pull.poll(timeoutMs: 150) == false)
        #expect(Date().timeIntervalSince(quiet) >= 0.14)

        // Another descriptor becoming readable ends the wait.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        #expect(write(ends[1], "x", 1) == 1)
        #expect(try pull.poll(timeoutMs: 5000, orReadable: ends[0]))

        // A send on the same socket may take in the signal of a message that arrived meanwhile: the
        // next wait must still see it.
        let (router, dealer) = try routerDealer(dir, context, id: "d")
        try dealer.send([Data("hello".utf8)])
        let hello = try #require(try router.receive(timeoutMs: 5000))
        #expect(try dealer.receive(timeoutMs: 0) == nil)
        for round in 0..<50 {
            try router.send([hello[0], Data([UInt8(round)])])
            Thread.sleep(forTimeInterval: 0.001)
            try dealer.send([Data("ack".utf8)])
            #expect(try dealer.poll(timeoutMs: 5000))
            #expect(try dealer.receive(timeoutMs: 0) == [Data([UInt8(round)])])
            #expect(try router.receive(timeoutMs: 5000)?.last == Data("ack".utf8))
        }
    }

    @Test func aControlSocketIsLookedAtOnceAMillisecondAtMost() {
        var looks = SocketLooks(milliseconds: 1)
        // The second look in the same millisecond is not due.
        let everyMillisecond = [5000, 5000, 5001, 5001, 5003].map { looks.due(now: UInt64($0)) }
        #expect(everyMillisecond == [true, false, true, false, true])
        var slower = SocketLooks(milliseconds: 10)
        let everyTen = [100, 109, 110, 119].map { slower.due(now: UInt64($0)) }
        #expect(everyTen == [true, false, true, false])
    }

    @Test func routerSeesTheDealersRoutingID() throws {
        let dir = try TemporaryDirectory("zmq")
        let (router, dealer) = try routerDealer(dir, ZMQContext(), id: "worker-1")
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

    @Test func endpointsAreMadeValidForTheSideThatUsesThem() {
        // Connecting to a wildcard means the binding side's host: this one, or the host already reached.
        #expect(Endpoint.connectable("tcp://*:5555") == "tcp://127.0.0.1:5555")
        #expect(Endpoint.connectable("tcp://0.0.0.0:5555") == "tcp://127.0.0.1:5555")
        #expect(Endpoint.connectable("tcp://[::]:5555") == "tcp://[::1]:5555")
        #expect(Endpoint.connectable("tcp://*:5556", reachedVia: "tcp://trainer.lab:5555") == "tcp://trainer.lab:5556")
        #expect(Endpoint.connectable("tcp://*:5556", reachedVia: "tcp://[fd00::7]:5555") == "tcp://[fd00::7]:5556")
        #expect(Endpoint.connectable("tcp://*:5556", reachedVia: "tcp://*:5555") == "tcp://127.0.0.1:5556")
        #expect(Endpoint.connectable("tcp://*:5556", reachedVia: "ipc://work/stream-control") == "tcp://127.0.0.1:5556")
        // Concrete hosts, ipc:// and source-qualified endpoints pass unchanged.
        for endpoint in ["tcp://10.0.0.5:5556", "tcp://trainer:5556", "ipc://work/stream-data", "tcp://eth0;*:5556", "inproc://x"] {
            #expect(Endpoint.connectable(endpoint, reachedVia: "tcp://trainer.lab:5555") == endpoint)
        }
        #expect(Endpoint.tcpHostAndPort("tcp://[::1]:7").map { [$0.host, $0.port] } == ["::1", "7"])
        #expect(Endpoint.tcpHostAndPort("ipc://a:b") == nil)
        // A host name binds as the address it resolves to; addresses and wildcards need nothing.
        #expect(Endpoint.resolvedForBinding("tcp://localhost:5555").map { ["tcp://127.0.0.1:5555", "tcp://[::1]:5555"].contains($0) } == true)
        #expect(Endpoint.resolvedForBinding("tcp://127.0.0.1:5555") == nil)
        #expect(Endpoint.resolvedForBinding("tcp://*:5555") == nil)
        #expect(Endpoint.resolvedForBinding("tcp://no-such-host.invalid:5555") == nil)
    }

    @Test func oneEndpointServesBothSidesOverTCP() throws {
        let context = ZMQContext()
        // The binding side names every interface or its own host name; the other side uses the same text.
        for (index, host) in ["*", "localhost"].enumerated() {
            let pull = try ZMQSocket(context, .pull)
            let port = try Endpoint.freeLoopbackPort()
            let endpoint = "tcp://\(host):\(port)"
            try pull.bind(endpoint)
            let push = try ZMQSocket(context, .push)
            try push.connect(endpoint)
            try push.send([Data([UInt8(index)])])
            #expect(try pull.receive(timeoutMs: 5000) == [Data([UInt8(index)])], "\(endpoint)")
        }
        let socket = try ZMQSocket(context, .pull)
        do {
            try socket.bind("tcp://no-such-host.invalid:5555")
            Issue.record("expected an error")
        } catch let error as ZMQError {
            #expect(error.description.contains("no-such-host.invalid") && error.description.contains("tcp://*:PORT"), "\(error)")
        }
    }
}
