/// Map elements changed since the last call, for a store that keeps them as rows.
public struct ElementChanges: Sendable, Hashable {
    /// Steps whose rows are all replaced: every element not waiting is in `elements`.
    public var replaced: [String] = []
    /// Elements to write, by step and index (waiting elements have no row).
    public var elements: [ElementRow] = []

    public init(replaced: [String] = [], elements: [ElementRow] = []) {
        self.replaced = replaced
        self.elements = elements
    }

    public var isEmpty: Bool { replaced.isEmpty && elements.isEmpty }
}

/// One map element as a store row.
public struct ElementRow: Sendable, Hashable {
    public var step: String
    public var index: Int
    public var element: ElementState

    public init(step: String, index: Int, element: ElementState) {
        self.step = step
        self.index = index
        self.element = element
    }
}
