import BoneStreamCore
import Foundation

/// normalize's manifest.json, written after the tables: the sha256 of each output file and the row
/// counts. A later stage checks the tables against it, so a set mixed from two runs is caught.
public struct TablesManifest: Codable, Sendable, Equatable {
    public static let fileName = "manifest.json"

    public var tables: [String: String]
    public var rows: [String: Int]
    public var kept: [String: Int]
    public var rejected: Int

    public init(tables: [String: String], rows: [String: Int], kept: [String: Int], rejected: Int) {
        self.tables = tables
        self.rows = rows
        self.kept = kept
        self.rejected = rejected
    }

    public func json() throws -> Data { try JSONFile.encode(self) }

    /// Reads the manifest in `directory` and checks each listed table's hash.
    public static func verify(directory: String) throws -> TablesManifest {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TableError(file: path, line: nil, reason: "missing: run `bonestream normalize` first")
        }
        let manifest: TablesManifest
        do {
            manifest = try JSONDecoder().decode(TablesManifest.self, from: data)
        } catch {
            throw TableError(file: path, line: nil, reason: "unreadable manifest: \(error)")
        }
        for (name, expected) in manifest.tables.sorted(by: { $0.key < $1.key }) {
            let table = directory + "/" + name
            let actual = try Hashing.sha256(fileAt: table)
            guard actual == expected else {
                throw TableError(file: table, line: nil, reason: "sha256 \(actual) differs from the manifest's \(expected): the tables come from different runs or were edited; rerun `bonestream normalize`")
            }
        }
        return manifest
    }
}
