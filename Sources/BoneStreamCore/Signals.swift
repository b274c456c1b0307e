import Foundation

/// SIGTERM and SIGINT as a flag a daemon's loop polls: the loop finishes what it holds and exits
/// cleanly, as `stop` would.
public enum StopSignal {
    nonisolated(unsafe) private static var raised: sig_atomic_t = 0

    /// Installs the handlers (once per process).
    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.raised = 1 }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
    }

    public static var isRaised: Bool { raised != 0 }
}
