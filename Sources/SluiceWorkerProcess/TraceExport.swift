/// Whether trace spans are to be exported over OTLP: asked for by
/// `--otel-endpoint` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables, turned off by
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. `sluice`
/// exports them; `sluice-worker` cannot, so a worker asked for them stays in
/// `sluice`.
public enum TraceExport {
    /// Asked for at all, even if the environment then turns it off.
    public static func isAsked(endpoint: String?) -> Bool {
        endpoint != nil || Environment.value("OTEL_EXPORTER_OTLP_ENDPOINT") != nil
            || Environment.value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != nil
    }

    /// Asked for and not turned off.
    public static func isEnabled(endpoint: String?) -> Bool {
        if Environment.value("OTEL_SDK_DISABLED")?.lowercased() == "true" || Environment.value("OTEL_TRACES_EXPORTER")?.lowercased() == "none" {
            return false
        }
        return isAsked(endpoint: endpoint)
    }
}
