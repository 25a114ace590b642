// Blocking HTTP requests from tests (URLSession), each bounded in time.
public import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Sends one HTTP request and waits for its answer, at most `timeout` (plus 5 s for URLSession's
/// own timeout to report); a JSON body is sent with `Content-Type: application/json`.
/// - Returns: the status and the body.
/// - Throws: URLSession's error, or `TestProcessError` when no answer came in time.
public func httpRequest(
    _ url: String, method: String = "GET", json: String? = nil, timeout: TimeInterval = 60
) throws -> (status: Int, body: Data) {
    final class Box: @unchecked Sendable {
        // @unchecked: written once by the URLSession callback before `done` is signalled, read after.
        var result: Result<(Int, Data), any Error> = .failure(TestProcessError(description: "no answer"))
    }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    if let json {
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(json.utf8)
    }
    request.timeoutInterval = timeout
    let task = URLSession.shared.dataTask(with: request) { data, response, error in
        if let error {
            box.result = .failure(error)
        } else {
            box.result = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
        }
        done.signal()
    }
    task.resume()
    guard done.wait(timeout: .now() + timeout + 5) == .success else {
        task.cancel()
        throw TestProcessError(description: "\(method) \(url) did not finish")
    }
    return try box.result.get()
}

/// GET of a URL, bounded in time; returns the status and body.
public func httpGet(_ url: String, timeout: TimeInterval = 60) throws -> (status: Int, body: Data) {
    try httpRequest(url, timeout: timeout)
}

/// POST of a JSON body, bounded in time; returns the status and body.
public func httpPost(_ url: String, json: String, timeout: TimeInterval = 120) throws -> (status: Int, body: Data) {
    try httpRequest(url, method: "POST", json: json, timeout: timeout)
}
