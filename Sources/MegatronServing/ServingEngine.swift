import Foundation
import MegatronModels
import ServiceLifecycle

/// The inference engine as the server's service: its step loop on a thread of its own (the model's
/// passes are long, blocking CPU work that must not hold the cooperative pool), requests handed to
/// it from any task and answered by a stream of their events. A client that goes away cancels its
/// requests at the next token boundary, which returns their cache blocks. On graceful shutdown
/// (after the HTTP server has finished its responses) it finishes what it holds and stops.
public final class ServingEngine: Service, @unchecked Sendable {
    public let engine: DynamicInferenceEngine

    public init(_ engine: DynamicInferenceEngine) { self.engine = engine }

    /// Requests running together: the events of all of them, each tagged with its request's index,
    /// in the order they happened; the stream ends when every request has finished.
    public struct Generation: Sendable {
        public let events: AsyncStream<(index: Int, event: InferenceEvent)>
        let ids: [Int]
    }

    /// Adds `requests` to the running batch; throws `InferenceRequestError` (adding none) when one cannot run.
    public func submit(_ requests: [InferenceRequest]) throws -> Generation {
        let (events, sink) = AsyncStream<(index: Int, event: InferenceEvent)>.makeStream()
        let remaining = Remaining(requests.count)
        var ids: [Int] = []
        do {
            for (index, request) in requests.enumerated() {
                ids.append(try engine.add(request) { event in
                    sink.yield((index, event))
                    if case .finished = event, remaining.finishOne() { sink.finish() }
                })
            }
        } catch {
            for id in ids { engine.cancel(id) }
            throw error
        }
        return Generation(events: events, ids: ids)
    }

    /// Ends the generation's requests at the next token boundary.
    public func cancel(_ generation: Generation) { for id in generation.ids { engine.cancel(id) } }

    /// Ends request `index` of the generation at the next token boundary.
    public func cancel(_ generation: Generation, request index: Int) { engine.cancel(generation.ids[index]) }

    /// Runs `body` over the generation of `requests`; cancelling the task, or `body` failing, cancels the requests.
    public func withGeneration<T: Sendable>(_ requests: [InferenceRequest],
                                            _ body: (Generation) async throws -> T) async throws -> T {
        let generation = try submit(requests)
        return try await withTaskCancellationHandler {
            do {
                let value = try await body(generation)
                try Task.checkCancellation()
                return value
            } catch {
                cancel(generation)  // a client gone mid-stream: its writes fail
                throw error
            }
        } onCancel: {
            cancel(generation)
        }
    }

    /// The results of `requests`, run in the engine's batch.
    public func results(_ requests: [InferenceRequest]) async throws -> [InferenceResult] {
        try await withGeneration(requests) { generation in
            var results = requests.map { InferenceResult(prompt: $0.prompt) }
            for await (index, event) in generation.events { results[index].record(event) }
            return results
        }
    }

    public func run() async throws {
        let (finished, done) = AsyncStream<Void>.makeStream()
        let thread = Thread { [engine] in
            engine.run()
            done.finish()
        }
        thread.name = "inference-engine"
        thread.start()
        try? await gracefulShutdown()
        engine.drain()
        for await _ in finished {}
    }

    /// Counts a generation's requests down to the last one's end.
    private final class Remaining: @unchecked Sendable {
        private let lock = NSLock()
        private var count: Int
        init(_ count: Int) { self.count = count }
        /// True for the last.
        func finishOne() -> Bool { lock.withLock { count -= 1; return count == 0 } }
    }
}
