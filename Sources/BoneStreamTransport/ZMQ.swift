import CZMQ
import Foundation

/// A failed ZeroMQ call: which call, on which endpoint, and libzmq's own words.
public struct ZMQError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let detail: String
    public let code: Int32

    init(_ call: String, _ detail: String = "") {
        self.call = call
        self.detail = detail
        code = zmq_errno()
    }

    public var description: String {
        let reason = String(cString: zmq_strerror(code))
        return detail.isEmpty ? "\(call) failed: \(reason)" : "\(call) \(detail) failed: \(reason)"
    }
}

/// A ZeroMQ context: one per process, shared by its sockets.
public final class ZMQContext: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer

    public init() {
        guard let context = zmq_ctx_new() else { preconditionFailure("zmq_ctx_new failed: out of memory") }
        raw = context
    }

    deinit { zmq_ctx_term(raw) }
}

/// One ZeroMQ socket. Not thread-safe: use it from one thread at a time, as libzmq requires.
public final class ZMQSocket {
    public enum Kind: Int32, Sendable {
        case pair = 0, pub = 1, sub = 2, req = 3, rep = 4, dealer = 5, router = 6, pull = 7, push = 8
    }

    public let kind: Kind
    private let context: ZMQContext  // keeps the context alive as long as the socket
    let raw: UnsafeMutableRawPointer
    /// The socket's ZMQ_FD, once asked for.
    private var mailbox: Int32?
    /// True when no message can be waiting unseen: the last receive found none (libzmq processed
    /// every command and marked its pipes empty, so anything new signals ZMQ_FD) and nothing was sent
    /// since (a send may process commands, and with them the signal of a message it leaves waiting).
    private var drained = false

    public init(_ context: ZMQContext, _ kind: Kind) throws {
        guard let socket = zmq_socket(context.raw, kind.rawValue) else { throw ZMQError("zmq_socket") }
        self.context = context
        self.kind = kind
        raw = socket
        // Closing must never hang on unsent messages; delivery guarantees live in our protocol.
        try setOption(ZMQ_LINGER, 0)
    }

    deinit { zmq_close(raw) }

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(raw, option, &v, MemoryLayout<Int32>.size) == 0 else { throw ZMQError("zmq_setsockopt", "option \(option)") }
    }

    /// How long closing may wait to deliver messages already sent (0 by default: closing never waits).
    public func setLinger(milliseconds: Int32) throws {
        try setOption(ZMQ_LINGER, milliseconds)
    }

    /// Makes a blocking send give up (return false) after `milliseconds`.
    public func setSendTimeout(milliseconds: Int32) throws {
        try setOption(ZMQ_SNDTIMEO, milliseconds)
    }

    /// Sets the routing id peers see (DEALER, REQ).
    public func setRoutingID(_ id: String) throws {
        let bytes = Array(id.utf8)
        guard zmq_setsockopt(raw, ZMQ_ROUTING_ID, bytes, bytes.count) == 0 else { throw ZMQError("zmq_setsockopt", "routing id") }
    }

    /// Binds `endpoint`; a tcp:// host name binds the address it resolves to (`Endpoint.resolvedForBinding`).
    public func bind(_ endpoint: String) throws {
        if zmq_bind(raw, endpoint) == 0 { return }
        let error = ZMQError("zmq_bind", endpoint)
        if error.code == ENODEV, let resolved = Endpoint.resolvedForBinding(endpoint) {
            if zmq_bind(raw, resolved) == 0 { return }
            throw ZMQError("zmq_bind", "\(endpoint) (as \(resolved))")
        }
        if error.code == ENODEV, Endpoint.tcpHostAndPort(endpoint) != nil {
            throw ZMQError("zmq_bind", "\(endpoint) (not an address, interface or resolvable name of this host; tcp://*:PORT listens on every interface)")
        }
        throw error
    }

    /// Connects to `endpoint`; a wildcard tcp:// host (as the binding side writes it) means this host.
    public func connect(_ endpoint: String) throws {
        let target = Endpoint.connectable(endpoint)
        guard zmq_connect(raw, target) == 0 else { throw ZMQError("zmq_connect", target) }
    }

    /// Sends `frames` as one multipart message, copying each into a `MessageBuffer` first.
    @discardableResult
    public func send(_ frames: [Data], dontWait: Bool = false) throws -> Bool {
        try send(buffers: frames.map(MessageBuffer.init(copying:)), dontWait: dontWait)
    }

    /// Sends `buffers` as one multipart message without copying: libzmq's I/O thread reads each
    /// buffer in place and releases it when sent. Returns false when `dontWait` and the peer's queue
    /// is full (nothing was sent).
    @discardableResult
    public func send(buffers: [MessageBuffer], dontWait: Bool = false) throws -> Bool {
        let release: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
            if let hint { Unmanaged<MessageBuffer>.fromOpaque(hint).release() }
        }
        drained = false
        for (i, buffer) in buffers.enumerated() {
            var message = zmq_msg_t()
            let owner = Unmanaged.passRetained(buffer)
            guard zmq_msg_init_data(&message, buffer.base, buffer.count, release, owner.toOpaque()) == 0 else {
                owner.release()
                throw ZMQError("zmq_msg_init_data")
            }
            var flags: Int32 = i < buffers.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            if zmq_msg_send(&message, raw, flags) < 0 {
                let error = ZMQError("zmq_msg_send")
                zmq_msg_close(&message)  // releases the buffer
                if error.code == EAGAIN && i == 0 { return false }
                throw error
            }
        }
        return true
    }

    /// Waits up to `timeoutMs` (-1: forever) for a message and returns its frames, or nil on timeout.
    /// Frames alias libzmq's buffers (no copy) and free them when the `Data` goes.
    public func receive(timeoutMs: Int = -1) throws -> [Data]? {
        // Without a wait, no `poll` first: a busy consumer looks after every batch. On a drained
        // socket whose descriptor shows nothing new, one system call says nothing waits; otherwise a
        // non-blocking zmq_msg_recv (its mailbox check and process-id check) takes the message.
        let dontWait = timeoutMs == 0
        if dontWait && quietSinceDrained { return nil }
        if !dontWait { guard try poll(timeoutMs: timeoutMs) else { return nil } }
        var frames: [Data] = []
        repeat {
            let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(message)
            if zmq_msg_recv(message, raw, dontWait && frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
                let error = ZMQError("zmq_msg_recv")
                zmq_msg_close(message)
                message.deallocate()
                if error.code == EAGAIN && frames.isEmpty {
                    drained = true
                    return nil
                }
                throw error
            }
            let size = zmq_msg_size(message)
            if size == 0 {
                frames.append(Data())
                zmq_msg_close(message)
                message.deallocate()
            } else {
                frames.append(Data(bytesNoCopy: zmq_msg_data(message), count: size, deallocator: .custom { _, _ in
                    zmq_msg_close(message)
                    message.deallocate()
                }))
            }
        } while hasMore
        drained = false  // more may wait behind it
        return frames
    }

    private var hasMore: Bool {
        var more: Int32 = 0
        var size = MemoryLayout<Int32>.size
        zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &size)
        return more != 0
    }

    /// True when a message can be received within `timeoutMs`, or (with `descriptor`) that file
    /// descriptor became readable.
    ///
    /// It waits in poll(2) on the socket's own descriptor (ZMQ_FD) rather than in zmq_poll, which
    /// looks at the socket's mailbox before and after its wait (four system calls and two process-id
    /// checks on every wait, where a consumer woken after each batch waits once per batch). ZMQ_FD
    /// signals only commands that arrived since libzmq last processed them, so it is trusted only
    /// while `drained` holds; otherwise ZMQ_EVENTS (which processes them) is asked first, as
    /// zmq_getsockopt(3) prescribes.
    public func poll(timeoutMs: Int, orReadable descriptor: Int32? = nil) throws -> Bool {
        let deadline = timeoutMs < 0 ? nil : SharedMemory.milliseconds() + UInt64(timeoutMs)
        var fds = (pollfd(fd: try mailboxDescriptor(), events: Int16(POLLIN), revents: 0),
                   pollfd(fd: descriptor ?? -1, events: Int16(POLLIN), revents: 0))
        let count: nfds_t = descriptor == nil ? 1 : 2
        while true {
            if !drained {
                if try hasMessage() { return true }
                drained = true
            }
            let left = deadline.map { Int32(clamping: max(0, Int64(bitPattern: $0 &- SharedMemory.milliseconds()))) } ?? -1
            fds.0.revents = 0
            fds.1.revents = 0
            let n = withUnsafeMutableBytes(of: &fds) { Glibc.poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), count, left) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ZMQError("poll", "on a socket's descriptor")
            }
            if fds.0.revents != 0 { drained = false }  // commands for the socket: maybe a message
            if fds.1.revents != 0 { return true }
            if n == 0 { return false }
        }
    }

    /// The socket's mailbox descriptor (ZMQ_FD): readable when libzmq has commands for the socket.
    private func mailboxDescriptor() throws -> Int32 {
        if let fd = mailbox { return fd }
        var fd: Int32 = -1
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(raw, ZMQ_FD, &fd, &size) == 0 else { throw ZMQError("zmq_getsockopt", "ZMQ_FD") }
        mailbox = fd
        return fd
    }

    /// ZMQ_EVENTS: processes the socket's pending commands, then says whether a message waits.
    private func hasMessage() throws -> Bool {
        var events: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard zmq_getsockopt(raw, ZMQ_EVENTS, &events, &size) == 0 else { throw ZMQError("zmq_getsockopt", "ZMQ_EVENTS") }
        return events & Int32(ZMQ_POLLIN) != 0
    }

    /// A zero-timeout receive on a drained socket whose descriptor shows no new command: nothing
    /// can be waiting, found with one system call (a zmq_msg_recv would make two).
    private var quietSinceDrained: Bool {
        guard drained, let fd = try? mailboxDescriptor() else { return false }
        var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&item, 1, 0) == 0
    }
}

/// When a socket that rarely carries anything (a control socket, in a loop that runs per batch) is
/// due a look: at most once every `milliseconds`. A look at an empty ZeroMQ socket costs a system call
/// (two after a send on it: libzmq checks its mailbox and the process id), and a busy loop would make
/// them per batch.
public struct SocketLooks {
    public let milliseconds: UInt64
    private var last: UInt64 = 0

    public init(milliseconds: UInt64 = 1) { self.milliseconds = milliseconds }

    /// True (and counted as a look) when `milliseconds` have passed since the last look.
    public mutating func due(now: UInt64 = SharedMemory.milliseconds()) -> Bool {
        guard now &- last >= milliseconds else { return false }
        last = now
        return true
    }
}

/// Bytes at a stable address for a zero-copy send: fill `base`, then hand the buffer to
/// `ZMQSocket.send(buffers:)`; it is freed when both Swift and libzmq are done with it.
public final class MessageBuffer: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let count: Int
    /// For borrowed bytes: what keeps them alive (a mapped file) until libzmq has sent them.
    private let owner: AnyObject?

    public init(count: Int) {
        self.count = count
        base = .allocate(byteCount: max(count, 1), alignment: 64)
        owner = nil
    }

    /// Bytes this buffer does not own (a shard file's mapping, for a zero-copy replay): `owner` is kept
    /// alive until libzmq is done with them, and nothing is freed.
    public init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        base = UnsafeMutableRawPointer(mutating: bytes.baseAddress!)
        count = bytes.count
        self.owner = owner
    }

    public convenience init(copying data: Data) {
        self.init(count: data.count)
        if !data.isEmpty { data.copyBytes(to: base.assumingMemoryBound(to: UInt8.self), count: data.count) }
    }

    deinit { if owner == nil { base.deallocate() } }
}
