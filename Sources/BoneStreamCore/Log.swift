import Foundation
import Logging

/// Logging set-up shared by the executable and the stages.
public enum Log {
    /// Routes swift-log to standard error once per process, at `level`.
    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// A logger for `label` (a stage name).
    public static func logger(_ label: String) -> Logger {
        Logger(label: "bonestream.\(label)")
    }
}
