/// An error that is just its message, for what a test makes fail on purpose.
public struct CoordinatorEnded: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
