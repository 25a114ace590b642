// The placement routes: `GET /v1/placement` shows which worker holds which expert, and
// `POST /v1/placement` (a placement file as the body) changes it live, between steps, once every
// worker has loaded its new experts. Both are under /v1, so `--api-key` protects them.
import APIRequests
import Coordinator
import Foundation
import Hummingbird
import Logging

extension Routes {
    /// The placement in effect, as a placement file (`{"workers": [{"name", "experts": [[layer, expert]]}]}`).
    func placement() throws(APIError) -> Response {
        guard let placement = service.placement() else {
            throw APIError(
                status: .notFound, type: "invalid_request_error",
                message: "the experts are computed in-process (serve --workers 0); there is no placement",
                code: "no_placement")
        }
        return jsonResponse(.ok, placement.file)
    }

    /// Applies the body's placement; answers with the placement in effect once it is applied.
    func applyPlacement(_ request: Request, body: RequestBody, logger: Logger) async throws(APIError) -> Response {
        let bytes = try await readBody(body, of: request)
        switch await service.applyPlacement(json: bytes) {
        case .success(let placement):
            logger.info("placement changed through the HTTP API")
            return jsonResponse(.ok, placement.file)
        case .failure(.invalid(let message)):
            throw .invalidRequest(param: "workers", message: message)
        case .failure(.unsupported(let message)):
            throw APIError(status: .conflict, type: "invalid_request_error", message: message, code: "no_placement")
        case .failure(.failed(let message)):
            throw APIError(status: .serviceUnavailable, type: "service_unavailable", message: message, code: "unavailable")
        }
    }
}
