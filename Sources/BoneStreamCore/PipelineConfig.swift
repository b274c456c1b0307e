import Foundation
import Yams

/// The effective configuration of every stage: the schema's defaults, overlaid by a pipeline.yaml,
/// overlaid by command-line flags. Every value is validated against `PipelineSchema`.
public struct PipelineConfig: Sendable {
    /// Where a value came from, for `config show` and for errors.
    public enum Origin: Sendable, Equatable {
        case defaultValue
        case file(String, line: Int)
        case flag(String)
    }

    public private(set) var values: [String: ConfigValue]
    public private(set) var origins: [String: Origin]

    /// The embedded default: every key at its schema default (the phantom dataset).
    public init() {
        values = [:]
        origins = [:]
        for key in PipelineSchema.allKeys {
            values[key.path] = key.defaultValue
            origins[key.path] = .defaultValue
        }
    }

    /// Loads `path` over the defaults.
    public static func load(path: String) throws -> PipelineConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(source: path, message: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(source: path, message: "the file is not UTF-8 text")
        }
        return try parse(yaml: text, source: path)
    }

    /// Parses YAML `text` over the defaults; `source` names it in errors.
    public static func parse(yaml text: String, source: String) throws -> PipelineConfig {
        var config = PipelineConfig()
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
            throw ConfigError(source: source, line: context.mark.line, key: duplicates.joined(separator: ", "),
                              message: "the key appears twice in the mapping that starts on this line")
        } catch let error as YamlError {
            throw ConfigError(source: source, line: PipelineConfig.line(of: error), message: "not valid YAML: \(error)")
        }
        guard let root else { return config }  // an empty file means all defaults
        guard case .mapping(let mapping) = root else {
            throw ConfigError(source: source, line: root.mark?.line,
                              message: "the top level must be a mapping of sections (phantoms:, dataset:, ...)")
        }
        try config.apply(mapping: mapping, prefix: "", source: source)
        return config
    }

    private static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        default:
            return nil
        }
    }

    private mutating func apply(mapping: Node.Mapping, prefix: String, source: String) throws {
        var seen = Set<String>()
        for (keyNode, valueNode) in mapping {
            let line = keyNode.mark?.line
            guard let name = keyNode.string, !name.isEmpty else {
                throw ConfigError(source: source, line: line, message: "a key must be plain text")
            }
            let path = prefix.isEmpty ? name : prefix + "." + name
            guard seen.insert(name).inserted else {
                throw ConfigError(source: source, line: line, key: path, message: "the key appears twice")
            }
            if let key = PipelineSchema.keysByPath[path] {
                let value = try PipelineConfig.convert(valueNode, to: key, source: source, line: line)
                values[path] = value
                origins[path] = .file(source, line: line ?? 0)
            } else if PipelineSchema.keysByPath.keys.contains(where: { $0.hasPrefix(path + ".") }) {
                guard case .mapping(let inner) = valueNode else {
                    throw ConfigError(source: source, line: line, key: path,
                                      message: "expected a mapping of keys under '\(path)'")
                }
                try apply(mapping: inner, prefix: path, source: source)
            } else {
                throw ConfigError(source: source, line: line, key: path,
                                  message: "unknown key" + PipelineConfig.suggestion(for: path))
            }
        }
    }

    private static func convert(_ node: Node, to key: ConfigKey, source: String, line: Int?) throws -> ConfigValue {
        func fail(_ got: String) -> ConfigError {
            ConfigError(source: source, line: line, key: key.path, message: "expected \(key.type.summary), got \(got)")
        }
        if case .strings = key.type {
            switch node {
            case .sequence(let sequence):
                var items: [String] = []
                for item in sequence {
                    guard case .scalar(let scalar) = item else { throw fail("a nested structure") }
                    items.append(scalar.string)
                }
                return .strings(items)
            case .scalar(let scalar):
                return .strings([scalar.string])
            default:
                throw fail("a mapping")
            }
        }
        let scalar: Node.Scalar
        switch node {
        case .scalar(let s): scalar = s
        case .mapping: throw fail("a mapping")
        default: throw fail("a list")
        }
        if scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
            throw ConfigError(source: source, line: line, key: key.path, message: "has no value (expected \(key.type.summary))")
        }
        return try convert(text: scalar.string, to: key, fail: fail)
    }

    /// Converts flag or YAML text to a validated value for `key`.
    static func convert(text: String, to key: ConfigKey, fail: (String) -> ConfigError) throws -> ConfigValue {
        let shown = "'\(text)'"
        switch key.type {
        case .int(let range):
            guard let v = Int(text.replacingOccurrences(of: "_", with: "")) else { throw fail(shown) }
            guard range.contains(v) else { throw fail("\(v), which is out of range") }
            return .int(v)
        case .double(let range):
            guard let v = Double(text), v.isFinite else { throw fail(shown) }
            guard range.contains(v) else { throw fail("\(text), which is out of range") }
            return .double(v)
        case .bool:
            switch text.lowercased() {
            case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: throw fail(shown)
            }
        case .string:
            return .string(text)
        case .choice(let options):
            guard options.contains(text) else { throw fail(shown) }
            return .string(text)
        case .strings:
            return .strings(text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
    }

    /// " (did you mean 'x'?)" for the closest known key, or "".
    static func suggestion(for path: String) -> String {
        var best: (String, Int)?
        for candidate in PipelineSchema.keysByPath.keys {
            let d = editDistance(path, candidate)
            if d <= max(2, path.count / 4), best == nil || d < best!.1 { best = (candidate, d) }
        }
        return best.map { " (did you mean '\($0.0)'?)" } ?? ""
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// Sets `path` from command-line text; `flag` names the flag in errors.
    public mutating func override(_ path: String, with text: String, flag: String) throws {
        guard let key = PipelineSchema.keysByPath[path] else {
            throw ConfigError(source: flag, key: path, message: "unknown key" + PipelineConfig.suggestion(for: path))
        }
        let value = try PipelineConfig.convert(text: text, to: key) {
            ConfigError(source: flag, key: path, message: "expected \(key.type.summary), got \($0)")
        }
        values[path] = value
        origins[path] = .flag(flag)
    }

    /// Applies `--set key=value` assignments.
    public mutating func apply(assignments: [String]) throws {
        for assignment in assignments {
            guard let eq = assignment.firstIndex(of: "=") else {
                throw ConfigError(source: "--set \(assignment)", message: "expected key=value")
            }
            let path = String(assignment[..<eq]).trimmingCharacters(in: .whitespaces)
            try override(path, with: String(assignment[assignment.index(after: eq)...]), flag: "--set \(assignment)")
        }
    }

    // MARK: typed access (an unknown key here is a programming error)

    private func value(_ path: String) -> ConfigValue {
        guard let value = values[path] else { preconditionFailure("no configuration key '\(path)' in PipelineSchema") }
        return value
    }

    public func int(_ path: String) -> Int {
        guard case .int(let v) = value(path) else { preconditionFailure("\(path) is not an integer key") }
        return v
    }

    public func double(_ path: String) -> Double {
        guard case .double(let v) = value(path) else { preconditionFailure("\(path) is not a number key") }
        return v
    }

    public func bool(_ path: String) -> Bool {
        guard case .bool(let v) = value(path) else { preconditionFailure("\(path) is not a boolean key") }
        return v
    }

    public func string(_ path: String) -> String {
        guard case .string(let v) = value(path) else { preconditionFailure("\(path) is not a text key") }
        return v
    }

    public func strings(_ path: String) -> [String] {
        guard case .strings(let v) = value(path) else { preconditionFailure("\(path) is not a list key") }
        return v
    }
}
