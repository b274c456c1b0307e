/// A configuration value after validation.
public enum ConfigValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case strings([String])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return v ? "true" : "false"
        case .string(let v): return ConfigValue.yamlScalar(v)
        case .strings(let v): return "[" + v.map(ConfigValue.yamlScalar).joined(separator: ", ") + "]"
        }
    }

    /// `text` as a YAML scalar, quoted when a plain scalar would read as something else.
    static func yamlScalar(_ text: String) -> String {
        let plain = !text.isEmpty
            && text.allSatisfy { $0.isLetter || $0.isNumber || "_./-".contains($0) }
            && !["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"].contains(text.lowercased())
            && Double(text) == nil && Int(text) == nil
            && !text.hasPrefix("-")
        if plain { return text }
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\t": escaped += "\\t"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return "\"" + escaped + "\""
    }
}

/// What a key accepts.
public enum ConfigType: Sendable, Equatable {
    case int(ClosedRange<Int>)
    case double(ClosedRange<Double>)
    case bool
    case string
    case choice([String])
    case strings

    /// Human text for docs and errors.
    public var summary: String {
        switch self {
        case .int(let r): return "integer in \(r.lowerBound)...\(r.upperBound)"
        case .double(let r): return "number in \(r.lowerBound)...\(r.upperBound)"
        case .bool: return "true or false"
        case .string: return "text"
        case .choice(let options): return "one of " + options.joined(separator: ", ")
        case .strings: return "list of text"
        }
    }
}

/// One documented configuration key with its default.
public struct ConfigKey: Sendable {
    /// Dotted path, such as `split.seed`.
    public let path: String
    public let type: ConfigType
    public let defaultValue: ConfigValue
    public let doc: String

    public init(_ path: String, _ type: ConfigType, _ defaultValue: ConfigValue, _ doc: String) {
        self.path = path
        self.type = type
        self.defaultValue = defaultValue
        self.doc = doc
    }
}

/// A top-level section of pipeline.yaml: the keys one stage reads.
public struct ConfigSection: Sendable {
    public let name: String
    public let doc: String
    public let keys: [ConfigKey]
}
