import Foundation
import Logging

/// Progress of a long job: a redrawn bar with rate and ETA on a terminal, a log line every few
/// seconds otherwise (CI logs, files). Safe to call from several threads.
public final class Progress: @unchecked Sendable {
    private let label: String
    private let unit: String
    private let total: Int
    private let start = Date()
    private let lock = NSLock()
    public private(set) var done = 0
    private var lastDraw = Date()
    private let interactive: Bool
    private let interval: TimeInterval
    private let logger: Logger
    private let enabled: Bool

    /// - Parameters:
    ///   - label: what is being done ("phantoms", "normalize").
    ///   - unit: what is counted ("images").
    ///   - total: the number expected.
    ///   - enabled: false silences it (tests).
    public init(label: String, unit: String, total: Int, logger: Logger, enabled: Bool = true) {
        self.label = label
        self.unit = unit
        self.total = max(total, 0)
        self.logger = logger
        self.enabled = enabled
        interactive = isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil
        interval = interactive ? 0.1 : 5
    }

    /// Counts `count` more units done.
    public func advance(by count: Int = 1) {
        lock.lock()
        defer { lock.unlock() }
        done += count
        let now = Date()
        if enabled && (now.timeIntervalSince(lastDraw) >= interval) {
            lastDraw = now
            draw(now: now, final: false)
        }
    }

    /// Draws the final state and ends the line.
    public func finish() {
        lock.lock()
        defer { lock.unlock() }
        if enabled { draw(now: Date(), final: true) }
    }

    /// Seconds since the job started.
    public var elapsed: TimeInterval { Date().timeIntervalSince(start) }

    private func draw(now: Date, final: Bool) {
        let seconds = max(now.timeIntervalSince(start), 1e-9)
        let rate = Double(done) / seconds
        let remaining = rate > 0 ? Double(total - done) / rate : .infinity
        let rateText = String(format: "%.1f %@/s", rate, unit)
        let etaText = final ? "done in \(Progress.duration(seconds))" : "ETA \(Progress.duration(remaining))"
        if interactive {
            let width = 30
            let filled = total > 0 ? min(width, done * width / total) : width
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let text = "\r\(label) [\(bar)] \(done)/\(total) \(rateText) \(etaText)\u{1B}[K"
            FileHandle.standardError.write(Data((final ? text + "\n" : text).utf8))
        } else {
            logger.info("\(label): \(done)/\(total) \(unit), \(rateText), \(etaText)")
        }
    }

    /// "1h02m", "3m05s", "12.3s".
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--" }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        let s = Int(seconds.rounded())
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}

/// Progress of a job of unknown length (a daemon's stream): a line every `every` seconds with the rate
/// since the previous one. Feed it the running count; it says when a line is due.
public struct RateLines: Sendable {
    public let every: Duration
    private var last: (time: ContinuousClock.Instant, count: Int)?

    public init(everySeconds: Double) { every = .milliseconds(Int(everySeconds * 1000)) }

    /// The rate (units per second) since the previous line when a line is due, else nil. The first
    /// call starts the clock, so time spent waiting for the first unit does not count.
    public mutating func due(count: Int, now: ContinuousClock.Instant = .now) -> Double? {
        guard let last else {
            self.last = (now, count)
            return nil
        }
        let elapsed = now - last.time
        guard elapsed >= every else { return nil }
        self.last = (now, count)
        return Double(count - last.count) / (Double(elapsed / .milliseconds(1)) / 1000)
    }
}
