import Foundation
import Synchronization

/// The terminal in full-screen mode: the alternate screen, no cursor, keys
/// read one at a time without echo. `leave` puts everything back.
final class Screen: @unchecked Sendable {
    private var saved = termios()
    private var rawMode = false

    var width: Int {
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 120
    }

    func enter() {
        if isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 {
            var raw = saved
            raw.c_lflag &= ~tcflag_t(ICANON | ECHO)  // ISIG stays: Ctrl-C still signals
            withUnsafeMutableBytes(of: &raw.c_cc) { cc in
                cc[Int(VMIN)] = 1
                cc[Int(VTIME)] = 0
            }
            rawMode = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0
        }
        emit("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J")
    }

    func draw(_ lines: [String]) {
        emit("\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\r\n") + "\u{1B}[J")
    }

    func leave() {
        emit("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l")
        if rawMode { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }

    private func emit(_ s: String) {
        let bytes = Array(s.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if n <= 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }
}

/// Reads keys on a thread of its own; `q` asks to quit.
final class KeyReader: Sendable {
    private let quitRequested = Atomic<Bool>(false)

    init() {
        let thread = Thread { [self] in
            var byte: UInt8 = 0
            while true {
                let n = read(STDIN_FILENO, &byte, 1)
                if n == 0 { return }  // no terminal input (end of file): only signals stop top
                if n < 0 { if errno == EINTR { continue }; return }
                if byte == UInt8(ascii: "q") || byte == UInt8(ascii: "Q") { self.quitRequested.store(true, ordering: .relaxed) }
            }
        }
        thread.start()
    }

    /// True if `q` was pressed, waiting at most `timeout`.
    func waitForQuit(timeout: Duration) async -> Bool {
        let until = ContinuousClock.now + timeout
        while ContinuousClock.now < until {
            if quitRequested.load(ordering: .relaxed) { return true }
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return false }  // cancelled: Ctrl-C
        }
        return quitRequested.load(ordering: .relaxed)
    }
}
