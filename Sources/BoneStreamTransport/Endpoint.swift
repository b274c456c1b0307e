// Endpoints as users write them in pipeline.yaml, made valid for the side that uses them. One file
// serves every host: the side that binds may name all interfaces (tcp://*:5555) or its own host name
// (tcp://trainer:5555); the sides that connect need a host they can reach.
import Foundation

public enum Endpoint {
    /// The host and port of a tcp:// endpoint (an IPv6 host without its brackets); nil for ipc://,
    /// inproc:// and tcp:// endpoints with a source part (`tcp://eth0;host:port`), which pass unchanged.
    public static func tcpHostAndPort(_ endpoint: String) -> (host: String, port: String)? {
        guard endpoint.hasPrefix("tcp://"), !endpoint.contains(";") else { return nil }
        let address = endpoint.dropFirst("tcp://".count)
        guard let colon = address.lastIndex(of: ":") else { return nil }
        var host = String(address[..<colon])
        let port = String(address[address.index(after: colon)...])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// A host that means "every interface": valid to bind, never to connect to.
    public static func isWildcard(_ host: String) -> Bool { ["*", "0.0.0.0", "::", "::0"].contains(host) }

    private static func tcp(_ host: String, _ port: String) -> String { host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)" }

    /// The endpoint to connect to: a wildcard host becomes `reachedHost` (the host this process
    /// already reaches the binding side at), else the loopback address, as the binding side is then
    /// on this host. Anything else is returned unchanged.
    public static func connectable(_ endpoint: String, reachedHost: String? = nil) -> String {
        guard let (host, port) = tcpHostAndPort(endpoint), isWildcard(host) else { return endpoint }
        if let reachedHost, !isWildcard(reachedHost) { return tcp(reachedHost, port) }
        return tcp(host.contains(":") ? "::1" : "127.0.0.1", port)
    }

    /// The data endpoint as a worker should connect to it, learnt from the coordinator it reached at
    /// `control`: a wildcard host there means the consumer listens on the coordinator's host.
    public static func connectable(_ data: String, reachedVia control: String) -> String {
        connectable(data, reachedHost: tcpHostAndPort(connectable(control))?.host)
    }

    /// libzmq binds tcp:// to addresses and interface names only: a host name (tcp://trainer:5555, as
    /// the workers connect to it) becomes the first address it resolves to. nil when `endpoint` is not
    /// a tcp:// endpoint with a host name, or the name does not resolve.
    public static func resolvedForBinding(_ endpoint: String) -> String? {
        guard let (host, port) = tcpHostAndPort(endpoint), !isWildcard(host), !host.isEmpty else { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &found) == 0, let first = found else { return nil }
        defer { freeaddrinfo(found) }
        var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(first.pointee.ai_addr, first.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        let address = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return address == host ? nil : tcp(address, port)
    }

    /// A TCP port on the loopback interface that nobody listens on now (the kernel's pick for port 0),
    /// for benchmarks and tests that need a tcp:// endpoint of their own.
    public static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ZMQError("socket", "AF_INET") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw ZMQError("bind", "tcp://127.0.0.1:0") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
