import ArgumentParser
import MegatronCommandLine
import Dispatch
import Foundation
import MegatronData

/// `megatron preprocess-data`: JSON lines in, Megatron's `PREFIX_KEY_document.bin/.idx` out, as
/// Megatron-LM's tools/preprocess_data.py writes them (one sequence per document, the end-of-document
/// token appended with --append-eod, empty documents kept as empty). Plain text too (ours,
/// `--input-format text`): documents are separated by blank lines (lines of only spaces or tabs),
/// and each keeps its own line breaks; the output is `PREFIX_text_document`. With --split-sentences
/// each document is split into sentences by NLTK's Punkt model (as Megatron's, found on NLTK's data
/// path), one sequence each, and the output is `PREFIX_KEY_sentence` (BERT's and T5's data).
struct PreprocessData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess-data", abstract: "Tokenize JSONL into Megatron .bin/.idx datasets (tools/preprocess_data.py flags).")

    @Option var input: String
    @Option(name: .customLong("json-keys"), parsing: .upToNextOption) var jsonKeys: [String] = ["text"]
    @Option(name: .customLong("output-prefix")) var outputPrefix: String
    @Option(name: .customLong("input-format"), help: "jsonl (Megatron's: one JSON object per line) or text (documents separated by blank lines).")
    var inputFormat = "jsonl"
    @OptionGroup var tokenizer: TokenizerOptions
    @Flag(name: .customLong("append-eod")) var appendEOD = false
    @Option(help: "Tokenizing threads (default: every core).") var workers = ProcessInfo.processInfo.activeProcessorCount
    @Flag(name: .customLong("skip-invalid-lines"), help: "Skip (and count) malformed lines instead of stopping at the first.")
    var skipInvalidLines = false
    @Flag(name: .customLong("split-sentences"),
          help: "Split documents into sentences (NLTK's Punkt model tokenizers/punkt_tab/LANG, from $NLTK_DATA or ~/nltk_data; one sequence each).")
    var splitSentences = false
    @Flag(name: .customLong("keep-newlines"), help: "With --split-sentences, keep the white space after each sentence with it.")
    var keepNewlines = false
    @Option(name: .customLong("lang"), help: "The Punkt model of --split-sentences.") var lang = "english"

    func validate() throws {
        guard ["jsonl", "text"].contains(inputFormat) else { throw ValidationError("--input-format \(inputFormat): expected jsonl or text") }
        guard workers >= 1 else { throw ValidationError("--workers \(workers): expected at least 1") }
        guard !jsonKeys.isEmpty else { throw ValidationError("--json-keys: give at least one key") }
    }

    func run() throws {
        let tokenizer = try tokenizer.makeTokenizer()
        let splitter = try splitSentences
            ? PunktSentenceTokenizer(parameters: PunktParameters(directory: PunktParameters.find(language: lang)), keepNewlines: keepNewlines)
            : nil
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: input), options: .alwaysMapped) else {
            throw ValidationError("--input \(input): cannot be read")
        }
        let type = IndexedDataset.TokenType.optimal(vocabularySize: tokenizer.vocabSize)
        let keys = inputFormat == "text" ? ["text"] : jsonKeys
        let level = splitSentences ? "sentence" : "document"
        let builders = try keys.map { try IndexedDatasetBuilder(prefix: "\(outputPrefix)_\($0)_\(level)", tokenType: type) }
        let lines = inputFormat == "text" ? InputDocuments.paragraphs(of: data) : InputDocuments.lines(of: data)
        let started = Date()
        var documents = 0, skipped = 0, bytesDone = 0
        let batch = 256 * workers
        for batchStart in stride(from: 0, to: lines.count, by: batch) {
            let batchLines = Array(lines[batchStart ..< min(batchStart + batch, lines.count)])
            let results = Results(count: batchLines.count)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for i in stride(from: worker, to: batchLines.count, by: workers) {
                    results.set(i, encode(data[batchLines[i]], line: batchStart + i + 1, tokenizer: tokenizer, splitter: splitter))
                }
            }
            for (i, result) in results.all.enumerated() {
                switch result {
                case .success(let perKey):
                    for (builder, document) in zip(builders, perKey) {
                        try builder.addDocument(document.tokens, lengths: document.sentenceLengths)
                    }
                    documents += 1
                case .failure(let error):
                    if !skipInvalidLines { throw error }
                    skipped += 1
                    FileHandle.standardError.write(Data("skipped: \(error)\n".utf8))
                }
                bytesDone += batchLines[i].count + 1
            }
            let seconds = Date().timeIntervalSince(started)
            let rate = Double(bytesDone) / max(seconds, 1e-9)
            let eta = Double(max(data.count - bytesDone, 0)) / max(rate, 1)  // the last line may lack its newline
            FileHandle.standardError.write(Data(String(format: "\rprocessed %d documents (%.0f docs/s, %.2f MB/s), ETA %.0f s   ",
                                                       documents, Double(documents) / max(seconds, 1e-9), rate / 1e6, eta).utf8))
        }
        for builder in builders { try builder.finish() }
        FileHandle.standardError.write(Data("\n".utf8))
        print("wrote \(keys.map { "\(outputPrefix)_\($0)_\(level).{bin,idx}" }.joined(separator: ", ")): "
              + "\(documents) documents\(skipped > 0 ? ", \(skipped) invalid lines skipped" : "") (\(type) tokens)")
    }

    /// One key's document: its token ids, and the lengths of the sequences they form in the .idx.
    struct EncodedDocument {
        var tokens: [Int32]
        var sentenceLengths: [Int]
    }

    /// The document of each key of one input line or document, as Megatron's Encoder.encode: a list
    /// of strings under a key is one sequence per non-empty string (as --split-sentences output is), a
    /// string one sequence (or, split, one a sentence); with --append-eod, EOD ends a non-empty
    /// document's last sequence.
    func encode(_ line: Data, line number: Int, tokenizer: any TextTokenizer,
                splitter: PunktSentenceTokenizer?) -> Result<[EncodedDocument], TokenizerError> {
        /// Megatron splits a text in pieces of a million code points.
        func split(_ text: String) -> [String] {
            guard let splitter else { return [text] }
            let scalars = Array(text.unicodeScalars)
            return stride(from: 0, to: scalars.count, by: 1_000_000).flatMap { start in
                splitter.sentences(String(String.UnicodeScalarView(scalars[start ..< min(start + 1_000_000, scalars.count)])))
            }
        }
        if inputFormat == "text" {
            guard let text = String(data: line, encoding: .utf8) else {
                return .failure(TokenizerError("\(input): document \(number) is not valid UTF-8"))
            }
            return Result { [try tokens(of: split(text), tokenizer: tokenizer)] }
                .mapError { TokenizerError("\(input): document \(number): \($0)") }
        }
        guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
            return .failure(TokenizerError("\(input):\(number): not a JSON object (malformed JSON or invalid UTF-8)"))
        }
        var out: [EncodedDocument] = []
        for key in jsonKeys {
            let texts: [String]
            if let text = object[key] as? String { texts = split(text) } else if let list = object[key] as? [String] { texts = list } else {
                return .failure(TokenizerError("\(input):\(number): no string (or list of strings) under key \"\(key)\""))
            }
            do {
                out.append(try tokens(of: texts, tokenizer: tokenizer))
            } catch {
                return .failure(TokenizerError("\(input):\(number): \(error)"))
            }
        }
        return .success(out)
    }

    func tokens(of texts: [String], tokenizer: any TextTokenizer) throws -> EncodedDocument {
        var document = EncodedDocument(tokens: [], sentenceLengths: [])
        for text in texts {
            let ids = try tokenizer.encode(text)
            guard !ids.isEmpty else { continue }
            document.tokens += ids
            document.sentenceLengths.append(ids.count)
        }
        if appendEOD && !document.tokens.isEmpty {
            document.tokens.append(tokenizer.eod)
            document.sentenceLengths[document.sentenceLengths.count - 1] += 1
        }
        return document
    }
}

/// Per-line results that the tokenizing threads fill in, each at its own index.
final class Results: @unchecked Sendable {
    private var values: [Result<[PreprocessData.EncodedDocument], TokenizerError>?]
    private let lock = NSLock()

    init(count: Int) { values = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Result<[PreprocessData.EncodedDocument], TokenizerError>) {
        lock.lock()
        values[index] = value
        lock.unlock()
    }

    var all: [Result<[PreprocessData.EncodedDocument], TokenizerError>] { values.map { $0! } }
}
