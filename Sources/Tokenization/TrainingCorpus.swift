// The built-in text `TokenizerTrainer` learns merges from: English prose, code and a spread of scripts,
// so a trained tokenizer has whole-word tokens for common English and code and byte fallback elsewhere.

enum TrainingCorpus {
    static let text = """
        The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
        It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.
        Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,
        and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.
        In the beginning there was the word, and the word was with the people who wrote it down.
        She said that they would come back tomorrow, but nobody believed her; they had said the same thing yesterday.
        We're sure it's fine: you've done this before, I'm told, and they'll do it again if we'd only ask.
        The model reads a prompt, computes hidden states layer by layer, and predicts the next token.
        A mixture of experts routes every token to a few experts; a router computes routing weights for each of them.
        The coordinator dispatches hidden states to the workers that hold each expert and combines their outputs.
        When a worker is slow it becomes suspect, and when it stops answering it is declared dead and its experts move.
        Balancedness is the mean expert load divided by the maximum expert load, measured per layer and per step.
        During prefill the whole prompt is processed at once; during decode one token is generated per step.
        Numbers and dates: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 32 64 100 128 256 512 1000 1024 2048 4096 2026 3.14159 2.71828 1e-5 0.5 99%.
        Questions? Answers! Lists, commas; colons: quotes "like this" and 'like that' (and parentheses) [brackets] {braces} <angles>.
        import Foundation

        struct Expert: Sendable {
            let index: Int
            var weights: [Float]

            func forward(_ input: [Float]) -> [Float] {
                var output = [Float](repeating: 0, count: input.count)
                for i in 0..<input.count {
                    output[i] = input[i] * weights[i % weights.count]
                }
                return output
            }
        }

        def softmax(logits):
            m = max(logits)
            exps = [math.exp(x - m) for x in logits]
            total = sum(exps)
            return [e / total for e in exps]

        for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }
        if (x != nullptr && x->next == NULL) { return -1; }
        const result = await fetch(url, { method: "POST", body: JSON.stringify(data) });
        SELECT name, count(*) FROM experts WHERE layer = 3 GROUP BY name ORDER BY count DESC;
        $ swift build --configuration release && ./switchyard serve --port 8080
        {"model": "mixtral", "max_tokens": 128, "temperature": 0.7, "stream": true}
        Café, naïve, résumé, façade, Zürich, São Paulo, Ærøskøbing, crème brûlée, jalapeño, coöperate.
        Привет, мир! Как дела? Γειά σου κόσμε. Καλημέρα. שלום עולם. مرحبا بالعالم. नमस्ते दुनिया।
        日本語のテキストです。東京は大きな都市です。中文文本，你好世界。한국어 텍스트, 안녕하세요 세계.
        Emoji: 😀 😂 👍 👍🏽 ❤️ 🎉 🚀 👩‍💻 🇫🇷 ✨ — symbols: © ® ™ € £ ¥ ° ± × ÷ → ← ≤ ≥ ≠ ∞ √ π Σ µ.
        Tabs\tand\tnewlines\nare whitespace too; so are  double  spaces and trailing spaces.
        the the the of of of and and and to to to in in in is is is that that it it for for on on with with as as
        """
}
