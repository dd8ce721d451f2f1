/// What is wrong with a workflow definition, a path, a template or an expression.
public struct WorkflowError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of error this is; stable, for programs to switch on.
    public enum Code: String, Sendable, Hashable, Codable {
        case invalidDefinition = "invalid_definition"
        case duplicateStep = "duplicate_step"
        case unknownStep = "unknown_step"
        case cycle
        case unreachableStep = "unreachable_step"
        case invalidPath = "invalid_path"
        case invalidTemplate = "invalid_template"
        case invalidExpression = "invalid_expression"
        case evaluation
        case invalidDuration = "invalid_duration"
        /// Something a run would build is larger than its limit.
        case tooLarge = "too_large"
    }

    public var code: Code
    public var message: String
    /// The step the problem is in, when there is one.
    public var step: String?

    public init(_ code: Code, _ message: String, step: String? = nil) {
        self.code = code
        self.message = message
        self.step = step
    }

    public var description: String {
        if let step { return "step '\(step)': \(message)" }
        return message
    }
}
