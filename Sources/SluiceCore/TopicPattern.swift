/// AMQP topic-exchange matching: words separated by `.`, `*` matches one
/// word, `#` matches zero or more. The in-memory broker routes events with it.
public enum TopicPattern {
    public static func matches(_ pattern: String, _ routingKey: String) -> Bool {
        let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let k = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        return match(p[...], k[...])
    }

    private static func match(_ p: ArraySlice<Substring>, _ k: ArraySlice<Substring>) -> Bool {
        guard let head = p.first else { return k.isEmpty }
        if head == "#" {
            // Zero words, or one word and try again.
            return match(p.dropFirst(), k) || (!k.isEmpty && match(p, k.dropFirst()))
        }
        guard let word = k.first else { return false }
        return (head == "*" || head == word) && match(p.dropFirst(), k.dropFirst())
    }
}
