// A workflow run's steps drawn as an SVG on the server, so the dashboard
// needs no JavaScript: nodes in layers from the roots down, edges as curves.

/// A node of the graph: one workflow step.
struct GraphNode: Sendable, Hashable {
    var id: String            // step id, unique
    var label: String         // first line (the step id)
    var detail: String        // second line, small (e.g. "task charge.card", "map ×1000", "join", "wait 5m")
    var state: String         // CSS class suffix (waiting, ready, running, succeeded, failed, ...); sanitized to [a-z_-]
    var href: String?         // link target for the node; nil: no link
    var progress: Progress?   // map steps: element counts

    struct Progress: Sendable, Hashable {
        var succeeded: Int
        var failed: Int
        var running: Int
        var total: Int
    }
}

struct GraphEdge: Sendable, Hashable {
    var from: String
    var to: String
    var label: String?        // e.g. "then" / "else" for branch edges; nil for plain `after` edges
}

enum RunGraph {
    // Geometry, in px.
    static let nodeWidth = 188.0
    static let nodeHeight = 58.0
    static let gapX = 28.0
    static let gapY = 54.0
    static let margin = 16.0
    static let labelLimit = 22
    static let detailLimit = 28

    /// The layered layout: each node's layer (longest path from a root) and its position within the layer.
    static func layers(nodes: [GraphNode], edges: [GraphEdge]) -> [[String]] {
        let layout = Layout(nodes: nodes, edges: edges)
        return layout.layers.map { layer in layer.map { layout.nodes[$0].id } }
    }

    /// The whole `<svg>` element as text.
    static func svg(nodes: [GraphNode], edges: [GraphEdge], title: String) -> String {
        let layout = Layout(nodes: nodes, edges: edges)
        guard !layout.layers.isEmpty else { return emptySVG(title: title) }

        let widest = Double(layout.layers.map(\.count).max() ?? 1)
        let contentWidth = widest * nodeWidth + (widest - 1) * gapX
        let rows = Double(layout.layers.count)
        let width = contentWidth + 2 * margin
        let height = rows * nodeHeight + (rows - 1) * gapY + 2 * margin

        // Top-left corner of each node's box; each layer centred within the widest.
        var origin = [Point](repeating: Point(x: 0, y: 0), count: layout.nodes.count)
        for (row, layer) in layout.layers.enumerated() {
            let count = Double(layer.count)
            let left = margin + (contentWidth - (count * nodeWidth + (count - 1) * gapX)) / 2
            for (column, node) in layer.enumerated() {
                origin[node] = Point(x: left + Double(column) * (nodeWidth + gapX),
                                     y: margin + Double(row) * (nodeHeight + gapY))
            }
        }

        // The marker id must be unique on a page that shows several graphs.
        let marker = "arrow-" + shortHash(title)
        var lines = [openingTag(width: width, height: height, title: title)]
        lines.append(##"<defs><marker id="\##(marker)" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><polygon points="0,0 10,5 0,10" fill="#888"/></marker></defs>"##)
        // Edges first, so the boxes cover their ends.
        for edge in layout.edges {
            lines.append(edgeSVG(from: origin[edge.from], to: origin[edge.to], label: edge.label, marker: marker))
        }
        for (index, node) in layout.nodes.enumerated() {
            lines.append(nodeSVG(node, at: origin[index]))
        }
        lines.append("</svg>")
        return lines.joined(separator: "\n")
    }

    /// `s` safe as XML text or attribute value (the pages' one escape).
    static func escape(_ s: String) -> String { HTML.escape(s) }

    /// A coordinate as text: an integer or one decimal, so the SVG carries no float noise.
    static func format(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e12 else { return "0" }
        let tenths = Int((value * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        let magnitude = abs(tenths)
        return magnitude % 10 == 0 ? "\(sign)\(magnitude / 10)" : "\(sign)\(magnitude / 10).\(magnitude % 10)"
    }

    static func truncate(_ s: String, to limit: Int) -> String {
        s.count <= limit ? s : String(s.prefix(max(limit - 1, 0))) + "…"
    }

    /// `s` with every character outside `allowed` replaced by "_", for id and class names.
    static func sanitize(_ s: String, allowed: (Unicode.Scalar) -> Bool) -> String {
        let underscore: Unicode.Scalar = "_"
        var out = ""
        for scalar in s.unicodeScalars { out.unicodeScalars.append(allowed(scalar) ? scalar : underscore) }
        return out
    }

    static func isIDCharacter(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x2D, 0x5F: true   // 0-9 A-Z a-z - _
        default: false
        }
    }

    static func isStateCharacter(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x61...0x7A, 0x2D, 0x5F: true   // a-z - _
        default: false
        }
    }

    /// FNV-1a of the title: stable across processes, unlike `hashValue`.
    static func shortHash(_ s: String) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in s.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return String(hash, radix: 16)
    }

    private static func openingTag(width: Double, height: Double, title: String) -> String {
        let w = format(width), h = format(height), t = escape(title)
        return ##"<svg xmlns="http://www.w3.org/2000/svg" class="run-graph" viewBox="0 0 \##(w) \##(h)" width="\##(w)" height="\##(h)" role="img" aria-label="\##(t)">"##
            + "\n<title>\(t)</title>"
    }

    private static func emptySVG(title: String) -> String {
        [openingTag(width: 220, height: 60, title: title),
         ##"<text class="empty" x="16" y="35" font-size="13" fill="#666">no steps</text>"##,
         "</svg>"].joined(separator: "\n")
    }

    private static func edgeSVG(from source: Point, to target: Point, label: String?, marker: String) -> String {
        let x1 = source.x + nodeWidth / 2, y1 = source.y + nodeHeight
        let x2 = target.x + nodeWidth / 2, y2 = target.y
        // Vertical tangents at both ends; the minimum bend keeps a back edge (a cycle) from folding flat.
        let bend = max(abs(y2 - y1) / 2, gapY / 2)
        let c1 = Point(x: x1, y: y1 + bend), c2 = Point(x: x2, y: y2 - bend)
        let d = "M\(format(x1)),\(format(y1)) C\(format(c1.x)),\(format(c1.y)) \(format(c2.x)),\(format(c2.y)) \(format(x2)),\(format(y2))"
        var svg = ##"<path class="edge" d="\##(d)" fill="none" stroke="#888" marker-end="url(#\##(marker))"/>"##
        if let label, !label.isEmpty {
            // The curve's midpoint (t = 0.5), the label just right of it.
            let mx = (x1 + 3 * c1.x + 3 * c2.x + x2) / 8, my = (y1 + 3 * c1.y + 3 * c2.y + y2) / 8
            let text = escape(truncate(label, to: 16))
            svg += "\n" + ##"<text class="edge-label" x="\##(format(mx + 6))" y="\##(format(my + 4))" font-size="11" fill="#666">\##(text)</text>"##
        }
        return svg
    }

    private static func nodeSVG(_ node: GraphNode, at origin: Point) -> String {
        let x = origin.x, y = origin.y, centre = format(x + nodeWidth / 2)
        var state = sanitize(node.state.lowercased(), allowed: isStateCharacter)
        if state.isEmpty { state = "unknown" }
        var tooltip = [node.label, node.detail, node.state].filter { !$0.isEmpty }
        var detail = truncate(node.detail, to: detailLimit)
        var bar: [String] = []

        if let progress = node.progress, progress.total > 0 {
            let succeeded = max(progress.succeeded, 0), failed = max(progress.failed, 0), running = max(progress.running, 0)
            let counts = "\(succeeded + failed)/\(progress.total)"
            // Shorten the detail, not the counts, when the line is too long.
            detail = node.detail.isEmpty
                ? counts
                : truncate(node.detail, to: max(detailLimit - counts.count - 3, 8)) + " · " + counts
            tooltip.append("\(succeeded) succeeded, \(failed) failed, \(running) running of \(progress.total)")

            let barX = x + 10, barY = y + nodeHeight - 9, barWidth = nodeWidth - 20
            // Counts above the total (a stale total) must not draw past the bar.
            let scale = barWidth / Double(max(progress.total, succeeded + failed + running))
            bar.append(##"<rect class="bar" x="\##(format(barX))" y="\##(format(barY))" width="\##(format(barWidth))" height="4" fill="#eee"/>"##)
            var left = barX
            for (name, count, colour) in [("bar-succeeded", succeeded, "#3a3"), ("bar-failed", failed, "#c33"), ("bar-running", running, "#39f")] {
                let width = Double(count) * scale
                bar.append(##"<rect class="\##(name)" x="\##(format(left))" y="\##(format(barY))" width="\##(format(width))" height="4" fill="\##(colour)"/>"##)
                left += width
            }
        }

        var lines = [
            ##"<g class="node state-\##(state)" id="node-\##(sanitize(node.id, allowed: isIDCharacter))">"##,
            "<title>\(escape(tooltip.joined(separator: "\n")))</title>",
            ##"<rect x="\##(format(x))" y="\##(format(y))" width="\##(format(nodeWidth))" height="\##(format(nodeHeight))" rx="8" fill="#fff" stroke="#888"/>"##,
            ##"<text class="label" x="\##(centre)" y="\##(format(y + 25))" text-anchor="middle" font-size="13">\##(escape(truncate(node.label, to: labelLimit)))</text>"##,
            ##"<text class="detail" x="\##(centre)" y="\##(format(y + 43))" text-anchor="middle" font-size="11" fill="#555">\##(escape(detail))</text>"##,
        ]
        lines += bar
        lines.append("</g>")
        if let href = node.href {
            lines.insert(##"<a href="\##(escape(href))">"##, at: 0)
            lines.append("</a>")
        }
        return lines.joined(separator: "\n")
    }
}

// Nested, so these general names cannot clash with other files of the module.
extension RunGraph {
    fileprivate struct Point {
        var x: Double
        var y: Double
    }

    /// The graph as indices: the nodes (the first of each id), the edges between known nodes, and the layers in order.
    fileprivate struct Layout {
        struct Edge {
            var from: Int
            var to: Int
            var label: String?
        }

        var nodes: [GraphNode]
        var edges: [Edge]
        var layers: [[Int]]

        init(nodes given: [GraphNode], edges givenEdges: [GraphEdge]) {
            var seen = Set<String>()
            let nodes = given.filter { seen.insert($0.id).inserted }
            var index: [String: Int] = [:]
            for (i, node) in nodes.enumerated() { index[node.id] = i }
            let edges = givenEdges.compactMap { edge -> Edge? in
                guard let from = index[edge.from], let to = index[edge.to] else { return nil }
                return Edge(from: from, to: to, label: edge.label)
            }
            let layerOf = Self.longestPathLayers(count: nodes.count, edges: edges)
            self.nodes = nodes
            self.edges = edges
            self.layers = Self.orderWithinLayers(layerOf: layerOf, edges: edges)
        }

        /// Each node's layer: the longest path to it from a root (Kahn's algorithm). When only
        /// cycles are left, the first waiting node is released as if its unfinished incoming edges
        /// were absent, so a cycle cannot stall the loop and every node gets a layer.
        static func longestPathLayers(count: Int, edges: [Edge]) -> [Int] {
            var predecessors = [[Int]](repeating: [], count: count)
            var successors = [[Int]](repeating: [], count: count)
            var waitingOn = [Int](repeating: 0, count: count)
            for edge in edges where edge.from != edge.to {
                predecessors[edge.to].append(edge.from)
                successors[edge.from].append(edge.to)
                waitingOn[edge.to] += 1
            }
            var layer = [Int](repeating: 0, count: count)
            var placed = [Bool](repeating: false, count: count)
            var queue = (0..<count).filter { waitingOn[$0] == 0 }
            var next = 0
            // Each node enters the queue once, so `next` counts the nodes placed.
            while next < count {
                if next == queue.count {
                    guard let stuck = (0..<count).first(where: { !placed[$0] && waitingOn[$0] > 0 }) else { break }
                    waitingOn[stuck] = 0
                    queue.append(stuck)
                }
                let node = queue[next]
                next += 1
                placed[node] = true
                let depth = predecessors[node].filter { placed[$0] }.map { layer[$0] + 1 }.max() ?? 0
                layer[node] = depth
                for successor in successors[node] {
                    waitingOn[successor] -= 1
                    if waitingOn[successor] == 0 { queue.append(successor) }
                }
            }
            return layer
        }

        /// Nodes grouped by layer, in the given order, then a few barycenter sweeps down and up:
        /// each node moves towards the mean position of its neighbours in the adjacent layer.
        static func orderWithinLayers(layerOf: [Int], edges: [Edge]) -> [[Int]] {
            guard let deepest = layerOf.max() else { return [] }
            var layers = [[Int]](repeating: [], count: deepest + 1)
            for (node, layer) in layerOf.enumerated() { layers[layer].append(node) }

            var above = [[Int]](repeating: [], count: layerOf.count)
            var below = [[Int]](repeating: [], count: layerOf.count)
            for edge in edges where layerOf[edge.to] == layerOf[edge.from] + 1 {
                above[edge.to].append(edge.from)
                below[edge.from].append(edge.to)
            }
            var position = [Int](repeating: 0, count: layerOf.count)
            for layer in layers {
                for (i, node) in layer.enumerated() { position[node] = i }
            }

            // Nodes without neighbours there keep their place as key; ties keep the current order,
            // so the result is deterministic.
            func reorder(_ l: Int, by neighbours: [[Int]]) {
                var keyed: [(key: Double, index: Int, node: Int)] = []
                for (i, node) in layers[l].enumerated() {
                    let around = neighbours[node]
                    let key = around.isEmpty ? Double(i) : Double(around.map { position[$0] }.reduce(0, +)) / Double(around.count)
                    keyed.append((key: key, index: i, node: node))
                }
                let sorted = keyed.sorted { ($0.key, $0.index) < ($1.key, $1.index) }.map { $0.node }
                layers[l] = sorted
                for (i, node) in sorted.enumerated() { position[node] = i }
            }

            let indices = layers.indices
            for _ in 0..<4 {
                for l in indices.dropFirst() { reorder(l, by: above) }
                for l in indices.dropLast().reversed() { reorder(l, by: below) }
            }
            return layers
        }
    }
}
