import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 exchange with `megatron serve` over a TCP connection, its response read as it
/// arrives: what the serving tests and the load generator call the server with. Blocking, with a
/// receive timeout, so a test that goes wrong fails instead of hanging; it can hang up mid-response
/// (a client that goes away) and send bytes no well-behaved client would.
public final class LoopbackHTTPClient {
    public struct Response: Sendable {
        public let status: Int
        public let headers: [String: String]
        public let body: Data
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct ClientError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    private let socket: Int32
    private var buffer = Data()
    private var closed = false

    /// A connection to host:port (IPv4), reads timing out after `timeout` seconds.
    public init(host: String = "127.0.0.1", port: Int, timeout: Double = 120) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw ClientError(description: "socket: \(String(cString: strerror(errno)))") }
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(socket)
            throw ClientError(description: "connect to \(host):\(port): \(reason)")
        }
    }

    deinit { close() }

    /// The bytes of a request with `Connection: close` (and the body's length, when there is one).
    public static func request(_ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json") -> Data {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if let body { head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n" }
        return Data((head + "\r\n").utf8) + (body ?? Data())
    }

    public func send(_ bytes: Data) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError(description: "send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// The status and headers (names lower-cased).
    public func readHead() throws -> (status: Int, headers: [String: String]) {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw ClientError(description: "not an HTTP status line: \"\(statusLine)\"")
        }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { return (status, headers) }
            guard let colon = line.firstIndex(of: ":") else { throw ClientError(description: "not a header: \"\(line)\"") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }

    /// The body after `readHead`, handed to `onData` piece by piece as it arrives (chunked transfer
    /// decoded); `onData` returning false stops reading.
    public func readBody(headers: [String: String], _ onData: (Data) throws -> Bool) throws {
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw ClientError(description: "not a chunk size: \"\(sizeLine)\"")
                }
                if size == 0 { _ = try readLine(); return }
                let chunk = try read(size)
                _ = try readLine()
                if try !onData(chunk) { return }
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            if length > 0 { _ = try onData(try read(length)) }
        } else {
            while try fill() > 0 {}
            if !buffer.isEmpty { _ = try onData(buffer) }
            buffer.removeAll()
        }
    }

    /// Hangs up (a client going away).
    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(socket)
    }

    /// One whole exchange on a new connection.
    public static func exchange(port: Int, _ method: String, _ path: String, body: Data? = nil, timeout: Double = 120) throws -> Response {
        try exchange(port: port, raw: request(method, path, body: body), timeout: timeout)
    }

    /// One whole exchange of raw request bytes on a new connection.
    public static func exchange(port: Int, raw: Data, timeout: Double = 120) throws -> Response {
        let client = try LoopbackHTTPClient(port: port, timeout: timeout)
        try client.send(raw)
        let (status, headers) = try client.readHead()
        var body = Data()
        try client.readBody(headers: headers) { body += $0; return true }
        return Response(status: status, headers: headers, body: body)
    }

    private func fill() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(socket, &chunk, chunk.count, 0)
        guard n >= 0 else { throw ClientError(description: "receive: \(String(cString: strerror(errno)))") }
        buffer.append(contentsOf: chunk[..<n])
        return n
    }

    private func readLine() throws -> String {
        while true {
            if let end = buffer.range(of: Data("\r\n".utf8)) {
                let line = String(decoding: buffer[buffer.startIndex ..< end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex ..< end.upperBound)
                return line
            }
            guard try fill() > 0 else { throw ClientError(description: "the connection closed mid-line") }
        }
    }

    private func read(_ count: Int) throws -> Data {
        while buffer.count < count {
            guard try fill() > 0 else { throw ClientError(description: "the connection closed after \(buffer.count) of \(count) bytes") }
        }
        let data = Data(buffer.prefix(count))
        buffer.removeFirst(count)
        return data
    }
}
