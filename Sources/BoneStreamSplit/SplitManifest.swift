import BoneStreamCore
import BoneStreamDataset
import Foundation

/// split-manifest.json: what went in (table hashes, settings hash) and what came out (counts per
/// split, sex and age bin).
public struct SplitManifest: Codable, Sendable, Equatable {
    public struct AgeBin: Codable, Sendable, Equatable {
        public var fromMonths: Double
        public var toMonths: Double
        public var count: Int

        enum CodingKeys: String, CodingKey {
            case fromMonths = "from_months", toMonths = "to_months", count
        }
    }

    public struct Counts: Codable, Sendable, Equatable {
        public var name: String
        public var count: Int
        public var male: Int
        public var female: Int
        public var ageBins: [AgeBin]

        enum CodingKeys: String, CodingKey {
            case name, count, male, female, ageBins = "age_bins"
        }

        init(name: String, rows: [CanonicalRow], ageBin: Double) {
            self.name = name
            count = rows.count
            male = rows.filter(\.male).count
            female = count - male
            var bins: [Int: Int] = [:]
            for row in rows { bins[Int(row.boneage / ageBin), default: 0] += 1 }
            ageBins = bins.keys.sorted().map { AgeBin(fromMonths: Double($0) * ageBin, toMonths: Double($0 + 1) * ageBin, count: bins[$0]!) }
        }
    }

    public var mode: String
    public var seed: Int
    public var configSHA256: String
    /// Canonical table file name -> sha256.
    public var inputs: [String: String]
    public var splits: [Counts]

    enum CodingKeys: String, CodingKey {
        case mode, seed, configSHA256 = "config_sha256", inputs, splits
    }

    public func json() throws -> Data { try JSONFile.encode(self) }
}
