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
}
