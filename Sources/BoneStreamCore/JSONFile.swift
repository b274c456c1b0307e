import Foundation

/// The JSON form of manifests: pretty, keys sorted (so equal values give equal bytes), newline-terminated.
public enum JSONFile {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(value)
        data.append(0x0A)
        return data
    }
}
