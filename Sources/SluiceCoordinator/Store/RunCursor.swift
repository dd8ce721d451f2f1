import Foundation
import SluiceAPI
import SluiceCore
import SluiceWorkflow

extension RunPage {
    /// A page from up to `limit + 1` rows: the extra row only says there is a next page.
    init(fetched: [RunState], limit: Int) {
        var runs = fetched
        var next: String?
        if runs.count > limit {
            runs.removeLast(runs.count - limit)
            next = runs.last.map(RunCursor.make)
        }
        self.init(runs: runs, nextCursor: next)
    }
}

/// Page cursors: the last row's creation time and id, so pages stay stable
/// while runs are added.
enum RunCursor {
    static func make(_ run: RunState) -> String { "\(run.createdAt.epochMilliseconds):\(run.runID)" }

    static func parse(_ cursor: String) throws -> (createdAt: Int64, id: String) {
        guard let colon = cursor.firstIndex(of: ":"), let ms = Int64(cursor[..<colon]) else {
            throw StoreError(.invalidArgument, "invalid cursor '\(cursor)'")
        }
        return (ms, String(cursor[cursor.index(after: colon)...]))
    }
}
