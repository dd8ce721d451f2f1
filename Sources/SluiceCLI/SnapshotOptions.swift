import ArgumentParser
import SluiceMonitor

/// How `sluice queues` and `sluice workers` print: once or refreshed, as a
/// table or as JSON, with colours or without.
struct SnapshotOptions: ParsableArguments {
    @Flag(help: "Refresh until Ctrl-C.")
    var watch = false
    @Flag(help: "Print JSON (with --watch: one object per line).")
    var json = false
    @Flag(help: "No colours.")
    var noColor = false

    var palette: Rendering.Palette { noColor ? Rendering.Palette(enabled: false) : .automatic }
}
