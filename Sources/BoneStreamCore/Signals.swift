import Foundation

/// SIGTERM and SIGINT as a flag a daemon's loop polls: the loop finishes what it holds and exits
/// cleanly, as `stop` would. A second one while it drains (a second Ctrl-C) exits at once with status
/// 128 + signal, as a kill would: every daemon is safe to kill (the consumer drops duplicates, workers
/// leave with their parent, a trainer resumes from its checkpoint, a recorder from its manifest).
public enum StopSignal {
    nonisolated(unsafe) private static var raised: sig_atomic_t = 0
    /// CLOCK_MONOTONIC nanoseconds of the first signal.
    nonisolated(unsafe) private static var firstAt: Int64 = 0

    /// Installs the handlers (once per process).
    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            // Only async-signal-safe calls here: clock_gettime(2), write(2) and _exit(2).
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let nanoseconds = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
            if StopSignal.raised != 0 {
                // The same stop delivered twice is not a second one: timeout(1) signals its child,
                // then the child's process group; a person's second Ctrl-C comes later than this.
                if nanoseconds - StopSignal.firstAt < 250_000_000 { return }
                let message: StaticString = "second stop signal: exiting now\n"
                _ = write(STDERR_FILENO, message.utf8Start, message.utf8CodeUnitCount)
                _exit(128 + signal)
            }
            StopSignal.firstAt = nanoseconds
            StopSignal.raised = 1
        }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        // A parent may have started this process with the signals blocked (a child inherits its
        // parent's mask; test runners and some supervisors block them): unblock them here, so a
        // stop request is never left pending.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    public static var isRaised: Bool { raised != 0 }
}
