import Foundation
#if canImport(FoundationXML)
// XMLParser lives here on Linux; on Darwin it is part of Foundation.
import FoundationXML
#endif
import Testing
@testable import SluiceDashboard

private func node(_ id: String, label: String? = nil, detail: String = "task t", state: String = "waiting",
                  href: String? = nil, progress: GraphNode.Progress? = nil) -> GraphNode {
    GraphNode(id: id, label: label ?? id, detail: detail, state: state, href: href, progress: progress)
}

private func nodes(_ ids: String...) -> [GraphNode] { ids.map { node($0) } }

private func edge(_ from: String, _ to: String, _ label: String? = nil) -> GraphEdge {
    GraphEdge(from: from, to: to, label: label)
}

private func occurrences(of needle: String, in haystack: String) -> Int {
    haystack.components(separatedBy: needle).count - 1
}

private func parsesAsXML(_ text: String) -> Bool {
    XMLParser(data: Data(text.utf8)).parse()
}

@Suite("Run graph: layered layout")
struct RunGraphLayoutTests {
    @Test("a chain is one node per layer, whatever order the nodes come in")
    func chain() {
        let layers = RunGraph.layers(nodes: nodes("c", "b", "a"), edges: [edge("a", "b"), edge("b", "c")])
        #expect(layers == [["a"], ["b"], ["c"]])
    }

    @Test("a diamond has its two branches side by side")
    func diamond() {
        let layers = RunGraph.layers(nodes: nodes("a", "b", "c", "d"),
                                     edges: [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")])
        #expect(layers == [["a"], ["b", "c"], ["d"]])
    }

    @Test("a node reached by a long and a short path sits on the long path's layer")
    func longestPath() {
        let layers = RunGraph.layers(nodes: nodes("a", "b", "c"), edges: [edge("a", "c"), edge("a", "b"), edge("b", "c")])
        #expect(layers == [["a"], ["b"], ["c"]])
    }

    @Test("a cycle does not hang and places every node exactly once")
    func cycle() {
        let pair = RunGraph.layers(nodes: nodes("a", "b"), edges: [edge("a", "b"), edge("b", "a")])
        #expect(pair.flatMap { $0 }.sorted() == ["a", "b"])

        let entered = RunGraph.layers(nodes: nodes("r", "a", "b", "c"),
                                      edges: [edge("r", "a"), edge("a", "b"), edge("b", "a"), edge("b", "c"), edge("c", "c")])
        #expect(entered.flatMap { $0 }.sorted() == ["a", "b", "c", "r"])
        #expect(entered.first == ["r"], "the only node outside the cycle without predecessors is the root")

        let svg = RunGraph.svg(nodes: nodes("a", "b"), edges: [edge("a", "b"), edge("b", "a")], title: "loop")
        #expect(occurrences(of: "<g class=\"node", in: svg) == 2)
        #expect(occurrences(of: "<path", in: svg) == 2)
    }

    @Test("edges to unknown nodes are ignored by the layout")
    func unknownEndpoints() {
        let layers = RunGraph.layers(nodes: nodes("a", "b"), edges: [edge("ghost", "a"), edge("a", "b"), edge("b", "nowhere")])
        #expect(layers == [["a"], ["b"]])
    }

    @Test("barycenter sweeps uncross x→p, y→q when the lower layer is given as [q, p]")
    func barycenter() {
        let layers = RunGraph.layers(nodes: nodes("x", "y", "q", "p"), edges: [edge("x", "p"), edge("y", "q")])
        #expect(layers == [["x", "y"], ["p", "q"]])
    }

    @Test("without edges to order by, nodes keep the order they were given")
    func stableOrder() {
        #expect(RunGraph.layers(nodes: nodes("c", "a", "b"), edges: []) == [["c", "a", "b"]])
    }

    @Test("no nodes, no layers")
    func empty() {
        #expect(RunGraph.layers(nodes: [], edges: [edge("a", "b")]).isEmpty)
    }
}

@Suite("Run graph: SVG")
struct RunGraphSVGTests {
    /// A run with a link, a hostile label, a map step with progress, a branch label and stray edges.
    static let sample: (nodes: [GraphNode], edges: [GraphEdge]) = (
        nodes: [
            node("a", href: "/ui/runs/abc"),
            node("b", label: "<script>&\"'", state: "running"),
            node("m", detail: "map ×100", state: "running",
                 progress: GraphNode.Progress(succeeded: 10, failed: 2, running: 5, total: 100)),
        ],
        edges: [edge("a", "b"), edge("a", "m", "then"), edge("ghost", "a"), edge("a", "nowhere")]
    )

    static func sampleSVG() -> String {
        RunGraph.svg(nodes: sample.nodes, edges: sample.edges, title: "order & <pay>")
    }

    @Test("one node group per node and one path per edge between known nodes")
    func counts() {
        let svg = Self.sampleSVG()
        #expect(occurrences(of: "<g class=\"node", in: svg) == 3)
        #expect(occurrences(of: "<path", in: svg) == 2, "edges to unknown nodes are skipped")
        #expect(occurrences(of: "<marker", in: svg) == 1)
        #expect(svg.contains(">then</text>"))
    }

    @Test("labels, titles and attributes are escaped")
    func escaping() {
        let svg = Self.sampleSVG()
        #expect(!svg.contains("<script>"))
        #expect(svg.contains("&lt;script&gt;&amp;&quot;&#39;"))
        #expect(svg.contains("aria-label=\"order &amp; &lt;pay&gt;\""))
        #expect(RunGraph.escape("a<b>&\"'\u{1}c") == "a&lt;b&gt;&amp;&quot;&#39;c")
    }

    @Test("ids and state classes are sanitized")
    func sanitizing() {
        let svg = RunGraph.svg(nodes: [node("a b<\"x", state: "Running <x>")], edges: [], title: "t")
        #expect(svg.contains("id=\"node-a_b__x\""))
        #expect(svg.contains("class=\"node state-running__x_\""))
    }

    @Test("a node with href is a link; one without is not")
    func links() {
        let svg = Self.sampleSVG()
        #expect(svg.contains("<a href=\"/ui/runs/abc\">"))
        #expect(occurrences(of: "<a ", in: svg) == 1)
    }

    @Test("a map step shows a progress bar and done/total")
    func progress() {
        let svg = Self.sampleSVG()
        for name in ["bar-succeeded", "bar-failed", "bar-running"] {
            #expect(occurrences(of: "class=\"\(name)\"", in: svg) == 1, "\(name)")
        }
        #expect(svg.contains("map ×100 · 12/100"))
        // m is the second box of the second row (x 232, y 128); its 168 px bar is 10% succeeded.
        #expect(svg.contains("class=\"bar-succeeded\" x=\"242\" y=\"177\" width=\"16.8\""))

        let plain = RunGraph.svg(nodes: nodes("a"), edges: [], title: "t")
        #expect(!plain.contains("bar-succeeded"))
    }

    @Test("boxes and edges sit where the layout puts them")
    func geometry() {
        let svg = RunGraph.svg(nodes: nodes("a", "b", "c", "d"),
                               edges: [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")], title: "diamond")
        // Two columns of 188 with a 28 gap, three rows of 58 with 54 gaps, 16 margins.
        #expect(svg.contains("viewBox=\"0 0 436 314\" width=\"436\" height=\"314\""))
        // a is centred over b and c: from a's bottom centre to b's top centre.
        #expect(svg.contains("d=\"M218,74 C218,101 110,101 110,128\""))
    }

    @Test("numbers have at most one decimal")
    func numbers() {
        #expect(RunGraph.format(1.0000001) == "1")
        #expect(RunGraph.format(2.25) == "2.3")
        #expect(RunGraph.format(-0.5) == "-0.5")
        #expect(RunGraph.format(0.04) == "0")
        let svg = RunGraph.svg(
            nodes: [node("m", progress: GraphNode.Progress(succeeded: 1, failed: 0, running: 0, total: 9))],
            edges: [], title: "thirds")
        #expect(svg.contains("width=\"18.7\""))
        #expect(!svg.contains(".66"))
    }

    @Test("long labels and details are truncated in the box but whole in the tooltip")
    func truncation() {
        let label = String(repeating: "l", count: 30)
        let detail = String(repeating: "d", count: 40)
        let svg = RunGraph.svg(nodes: [node("x", label: label, detail: detail)], edges: [], title: "t")
        #expect(svg.contains(">" + String(repeating: "l", count: 21) + "…</text>"))
        #expect(svg.contains(">" + String(repeating: "d", count: 27) + "…</text>"))
        #expect(svg.contains("<title>\(label)\n\(detail)\nwaiting</title>"))
    }

    @Test("the same input gives the same SVG")
    func deterministic() {
        #expect(Self.sampleSVG() == Self.sampleSVG())
    }

    @Test("the SVG is well-formed XML, also for no steps")
    func wellFormed() {
        #expect(parsesAsXML(Self.sampleSVG()))
        let empty = RunGraph.svg(nodes: [], edges: [], title: "nothing & <none>")
        #expect(empty.contains("no steps"))
        #expect(parsesAsXML(empty))
    }
}
