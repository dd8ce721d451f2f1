import HTTPTypes
import Hummingbird
import SluiceAPI

extension Router where Context == BasicRequestContext {
    /// Registers the handler of one of the API's routes.
    func on<Output: ResponseGenerator>(_ route: APIRoute,
                                       use handler: @escaping @Sendable (Request, Context) async throws -> Output) {
        on(RouterPath(route.path), method: HTTPRequest.Method(route.method)!, use: handler)
    }
}
