/// A configuration problem, located at a file and line where there is one.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// The file, or the flag, the bad value came from.
    public let source: String
    public let line: Int?
    public let key: String?
    public let message: String

    public init(source: String, line: Int? = nil, key: String? = nil, message: String) {
        self.source = source
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = source
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}
