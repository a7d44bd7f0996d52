import Foundation
import MegatronData
import Testing

/// The Punkt sentence splitter against NLTK's own PunktSentenceTokenizer, from
/// Tests/Fixtures/punkt (make_punkt_fixtures.py): a model in NLTK's punkt_tab format trained by
/// NLTK on Austen, and the sentences NLTK splits 52 texts into with it, plainly and with
/// preprocess_data.py's --keep-newlines.
@Suite struct PunktSentenceTokenizerTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/punkt")

    struct Expected: Decodable {
        struct Case: Decodable {
            let text: String
            let sentences: [String]
            let keep_newlines: [String]
        }
        let cases: [Case]
    }

    @Test func sentencesEqualNLTKs() throws {
        let directory = try PunktParameters.find(language: "english", environment: ["NLTK_DATA": Self.root.path])
        let parameters = try PunktParameters(directory: directory)
        #expect(parameters.abbreviationTypes.contains("mrs") && parameters.orthographicContext.count > 1000)
        let plain = try PunktSentenceTokenizer(parameters: parameters)
        let keepingNewlines = try PunktSentenceTokenizer(parameters: parameters, keepNewlines: true)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.root.appendingPathComponent("expected.json")))
        #expect(expected.cases.count == 52)
        for c in expected.cases {
            #expect(plain.sentences(c.text) == c.sentences, "\(c.text.debugDescription)")
            #expect(keepingNewlines.sentences(c.text) == c.keep_newlines, "--keep-newlines: \(c.text.debugDescription)")
        }
    }

    @Test func aMissingModelNamesWhereItLookedAndHowToInstallIt() {
        #expect {
            try PunktParameters.find(language: "english", environment: ["NLTK_DATA": "/nonexistent"])
        } throws: { "\($0)".contains("/nonexistent") && "\($0)".contains("punkt_tab") }
        #expect(throws: TokenizerError.self) { try PunktParameters.find(language: "../english", environment: [:]) }
    }
}
