// `bonestream report RUN_DIR`: one self-contained HTML page (inline SVG, no scripts, no external
// files) from a run folder's config.yaml, metrics.jsonl and predictions CSV.
import BoneStreamCore
import Foundation

public enum RunReport {
    /// Writes RUN_DIR/report.html atomically and returns its path.
    @discardableResult
    public static func write(runDirectory: String) throws -> String {
        let html = try render(runDirectory: runDirectory)
        let path = runDirectory + "/report.html"
        try AtomicFile.write(html, to: path)
        return path
    }

    public static func render(runDirectory dir: String) throws -> String {
        let metricsPath = dir + "/metrics.jsonl"
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else {
            throw TrainError("\(metricsPath): missing; is \(dir) a run folder (train.out) with at least one finished epoch?")
        }
        var epochs: [EpochMetrics] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let metrics = try? JSONDecoder().decode(EpochMetrics.self, from: Data(line.utf8)) else {
                throw TrainError("\(metricsPath), line \(n + 1): not an epoch's metrics")
            }
            epochs.append(metrics)
        }
        let config = (try? String(contentsOfFile: dir + "/config.yaml", encoding: .utf8)) ?? "(config.yaml missing)"
        var split = "test", rows: [PredictionRow] = []
        for candidate in ["test", "validation"] where FileManager.default.fileExists(atPath: "\(dir)/\(candidate)-predictions.csv") {
            split = candidate
            rows = try PredictionRow.read(path: "\(dir)/\(candidate)-predictions.csv")
            break
        }

        var body = "<h1>BoneStream run: \(escape(dir))</h1>\n"
        let best = epochs.last { $0.best }
        body += "<p>\(epochs.count) epoch(s)"
        if let best {
            body += String(format: "; best epoch %d (train loss %.4g", best.epoch, best.trainLoss)
            if let v = best.valLoss, let m = best.valMAEMedian { body += String(format: ", validation loss %.4g, validation MAE %.2f months by median", v, m) }
            body += ")"
        }
        body += String(format: "; %.0f s of training.</p>\n", epochs.reduce(0) { $0 + $1.seconds })

        body += "<h2>Loss</h2>\n" + lineChart([
            ("train loss", "#1f77b4", epochs.map { (Double($0.epoch), $0.trainLoss) }),
            ("validation loss", "#ff7f0e", epochs.compactMap { m in m.valLoss.map { (Double(m.epoch), $0) } }),
        ], xLabel: "epoch", yLabel: "loss")
        body += "<h2>Validation MAE</h2>\n" + lineChart([
            ("per patch", "#2ca02c", epochs.compactMap { m in m.valMAEPatch.map { (Double(m.epoch), $0) } }),
            ("median of patches", "#d62728", epochs.compactMap { m in m.valMAEMedian.map { (Double(m.epoch), $0) } }),
        ], xLabel: "epoch", yLabel: "months")

        let known = rows.filter { $0.age != nil }
        if !known.isEmpty {
            let evaluation = Evaluation(rows: known, trainMean: known.map { $0.age! }.reduce(0, +) / Double(known.count))
            body += "<h2>Predicted vs true (\(split) split, \(known.count) images)</h2>\n"
            body += String(format: "<p>MAE %.2f months by median of patches, RMSE %.2f.</p>\n", evaluation.maeMedian, evaluation.rmse)
            body += scatter(known.map { ($0.age!, $0.median) })
            body += "<h2>MAE by sex and by age band</h2>\n<table><tr><th>group</th><th>images</th><th>MAE (months)</th></tr>\n"
            for group in evaluation.bySex + evaluation.byAge where group.count > 0 {
                body += String(format: "<tr><td>%@</td><td>%d</td><td>%.2f</td></tr>\n", group.name, group.count, group.mae)
            }
            body += "</table>\n<h2>Worst images</h2>\n<table><tr><th>image</th><th>sex</th><th>true</th><th>predicted (median)</th><th>patch range</th><th>error</th></tr>\n"
            for row in known.sorted(by: { abs($0.error!) > abs($1.error!) }).prefix(10) {
                body += String(format: "<tr><td>%d</td><td>%@</td><td>%.1f</td><td>%.1f</td><td>%.1f-%.1f</td><td>%+.1f</td></tr>\n", row.index,
                               row.male.map { $0 ? "M" : "F" } ?? "?", row.age!, row.median, Double(row.patches.first!), Double(row.patches.last!), row.error!)
            }
            body += "</table>\n"
        } else {
            body += "<p>No predictions yet: run <code>bonestream evaluate</code> to add the test split's.</p>\n"
        }
        body += "<h2>Epochs</h2>\n<table><tr><th>epoch</th><th>train loss</th><th>val loss</th><th>val MAE / patch</th><th>val MAE / median</th><th>patches/s</th><th>input wait</th><th>seconds</th></tr>\n"
        for m in epochs {
            func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "-" }
            body += "<tr><td>\(m.epoch)\(m.best ? " *" : "")</td><td>\(f(m.trainLoss, "%.4g"))</td><td>\(f(m.valLoss, "%.4g"))</td>"
                + "<td>\(f(m.valMAEPatch, "%.2f"))</td><td>\(f(m.valMAEMedian, "%.2f"))</td><td>\(f(m.patchesPerSecond, "%.0f"))</td>"
                + "<td>\(f(100 * m.inputWait, "%.1f%%"))</td><td>\(f(m.seconds, "%.1f"))</td></tr>\n"
        }
        body += "</table>\n<h2>Configuration</h2>\n<pre>\(escape(config))</pre>\n"
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>BoneStream run report</title>
            <style>
            body { font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; color: #222; }
            table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
            th { background: #f4f4f4; } pre { background: #f8f8f8; padding: 1em; font-size: 12px; overflow-x: auto; }
            svg text { font-size: 12px; font-family: system-ui, sans-serif; }
            </style></head><body>
            \(body)</body></html>

            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Axis ticks: about five round numbers covering low...high.
    static func ticks(_ low: Double, _ high: Double) -> [Double] {
        let span = max(high - low, 1e-9), raw = span / 5, magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var out: [Double] = [], v = (low / step).rounded(.up) * step
        while v <= high + 1e-9 { out.append(v); v += step }
        return out
    }

    struct Frame {
        let width = 720.0, height = 300.0, left = 60.0, right = 150.0, top = 15.0, bottom = 40.0
        let x: ClosedRange<Double>, y: ClosedRange<Double>
        func px(_ v: Double) -> Double { left + (v - x.lowerBound) / max(x.upperBound - x.lowerBound, 1e-9) * (width - left - right) }
        func py(_ v: Double) -> Double { height - bottom - (v - y.lowerBound) / max(y.upperBound - y.lowerBound, 1e-9) * (height - top - bottom) }

        func axes(xLabel: String, yLabel: String) -> String {
            var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">\n"
            s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width - left - right)\" height=\"\(height - top - bottom)\" fill=\"none\" stroke=\"#999\"/>\n"
            for t in RunReport.ticks(x.lowerBound, x.upperBound) {
                s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
                            px(t), top, px(t), height - bottom, px(t), height - bottom + 15, label(t))
            }
            for t in RunReport.ticks(y.lowerBound, y.upperBound) {
                s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n",
                            left, py(t), width - right, py(t), left - 5, py(t) + 4, label(t))
            }
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", (left + width - right) / 2, height - 5, xLabel)
            s += String(format: "<text x=\"12\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 12 %.1f)\">%@</text>\n",
                        (top + height - bottom) / 2, (top + height - bottom) / 2, yLabel)
            return s
        }

        func label(_ v: Double) -> String { abs(v) >= 1000 || v == v.rounded() ? String(format: "%.0f", v) : String(format: "%.3g", v) }
    }

    static func lineChart(_ series: [(String, String, [(Double, Double)])], xLabel: String, yLabel: String) -> String {
        let points = series.flatMap(\.2)
        guard !points.isEmpty else { return "<p>(no data)</p>\n" }
        let xs = points.map(\.0), ys = points.map(\.1)
        let frame = Frame(x: min(xs.min()!, 1)...max(xs.max()!, 2), y: min(0, ys.min()!)...(ys.max()! * 1.05 + 1e-9))
        var s = frame.axes(xLabel: xLabel, yLabel: yLabel)
        for (i, (name, color, data)) in series.enumerated() where !data.isEmpty {
            let path = data.map { String(format: "%.1f,%.1f", frame.px($0.0), frame.py($0.1)) }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in data { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>\n", frame.px(p.0), frame.py(p.1), color) }
            let ly = frame.top + 15 + Double(i) * 18
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\" stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">%@</text>\n",
                        frame.width - frame.right + 10, ly, frame.width - frame.right + 30, ly, color, frame.width - frame.right + 35, ly + 4, name)
        }
        return s + "</svg>\n"
    }

    static func scatter(_ points: [(Double, Double)]) -> String {
        let values = points.flatMap { [$0.0, $0.1] }
        let low = min(0, values.min()!), high = values.max()! * 1.05 + 1e-9
        let frame = Frame(x: low...high, y: low...high)
        var s = frame.axes(xLabel: "true bone age (months)", yLabel: "predicted (months)")
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
                    frame.px(low), frame.py(low), frame.px(high), frame.py(high))
        for p in points { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#1f77b4\" fill-opacity=\"0.6\"/>\n", frame.px(p.0), frame.py(p.1)) }
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\">y = x</text>\n", frame.width - frame.right + 10, frame.top + 15)
        return s + "</svg>\n"
    }
}
