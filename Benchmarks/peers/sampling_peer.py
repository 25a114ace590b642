"""What a transformers user's sampling step costs on CPU, for `switchyard-bench sampling`.

The logits processors transformers' `generate` applies when sampling (temperature, top-k, top-p:
`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`), then softmax and
`torch.multinomial` (temperature 0: `torch.argmax`, greedy search), on one row of logits, torch threads as given. The logits are the ones
switchyard-bench builds (`model_like_logits`, the same SplitMix64 stream), so both sides sample the
same distribution. Prints one JSON object: {"<vocabulary>/<configuration>": microseconds per token}.
"""
import argparse
import json
import time

MASK = (1 << 64) - 1


def splitmix64(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def model_like_logits(count, seed):
    """As switchyard-bench's `modelLikeLogits`: a bell of spread 2.5 around 0 (three uniforms summed)
    and 24 tokens 8 to 15 above it, like a language model's logits."""
    stream = splitmix64(seed)
    logits = []
    for index in range(count):
        total = sum((next(stream) >> 40) / float(1 << 24) for _ in range(3))
        value = (total - 1.5) * 5.0
        if (index * 7919) % count < 24:
            value += 8 + (index % 8)
        logits.append(value)
    return logits


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocabularies", default="32000,151936,201088")
    parser.add_argument("--configurations", required=True,
                        help="name=temperature:top_p:top_k entries separated by commas")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per figure")
    args = parser.parse_args()

    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for vocabulary in (int(v) for v in args.vocabularies.split(",")):
        row = torch.tensor([model_like_logits(vocabulary, 1)], dtype=torch.float32)
        input_ids = torch.zeros((1, 1), dtype=torch.long)
        for entry in args.configurations.split(","):
            name, spec = entry.split("=")
            temperature, top_p, top_k = spec.split(":")
            processors = LogitsProcessorList()
            greedy = float(temperature) == 0.0
            if not greedy and float(temperature) != 1.0:
                processors.append(TemperatureLogitsWarper(float(temperature)))
            if int(top_k) > 0:
                processors.append(TopKLogitsWarper(int(top_k)))
            if float(top_p) < 1.0:
                processors.append(TopPLogitsWarper(float(top_p)))

            def step():
                if greedy:  # what generate does without do_sample
                    return torch.argmax(row, dim=-1)
                scores = processors(input_ids, row.clone())
                probabilities = torch.softmax(scores, dim=-1)
                return torch.multinomial(probabilities, num_samples=1)

            step()
            samples = []
            for _ in range(5):
                calls, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds / 5:
                    step()
                    calls += 1
                samples.append((time.perf_counter() - start) / calls)
            results[f"{vocabulary}/{name}"] = sorted(samples)[2] * 1e6
    print(json.dumps(results))


if __name__ == "__main__":
    main()
