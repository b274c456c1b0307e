import Foundation

extension PipelineConfig {
    /// Checks rules that join several keys; each error names the key and where its value came from.
    public func validate() throws {
        func fail(_ path: String, _ message: String) -> ConfigError {
            switch origins[path] ?? .defaultValue {
            case .file(let file, let line): return ConfigError(source: file, line: line, key: path, message: message)
            case .flag(let flag): return ConfigError(source: flag, key: path, message: message)
            case .defaultValue: return ConfigError(source: "defaults", key: path, message: message)
            }
        }
        if int("phantoms.min_side") > int("phantoms.max_side") {
            throw fail("phantoms.min_side", "must not exceed phantoms.max_side (\(int("phantoms.max_side")))")
        }
        if double("phantoms.validation_fraction") + double("phantoms.test_fraction") >= 1 {
            throw fail("phantoms.test_fraction", "phantoms.validation_fraction + phantoms.test_fraction must be below 1")
        }
        if double("split.train_fraction") + double("split.validation_fraction") > 1 + 1e-9 {
            throw fail("split.validation_fraction", "split.train_fraction + split.validation_fraction must not exceed 1")
        }
        if double("preprocess.crop_top") + double("preprocess.crop_bottom") >= 0.9 {
            throw fail("preprocess.crop_bottom", "preprocess.crop_top + preprocess.crop_bottom must leave at least 10% of the height")
        }
        if double("preprocess.crop_left") + double("preprocess.crop_right") >= 0.9 {
            throw fail("preprocess.crop_right", "preprocess.crop_left + preprocess.crop_right must leave at least 10% of the width")
        }
        if int("patches.size") > int("preprocess.size") {
            throw fail("patches.size", "patches of \(int("patches.size")) do not fit the \(int("preprocess.size"))-pixel image (preprocess.size)")
        }
        if int("patches.per_side") > 1 && int("patches.size") * int("patches.per_side") < int("preprocess.size") {
            throw fail("patches.per_side", "\(int("patches.per_side")) patches of \(int("patches.size")) leave gaps in a \(int("preprocess.size"))-pixel image")
        }
        if string("train.model") == "inception-v4" && int("patches.size") < 75 {
            throw fail("patches.size", "\(int("patches.size"))-pixel patches are too small for inception-v4, whose valid-padded reductions need at least 75 (the paper: 224): e.g. --set patches.size=96, or --profile demo-inception")
        }
        if double("augment.blur_sigma_min") > double("augment.blur_sigma_max") {
            throw fail("augment.blur_sigma_min", "must not exceed augment.blur_sigma_max")
        }
        let known = ["identity", "flip", "hflip", "vflip", "rotate", "blur"]
        let pool = strings("augment.pool")
        if pool.isEmpty { throw fail("augment.pool", "needs at least one operation") }
        for item in pool {
            let parts = item.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard known.contains(parts[0]) else {
                throw fail("augment.pool", "unknown operation '\(parts[0])' (known: \(known.joined(separator: ", ")))")
            }
            if parts.count == 2, !(Double(parts[1]).map { $0 > 0 && $0.isFinite } ?? false) {
                throw fail("augment.pool", "'\(item)': the weight after ':' must be a positive number")
            }
        }
        let male = Set(strings("dataset.male_values").map { $0.lowercased() })
        let female = Set(strings("dataset.female_values").map { $0.lowercased() })
        if let both = male.intersection(female).sorted().first {
            throw fail("dataset.female_values", "'\(both)' is also in dataset.male_values")
        }
    }

    /// The configuration as pipeline.yaml text. With `annotate`, each value set by a file or flag
    /// says where it came from; with `docs`, each key is preceded by its documentation.
    public func yaml(annotate: Bool = false, docs: Bool = false) -> String {
        var out = ""
        for section in PipelineSchema.sections {
            if docs {
                out += wrap(section.doc, prefix: "# ")
            }
            out += "\(section.name):\n"
            var openGroup: String?
            for key in section.keys {
                var components = key.path.split(separator: ".").map(String.init)
                components.removeFirst()
                var indent = "  "
                if components.count == 2 {
                    if openGroup != components[0] {
                        out += "  \(components[0]):\n"
                        openGroup = components[0]
                    }
                    indent = "    "
                } else {
                    openGroup = nil
                }
                if docs { out += wrap(key.doc, prefix: indent + "# ") }
                var line = "\(indent)\(components.last!): \(values[key.path]!)"
                if annotate, let origin = origins[key.path] {
                    switch origin {
                    case .defaultValue: break
                    case .file(let file, let l): line += "    # from \(file):\(l)"
                    case .flag(let flag): line += "    # from \(flag)"
                    }
                }
                out += line + "\n"
            }
            out += "\n"
        }
        return String(out.dropLast())
    }

    /// docs/config.md: every key, its type, default and meaning.
    public static func markdownReference() -> String {
        var out = """
            # pipeline.yaml reference

            One file configures every stage. Every key has a default; a file sets only what it changes.
            Values are checked when the file is loaded: an unknown key, a wrong type or an out-of-range
            value stops the command with the file, the line and the key. Command-line flags override the
            file, and `--set key=value` overrides any key (for example `--set split.seed=7`).

            `bonestream config show` prints the effective configuration and where each value came from;
            `bonestream config check FILE` validates a file. Without `--config`, a command reads
            `pipeline.yaml` in the working directory if there is one, else the embedded default, which
            points every stage at the synthetic phantom dataset.

            This page is generated by `bonestream config docs`; a test fails when it is out of date.

            """
        let defaults = PipelineConfig()
        for section in PipelineSchema.sections {
            out += "\n## `\(section.name)`\n\n\(section.doc)\n\n| key | type | default | meaning |\n|---|---|---|---|\n"
            for key in section.keys {
                let value = defaults.values[key.path]!.description.replacingOccurrences(of: "|", with: "\\|")
                out += "| `\(key.path)` | \(key.type.summary) | `\(value)` | \(key.doc) |\n"
            }
        }
        out += "\n## Profiles\n\n`--profile NAME` lays a named set of settings over the file; command flags and `--set` still win.\n"
        for profile in PipelineProfiles.all {
            out += "\n### `\(profile.name)`\n\n\(profile.doc)\n\n"
            out += profile.settings.map { "`\($0.0)=\($0.1)`" }.joined(separator: ", ") + "\n"
        }
        return out
    }

    /// SHA-256 of the canonical text of the given sections: equal configs give equal hashes.
    public func hash(sections names: [String]) -> String {
        hash(keys: PipelineSchema.allKeys.map(\.path).filter { path in names.contains { path.hasPrefix($0 + ".") } })
    }

    /// SHA-256 of the canonical text of the given keys.
    public func hash(keys: [String]) -> String {
        Hashing.sha256(keys.map { "\($0)=\(values[$0]!)\n" }.joined())
    }

    private func wrap(_ text: String, prefix: String, width: Int = 100) -> String {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            if !current.isEmpty && prefix.count + current.count + word.count + 1 > width {
                lines.append(current)
                current = ""
            }
            current += current.isEmpty ? String(word) : " " + word
        }
        if !current.isEmpty { lines.append(current) }
        return lines.map { prefix + $0 + "\n" }.joined()
    }
}
