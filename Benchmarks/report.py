#!/usr/bin/env python3
"""Prints the benchmark table of one `Benchmarks/run.sh` run from its results directory (JSON files
written in that run; `NAME.skip` files hold the reason a part was skipped)."""
import argparse
import json
import os
import statistics


def load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def reason(results, name):
    path = os.path.join(results, name + ".skip")
    return open(path).read().strip() if os.path.exists(path) else "no result"


def expert_shape(config):
    """(experts per layer, expert FFN width): Mixtral's num_local_experts and intermediate_size, or the
    Qwen families' num_experts (transformers 5 may write num_local_experts) and moe_intermediate_size."""
    experts = config.get("num_local_experts") or config.get("num_experts")
    return experts, config.get("moe_intermediate_size") or config["intermediate_size"]


def active_params(config):
    """Weights one token reads (every layer a MoE layer, as in both benchmark models)."""
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or h // heads
    experts, ffn = expert_shape(config)
    layers = config["num_hidden_layers"]
    top_k = config["num_experts_per_tok"]
    attention = h * heads * head_dim * 2 + h * kv * head_dim * 2
    per_layer = attention + experts * h + top_k * 3 * h * ffn + 2 * h
    return layers * per_layer + config["vocab_size"] * h + h  # + LM head + final norm (embedding: one row)


def step_params(config, batch):
    """Weight parameters one decode step of `batch` sequences reads: the dense ones once, and per layer
    each expert that at least one token routes to (expected count with uniform routing:
    E·(1 − (1 − k/E)^batch); every expert at batch 32 for 8 experts top-2)."""
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or h // heads
    experts, ffn = expert_shape(config)
    top_k = config["num_experts_per_tok"]
    routed = experts * (1 - (1 - top_k / experts) ** batch)
    per_layer = h * heads * head_dim * 2 + h * kv * head_dim * 2 + experts * h + routed * 3 * h * ffn + 2 * h
    return config["num_hidden_layers"] * per_layer + config["vocab_size"] * h + h


def batch32_ceiling(config, bandwidth_gbs, peak_gflops, batch32_bandwidth_gbs=None):
    """What this machine allows batch 32 ÷ batch 1 to be at a read bandwidth and a dot peak: batch 1 reads
    the active weights (memory bound); a batch-32 step reads every expert once (at
    `batch32_bandwidth_gbs`, when it differs) and does 32 tokens' arithmetic. Returns (the ceiling with
    reads and arithmetic overlapped, one after the other) and the three times (batch-1 step, batch-32
    reads, batch-32 arithmetic) in seconds."""
    one = step_params(config, 1) * 2 / (bandwidth_gbs * 1e9)
    memory = step_params(config, 32) * 2 / ((batch32_bandwidth_gbs or bandwidth_gbs) * 1e9)
    arithmetic = 32 * 2 * active_params(config) / (peak_gflops * 1e9)
    return 32 * one / max(memory, arithmetic), 32 * one / (memory + arithmetic), (one, memory, arithmetic)


def pair_ceiling_ratios(config, batches, peak_key="dot_gflops_2t"):
    """For each batch-1 → batch-32 pair of one serve run whose batches carry their own floors
    (serve_decode.py --floors, measured right before each), the pair's ratio ÷ its own overlapped
    ceiling: batch 1 at the bandwidth read before it, batch 32 at the bandwidth read before it and the
    better peak of the two (a lower peak is a CPU taken away for a moment, not the machine). The peak is
    the floors' dot peak (with AVX-512 bf16 the better of `vdpbf16ps` and the f32 FMA), or with
    `peak_key` "dot_other_gflops_2t" the other of the two."""
    ratios = []
    for before, after in zip(batches, batches[1:]):
        if before["batch"] != 1 or after["batch"] != 32 or before["decode_tokens_per_s"] <= 0:
            continue
        one, many = before.get("floors"), after.get("floors")
        if not (one and many and one.get("membw_gbs_2t") and many.get("membw_gbs_2t")):
            continue
        peak = max(one.get(peak_key) or 0, many.get(peak_key) or 0)
        if peak <= 0:
            continue
        ceiling, _, _ = batch32_ceiling(config, one["membw_gbs_2t"], peak, many["membw_gbs_2t"])
        ratios.append(after["decode_tokens_per_s"] / before["decode_tokens_per_s"] / ceiling)
    return ratios


def round_floor_ratios(results, prefix, result, active_bytes):
    """Each round's decode ÷ that round's floor: active bytes at the better of the read bandwidths (2
    threads) measured at the round's start and end (`floors --bandwidth`, files PREFIXbandwidth-start.runN
    and -end.runN). Returns (median, [ratios], [bandwidths, GB/s]) or None without both."""
    ratios, bandwidths = [], []
    for run in (result or {}).get("timing_runs") or []:
        measured = [load(results, f"{prefix}bandwidth-{end}.run{run.get('round')}") for end in ("start", "end")]
        best = max((m["membw_gbs_2t"] for m in measured if m), default=None)
        if best and run.get("decode_tokens_per_s"):
            ratios.append(run["decode_tokens_per_s"] / (best * 1e9 / active_bytes))
            bandwidths.append(best)
    return (statistics.median(ratios), ratios, bandwidths) if ratios else None


def round_floor_row(out, results, prefix, name, result, active_bytes):
    """One line: NAME decode ÷ its round's floor, the median and each round's, with the bandwidths."""
    found = round_floor_ratios(results, prefix, result, active_bytes)
    if not found:
        out(f"  {name:<58}{'—':>10}")
        return
    median, ratios, bandwidths = found
    out(f"  {name:<58}{fmt(median, 2):>10}   round by round " + " / ".join(fmt(x, 2) for x in ratios)
        + f" (read {min(bandwidths):.1f}–{max(bandwidths):.1f} GB/s)")


def fmt(value, digits=1):
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--qwen3moe-model", help="the Qwen3-MoE-shaped model directory (its section is skipped without results)")
    parser.add_argument("--deepseek-model", help="the DeepSeek-shaped model directory (its section is skipped without results)")
    parser.add_argument("--gptoss-model", help="the gpt-oss-shaped model directory (its section is skipped without results)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    args = parser.parse_args()
    r = args.results
    config = json.load(open(os.path.join(args.model, "config.json")))
    params = active_params(config)
    active_bytes = params * 2  # bf16 weights

    lines = []
    out = lines.append
    out("")
    out("=" * 100)
    out(f"Switchyard benchmark — model: Mixtral-shaped, hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
        f"{config['num_local_experts']} experts top-{config['num_experts_per_tok']}, FFN {config['intermediate_size']}, "
        f"vocab {config['vocab_size']}, bf16")
    out(f"active parameters per token: {params / 1e6:.1f} M = {active_bytes / 1e6:.0f} MB of bf16 weights read per decoded token")
    out("=" * 100)
    machine_section(out, r)

    floors = load(r, "floors")
    out("\nFloors (this run)")
    if floors:
        out(f"  memory read bandwidth            {floors['membw_gbs_1t']:8.1f} GB/s (1 thread)   {floors['membw_gbs_2t']:8.1f} GB/s (2 threads)")
        if floors.get("dot_gflops_1t"):
            out(f"  {floors['dot_kind'] + ' peak':<33}{floors['dot_gflops_1t']:8.1f} GFLOP/s (1 thread) {floors['dot_gflops_2t']:8.1f} GFLOP/s (2 threads)")
        for g in floors["sgemm"]:
            out(f"  OpenBLAS sgemm m={g['m']:<3} k={g['k']} n={g['n']}  {g['gflops_1t']:8.1f} GFLOP/s (1 thread) {g['gflops_2t']:8.1f} GFLOP/s (2 threads)")
        for z in floors["zmq"]:
            size = f"{z['bytes'] // 1024} KiB" if z["bytes"] < 1 << 20 else f"{z['bytes'] >> 20} MiB"
            out(f"  ZeroMQ DEALER/ROUTER tcp RTT {size:>7}  p50 {z['p50_us']:8.0f} µs   p99 {z['p99_us']:8.0f} µs")
        for z in floors.get("zmq_curve", []):
            size = f"{z['bytes'] // 1024} KiB" if z["bytes"] < 1 << 20 else f"{z['bytes'] >> 20} MiB"
            out(f"  ZeroMQ RTT over CURVE        {size:>7}  p50 {z['p50_us']:8.0f} µs   p99 {z['p99_us']:8.0f} µs")
        floor_1t = floors["membw_gbs_1t"] * 1e9 / active_bytes
        floor_2t = floors["membw_gbs_2t"] * 1e9 / active_bytes
        out(f"  decode floor (bandwidth ÷ active bf16 bytes)  {floor_1t:8.1f} tok/s (1 thread)  {floor_2t:8.1f} tok/s (2 threads)")
    else:
        floor_1t = floor_2t = None
        out(f"  skipped: {reason(r, 'floors')}")

    sy_in = load(r, "switchyard-inprocess")
    sy_w2 = load(r, "switchyard-workers2")
    sy_q8 = load(r, "switchyard-inprocess-q8")
    hf = load(r, "transformers")
    lb = load(r, "llama-bf16")
    lq = load(r, "llama-q8_0")

    def figure(result, key):
        return None if result is None else result.get("timing", result).get(key)

    def timing(result):
        return figure(result, "prefill_tokens_per_s"), figure(result, "decode_tokens_per_s")

    out(f"\nBatch 1: prefill {args.prompt_tokens} tokens, decode {args.decode_tokens} tokens (tokens/s, this run)")
    out(f"  {'engine':<44}{'prefill':>10}{'decode':>10}")
    engine_rows(out, r, timing, [("Switchyard, in-process (generate --spawn-workers 0)", "switchyard-inprocess", sy_in),
                                 ("Switchyard, 2 workers over tcp loopback", "switchyard-workers2", sy_w2),
                                 ("Switchyard, in-process, --quantize q8", "switchyard-inprocess-q8", sy_q8),
                                 ("transformers CPU bf16, 2 threads", "transformers", hf),
                                 ("llama.cpp bf16, 2 threads", "llama-bf16", lb),
                                 ("llama.cpp q8_0, 2 threads", "llama-q8_0", lq)])

    serve = {w: load(r, f"serve-workers{w}") for w in (0, 2)}
    tokens = next((s["max_tokens"] for s in serve.values() if s), "?")
    out(f"\nServe: decode tokens/s with B concurrent /v1/completions ({tokens} tokens each, greedy, ignore_eos)")
    out(f"  {'server':<44}{'B=1':>10}{'B=8':>10}{'B=32':>10}   (end-to-end incl. prefill: B=8, B=32; medians of repeats)")
    batch_rate = {}
    pairs = {}
    for w in (0, 2):
        s = serve[w]
        name = f"switchyard serve --workers {w}"
        if s is None:
            out(f"  {name:<44}{'—':>10}{'—':>10}{'—':>10}   skipped: {reason(r, f'serve-workers{w}')}")
            continue
        by = {}  # batch -> its runs (a batch may be measured several times, interleaved with others)
        for b in s["batches"]:
            by.setdefault(b["batch"], []).append(b)
        for b, runs in by.items():
            batch_rate[(w, b)] = statistics.median(run["decode_tokens_per_s"] for run in runs)
        # Batch 32 over the batch 1 measured just before it in the same server, pair by pair.
        pairs[w] = [after["decode_tokens_per_s"] / before["decode_tokens_per_s"]
                    for before, after in zip(s["batches"], s["batches"][1:])
                    if before["batch"] == 1 and after["batch"] == 32 and before["decode_tokens_per_s"] > 0]
        e2e = ", ".join(fmt(statistics.median(run["end_to_end_tokens_per_s"] for run in by[b])) if b in by else "—"
                        for b in (8, 32))
        out(f"  {name:<44}{fmt(batch_rate.get((w, 1))):>10}{fmt(batch_rate.get((w, 8))):>10}{fmt(batch_rate.get((w, 32))):>10}   ({e2e})")

    d_in = figure(sy_in, "decode_tokens_per_s")
    d_w2 = figure(sy_w2, "decode_tokens_per_s")
    out("\nRatios (same run; where both sides ran in every round, the median of the rounds' ratios)")

    def paired(ours, peer, key):
        """The median of round-by-round ratios when both were run in the same rounds, else the ratio of medians."""
        a, b = (ours or {}).get("timing_runs"), (peer or {}).get("timing_runs")
        if a and b and len(a) == len(b):
            ratios = [x[key] / y[key] for x, y in zip(a, b) if y[key]]
            if ratios:
                return statistics.median(ratios), ratios
        return ratio(figure(ours, key), figure(peer, key)), None

    def row(name, ours, peer):
        prefill_ratio, _ = paired(ours, peer, "prefill_tokens_per_s")
        decode_ratio, rounds = paired(ours, peer, "decode_tokens_per_s")
        note = "   round by round " + " / ".join(fmt(x, 2) for x in rounds) if rounds else None
        return name, prefill_ratio, decode_ratio, note

    table = [row(f"Switchyard {label} ÷ {peer}", ours, result)
             for peer, result in [("transformers bf16", hf), ("llama.cpp bf16", lb), ("llama.cpp q8_0", lq)]
             for label, ours in (("in-process", sy_in), ("2 workers", sy_w2))]
    table.append(row("Switchyard 2 workers ÷ in-process", sy_w2, sy_in))
    table.append(row("Switchyard q8 in-process ÷ llama.cpp q8_0", sy_q8, lq))
    out(f"  {'':<48}{'prefill':>10}{'decode':>10}")
    for name, a, b, note in table:
        out(f"  {name:<48}{fmt(a, 2):>10}{fmt(b, 2):>10}{note or ''}")
    out(f"  {'Switchyard in-process decode ÷ floor (1 thread)':<58}{fmt(ratio(d_in, floor_1t), 2):>10}")
    out(f"  {'Switchyard in-process decode ÷ floor (2 threads)':<58}{fmt(ratio(d_in, floor_2t), 2):>10}")
    out(f"  {'Switchyard 2 workers decode ÷ floor (2 threads)':<58}{fmt(ratio(d_w2, floor_2t), 2):>10}")
    for peer, result in [("transformers", hf), ("llama.cpp bf16", lb)]:
        out(f"  {peer + ' decode ÷ floor (2 threads)':<58}{fmt(ratio(timing(result)[1], floor_2t), 2):>10}")
    for name, result in [("Switchyard in-process", sy_in), ("llama.cpp bf16", lb)]:
        round_floor_row(out, r, "", f"{name} decode ÷ its round's floor (2 thr.)", result, active_bytes)
    for w in (0, 2):
        out(f"  {f'serve --workers {w} batch-8 ÷ batch-1 decode':<58}{fmt(ratio(batch_rate.get((w, 8)), batch_rate.get((w, 1))), 2):>10}")
        ratios = pairs.get(w) or []
        median = statistics.median(ratios) if ratios else None
        each = "   back-to-back pairs " + " / ".join(fmt(x, 2) for x in ratios) if len(ratios) > 1 else ""
        out(f"  {f'serve --workers {w} batch-32 ÷ batch-1 decode':<58}{fmt(median, 2):>10}{each}")
    wire = (serve[2] or {}).get("wire")
    if wire:
        out(f"  {'bytes on the wire per token ÷ minimum (serve --workers 2)':<58}{fmt(wire['bytes_per_token'] / wire['minimum_bytes_per_token'], 2):>10}"
            f"   ({wire['bytes_per_token']:.0f} B vs {wire['minimum_bytes_per_token']} B: bf16 hidden state to one worker and back per MoE layer)")
    out(f"  {'serve batch-32: 2 workers ÷ in-process':<58}{fmt(ratio(batch_rate.get((2, 32)), batch_rate.get((0, 32))), 2):>10}")
    out(f"  {'serve batch-32 (in-process) ÷ llama.cpp bf16 batch-1 decode':<58}{fmt(ratio(batch_rate.get((0, 32)), timing(lb)[1]), 2):>10}")
    # The bandwidth of the run's start, and the best dot peak of the start and of `floors --peak` before
    # each serve batch (a peak below the others is a CPU taken away for a moment). The bandwidth is not
    # taken at its best: a fast spell lowers the ceiling (the batch-32 arithmetic then outlasts its
    # reads), and the pairs below are held against the floors of their own minutes.
    batch_floors = [b.get("floors") for w in (0, 2) if serve[w] for b in serve[w]["batches"]]
    ceiling_floors = [f for f in [floors] + batch_floors if f and f.get("dot_gflops_2t")]
    if ceiling_floors:
        # What this machine allows batch 32 ÷ batch 1 to be: batch 1 reads the active weights (memory
        # bound); a batch-32 step reads every expert once and does 32 tokens' arithmetic.
        peaks = [f["dot_gflops_2t"] for f in ceiling_floors]
        reads = [f["membw_gbs_2t"] for f in ceiling_floors]
        bandwidth_gbs = reads[0]
        overlapped, serial, (one, memory, arithmetic) = batch32_ceiling(config, bandwidth_gbs, max(peaks))
        measured = pairs.get(0)
        where = (f"the read bandwidth of the run's start and the best of {len(ceiling_floors)} peaks, the start's "
                 f"and those before each serve batch: {ceiling_floors[0]['dot_kind']} {min(peaks):.0f}–{max(peaks):.0f} "
                 f"GFLOP/s, reads {min(reads):.1f}–{max(reads):.1f} GB/s" if len(ceiling_floors) > 1
                 else f"this run's floors: {ceiling_floors[0]['dot_kind']} {peaks[0]:.0f} GFLOP/s, read {reads[0]:.1f} GB/s")
        out(f"\nBatch-32 bound (2 threads, bf16 weights; {where})")
        out(f"  batch-1 step: {step_params(config, 1) * 2 / 1e6:,.0f} MB of weights = {one * 1e3:.1f} ms at {bandwidth_gbs:.1f} GB/s")
        out(f"  batch-32 step: {step_params(config, 32) * 2 / 1e6:,.0f} MB of weights = {memory * 1e3:.1f} ms; "
            f"{32 * 2 * params / 1e9:.1f} GFLOP = {arithmetic * 1e3:.1f} ms at the peak")
        out(f"  {'batch-32 ÷ batch-1 ceiling, reads and arithmetic fully overlapped':<70}{fmt(overlapped, 2):>8}")
        out(f"  {'batch-32 ÷ batch-1 ceiling, reads and arithmetic one after the other':<70}{fmt(serial, 2):>8}")
        out(f"  {'measured (serve --workers 0, median of back-to-back pairs)':<70}{fmt(statistics.median(measured) if measured else None, 2):>8}")
        if measured:
            out(f"  {'measured ÷ the overlapped ceiling':<70}{fmt(statistics.median(measured) / overlapped, 2):>8}")
        for w in (0, 2):
            # Each pair against the ceiling of its own minutes (the floors measured right before its two batches).
            own = pair_ceiling_ratios(config, serve[w]["batches"]) if serve[w] else []
            if own:
                out(f"  {f'serve --workers {w}: each pair ÷ the ceiling of its own floors':<70}"
                    f"{fmt(statistics.median(own), 2):>8}   pairs " + " / ".join(fmt(x, 2) for x in own))
            # Where the floors measured both `vdpbf16ps` and the f32 FMA, the same pairs against the other
            # one's peak (the instruction the kernels use at 5 rows and more is `vdpbf16ps`).
            other = pair_ceiling_ratios(config, serve[w]["batches"], "dot_other_gflops_2t") if serve[w] else []
            kinds = [b["floors"].get("dot_other_kind") for b in serve[w]["batches"] if b.get("floors")] if serve[w] else []
            if other and kinds and kinds[0]:
                out(f"  {f'serve --workers {w}: each pair ÷ that ceiling at the {kinds[0]} peak':<70}"
                    f"{fmt(statistics.median(other), 2):>8}   pairs " + " / ".join(fmt(x, 2) for x in other))
    link_section(out, r, config, batch_rate)
    curve_section(out, r, batch_rate)
    qwen_section(out, r, args, floor_2t_bandwidth=floors["membw_gbs_2t"] if floors else None, paired=paired,
                 mixtral_llama_ratio=paired(sy_in, lb, "decode_tokens_per_s")[0], timing=timing)
    decode_floor_section(out, r)
    deepseek_section(out, r, args, paired=paired, timing=timing)
    gptoss_section(out, r, args, floor_2t_bandwidth=floors["membw_gbs_2t"] if floors else None, paired=paired,
                   timing=timing)
    skipped = sorted(f[:-5] for f in os.listdir(r) if f.endswith(".skip"))
    if skipped:
        out("\nSkipped: " + "; ".join(f"{s}: {reason(r, s)}" for s in skipped))
    print("\n".join(lines))


def link_section(out, r, config, batch_rate):
    """2 workers through a link that delays every byte (Benchmarks/delay_proxy.py), against loopback.

    Every MoE layer of a decode step waits for one round trip to the workers, so a delay d each way
    adds about 2·d·layers to every step whatever the batch: the predicted rate is
    B ÷ (B ÷ loopback rate + 2·(d + the proxy's own lateness)·layers)."""
    runs = [(name, load(r, name)) for name in ("serve-link0.2", "serve-link1", "serve-link1-micro2")]
    if not any(result for _, result in runs):
        out(f"\nSlow link: skipped: {reason(r, 'serve-link1')}")
        return
    layers = config["num_hidden_layers"]
    out(f"\nSlow link: serve --workers 2 through a proxy delaying each direction (no netem in this kernel); "
        f"decode tok/s; predicted adds 2 × delay × {layers} layers to each step")
    out(f"  {'link':<40}{'B=1':>9}{'B=8':>9}{'B=32':>9}   {'B=1 ÷ in-process':>17}{'B=1 predicted':>15}   proxy lateness")
    for name, result in runs:
        if result is None:
            out(f"  {name:<40}   skipped: {reason(r, name)}")
            continue
        link = result.get("link", {})
        delay = link.get("delay_us", 0) / 1e6
        late = link.get("mean_late_us", 0) / 1e6
        rates = {b["batch"]: b["decode_tokens_per_s"] for b in result["batches"]}
        loopback = batch_rate.get((2, 1))
        predicted = None if not loopback else 1 / (1 / loopback + 2 * (delay + late) * layers)
        label = f"{delay * 1e3:g} ms each way" + (", --micro-batches 2" if "micro" in name else "")
        out(f"  {label:<40}{fmt(rates.get(1)):>9}{fmt(rates.get(8)):>9}{fmt(rates.get(32)):>9}   "
            f"{fmt(ratio(rates.get(1), batch_rate.get((0, 1))), 2):>17}{fmt(predicted):>15}   "
            f"mean {late * 1e6:.0f} µs, p99 {link.get('p99_late_us', 0):.0f} µs")


def curve_section(out, r, batch_rate):
    """2 workers over loopback with the worker link encrypted (CURVE, the default) against --insecure and
    against in-process (serve --workers 0), measured in alternating rounds of the same run: each ratio is the
    median of the rounds' ratios (the rounds listed), so that a slow spell of the machine falls on both sides."""
    import glob
    runs = {}
    for link in ("inprocess", "insecure", "curve"):
        paths = sorted(glob.glob(os.path.join(r, f"serve-curve-{link}.run*.json")))
        runs[link] = {os.path.basename(p).rsplit(".run", 1)[1]: json.loads(open(p).read().strip().splitlines()[-1])
                      for p in paths}
    if not runs["insecure"] or not runs["curve"]:
        out(f"\nCURVE: skipped: {reason(r, 'serve-curve')}")
        return

    def value(result, batch, key):
        values = [b[key] for b in result["batches"] if b["batch"] == batch and key in b]
        return statistics.median(values) if values else None

    def median(link, batch, key):
        values = [v for v in (value(result, batch, key) for result in runs[link].values()) if v]
        return statistics.median(values) if values else None

    def rounds(a, b, batch, key):
        ratios = [value(runs[a][n], batch, key) / value(runs[b][n], batch, key)
                  for n in sorted(runs[a]) if n in runs[b] and value(runs[a][n], batch, key) and value(runs[b][n], batch, key)]
        return (statistics.median(ratios) if ratios else None), ratios

    first = next(iter(runs["curve"].values()))
    wire = first.get("wire", {})
    out(f"\nCURVE on the worker link: serve --workers 2 over loopback, CURVE (the default) against --insecure and "
        f"in-process (--workers 0), {len(runs['curve'])} alternating rounds; {wire.get('bytes_per_token', 0):.0f} bytes "
        f"on the wire per token; ratios: medians of the rounds' ratios; tokens per request: "
        + ", ".join(f"B={b['batch']} {b.get('max_tokens', first.get('max_tokens', '?'))}" for b in first["batches"]))
    out(f"  {'':<22}{'in-proc':>9}{'insecure':>10}{'CURVE':>9}{'CURVE÷insecure':>16}{'CURVE÷in-process':>18}   rounds (CURVE÷in-process)")
    for batch in (1, 32):
        for key, label in (("prefill_tokens_per_s", "prefill tok/s"), ("decode_tokens_per_s", "decode tok/s")):
            plain, curve, inproc = median("insecure", batch, key), median("curve", batch, key), median("inprocess", batch, key)
            vs_plain, _ = rounds("curve", "insecure", batch, key)
            vs_inproc, each = rounds("curve", "inprocess", batch, key)
            out(f"  {f'B={batch} {label}':<22}{fmt(inproc):>9}{fmt(plain):>10}{fmt(curve):>9}{fmt(vs_plain, 2):>16}"
                f"{fmt(vs_inproc, 2):>18}   {' / '.join(fmt(x, 2) for x in each)}")


def machine_section(out, r):
    """What ran: the CPU and Switchyard's kernel path, and each peer's build (from its own result file)."""
    system = load(r, "system")
    out("\nMachine and builds")
    if system:
        forced = f" (forced by SWITCHYARD_KERNEL={system['forced_kernel_path']})" if system.get("forced_kernel_path") else ""
        out(f"  CPU: {system['cpu_model']}, {system['logical_cpus']} logical CPUs; features: {' '.join(system['cpu_features'])}")
        prefetch = ""
        if "weight_prefetch" in system:
            how = f"SWITCHYARD_STREAM_PREFETCH={system['forced_weight_prefetch']}" if system.get("forced_weight_prefetch") else "by CPU maker"
            prefetch = f"; AVX-512 weight prefetch {'on' if system['weight_prefetch'] else 'off'} ({how})"
        out(f"  Switchyard kernel path: {system['kernel_path']}{forced}; supported here: {' '.join(system['supported_kernel_paths'])}{prefetch}")
    else:
        out(f"  Switchyard: {reason(r, 'system')}")
    llama = next((load(r, name) for name in ("llama-bf16", "llama-q8_0", "qwen3moe-llama-bf16") if load(r, name)), None)
    if llama and llama.get("system_info"):
        out(f"  llama.cpp (llama-cpp-python {llama.get('llama_cpp_python')}): {llama['system_info']}")
    hf = load(r, "transformers") or load(r, "qwen3moe-transformers")
    if hf and hf.get("cpu_capability"):
        out(f"  transformers {hf.get('transformers')} on torch {hf.get('torch')}: ATen CPU capability {hf['cpu_capability']}")


def engine_rows(out, r, timing, rows, extra=None):
    """One line per engine: prefill and decode (tokens/s, medians) and, where it ran several times, each
    run's decode; `extra(result)` adds a column (e.g. KV-cache bytes per token)."""
    for name, key, result in rows:
        if result is None:
            column = f"{'—':>16}" if extra else ""
            out(f"  {name:<44}{'—':>10}{'—':>10}{column}   skipped: {reason(r, key)}")
            continue
        p, d = timing(result)
        runs = result.get("timing_runs")
        spread = ("   median of " + str(len(runs)) + " runs, decode " + " / ".join(fmt(x.get("decode_tokens_per_s")) for x in runs)
                  if runs and len(runs) > 1 else "")
        column = f"{extra(result):>16}" if extra else ""
        out(f"  {name:<44}{fmt(p):>10}{fmt(d):>10}{column}{spread}")


def ratio_rows(out, paired, rows):
    """One line per comparison: the prefill and decode ratios (medians of the rounds where both ran in
    every round), with the rounds' decode ratios."""
    for name, ours, peer in rows:
        prefill_ratio, _ = paired(ours, peer, "prefill_tokens_per_s")
        decode_ratio, rounds = paired(ours, peer, "decode_tokens_per_s")
        note = "   round by round " + " / ".join(fmt(x, 2) for x in rounds) if rounds else ""
        out(f"  {name:<48}{fmt(prefill_ratio, 2):>10}{fmt(decode_ratio, 2):>10}{note}")


def decode_floor_section(out, r):
    """switchyard-bench decode-floor: Switchyard's and llama.cpp's batch-1 decode and the read floor taken
    next to each other in every round (Benchmarks/Sources/switchyard-bench/DecodeFloor.swift)."""
    names = [("model", "none", "Mixtral-shaped, bf16"), ("model", "q8", "Mixtral-shaped, q8 (llama.cpp q8_0)"),
             ("model-qwen3moe", "none", "Qwen3-MoE-shaped, bf16"),
             ("model-qwen3moe", "q8", "Qwen3-MoE-shaped, q8 (llama.cpp q8_0)")]
    found = [(label, load(r, f"decode-floor-{d}-{q}"), f"decode-floor-{d}-{q}") for d, q, label in names]
    if not any(result for _, result, _ in found):
        out(f"\nDecode beside the floor, round by round: skipped: {reason(r, 'decode-floor')}")
        return
    path = next(result["kernel_path"] for _, result, _ in found if result)
    out(f"\nBatch-1 decode beside the read floor and llama.cpp, round by round (switchyard-bench decode-floor, kernel path {path};")
    out("one process alternates 3 read passes, Switchyard's decode, 3 passes, llama.cpp's decode, 3 passes; floor: the best")
    out("or the median of the 6 passes around each decode; medians of the rounds, their range in brackets)")

    def cell(result, key):
        figure = (result or {}).get(key)
        if not figure:
            return "—"
        return f"{figure['median']:.2f} ({min(figure['rounds']):.2f}–{max(figure['rounds']):.2f})"

    out(f"  {'':<40}{'÷ best pass':>18}{'÷ median pass':>18}{'llama.cpp ÷ best':>18}{'llama.cpp ÷ median':>20}{'÷ llama.cpp':>18}")
    for label, result, name in found:
        if result is None:
            out(f"  {label:<40}skipped: {reason(r, name)}")
            continue
        out(f"  {label:<40}{cell(result, 'divided_by_best'):>18}{cell(result, 'divided_by_median'):>18}"
            f"{cell(result, 'llama_divided_by_best'):>18}{cell(result, 'llama_divided_by_median'):>20}{cell(result, 'versus_llama'):>18}")


def qwen_section(out, r, args, floor_2t_bandwidth, paired, mixtral_llama_ratio, timing):
    """The Qwen3-MoE-shaped model: many small experts (8 of 128 a token), batch 1."""
    sy = load(r, "qwen3moe-switchyard-inprocess")
    sq = load(r, "qwen3moe-switchyard-inprocess-q8")
    lb = load(r, "qwen3moe-llama-bf16")
    lq = load(r, "qwen3moe-llama-q8_0")
    hf = load(r, "qwen3moe-transformers")
    path = os.path.join(args.qwen3moe_model or "", "config.json")
    if not os.path.exists(path):
        out(f"\nQwen3-MoE-shaped model: skipped: {reason(r, 'qwen3moe-switchyard-inprocess')}")
        return
    config = json.load(open(path))
    experts, ffn = expert_shape(config)
    params = active_params(config)
    out(f"\nQwen3-MoE-shaped model (hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, {experts} experts "
        f"top-{config['num_experts_per_tok']}, expert FFN {ffn}, q/k norm, bf16): {params / 1e6:.1f} M active parameters "
        f"= {params * 2 / 1e6:.0f} MB read per decoded token")
    out(f"  {'engine':<44}{'prefill':>10}{'decode':>10}")
    engine_rows(out, r, timing, [("Switchyard, in-process", "qwen3moe-switchyard-inprocess", sy),
                                 ("Switchyard, in-process, --quantize q8", "qwen3moe-switchyard-inprocess-q8", sq),
                                 ("transformers CPU bf16, 2 threads", "qwen3moe-transformers", hf),
                                 ("llama.cpp bf16, 2 threads", "qwen3moe-llama-bf16", lb),
                                 ("llama.cpp q8_0, 2 threads", "qwen3moe-llama-q8_0", lq)])
    out(f"  {'':<48}{'prefill':>10}{'decode':>10}")
    ratio_rows(out, paired, [("Switchyard ÷ llama.cpp bf16", sy, lb), ("Switchyard ÷ transformers bf16", sy, hf),
                             ("Switchyard q8 ÷ llama.cpp q8_0", sq, lq)])
    decode_ratio = paired(sy, lb, "decode_tokens_per_s")[0]
    out(f"  {'decode ÷ llama.cpp bf16 here ÷ the same on the Mixtral model':<58}{fmt(ratio(decode_ratio, mixtral_llama_ratio), 2):>10}")
    if floor_2t_bandwidth:
        floor = floor_2t_bandwidth * 1e9 / (params * 2)
        out(f"  {'decode floor (bandwidth ÷ active bf16 bytes, 2 threads)':<58}{fmt(floor):>10} tok/s")
        for name, result in [("Switchyard", sy), ("llama.cpp bf16", lb)]:
            out(f"  {name + ' decode ÷ floor (2 threads)':<58}{fmt(ratio(timing(result)[1] if result else None, floor), 2):>10}")
    for name, result in [("Switchyard", sy), ("llama.cpp bf16", lb)]:
        round_floor_row(out, r, "qwen3moe-", f"{name} decode ÷ its round's floor (2 threads)", result, params * 2)


def deepseek_section(out, r, args, paired, timing):
    """The DeepSeek-V3-shaped model: latent attention and its compressed cache, shared + grouped routed experts."""
    sy = load(r, "deepseek-switchyard-inprocess")
    sf = load(r, "deepseek-fp8-switchyard-inprocess")
    ll = load(r, "deepseek-llama-bf16")
    hf = load(r, "deepseek-transformers")
    path = os.path.join(args.deepseek_model or "", "config.json")
    if not os.path.exists(path) or sy is None:
        out(f"\nDeepSeek-shaped model: skipped: {reason(r, 'deepseek-switchyard-inprocess')}")
        return
    c = json.load(open(path))
    out(f"\nDeepSeek-V3-shaped model (hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, MLA with kv_lora_rank "
        f"{c['kv_lora_rank']} + rope {c['qk_rope_head_dim']}, {c['n_routed_experts']} routed experts top-{c['num_experts_per_tok']} "
        f"in {c['n_group']} groups (keep {c['topk_group']}), {c['n_shared_experts']} shared, bf16)")
    out(f"  {'engine':<44}{'prefill':>10}{'decode':>10}{'KV bytes/token':>16}")
    def kv_bytes(result):
        kv = (result.get("timing") or {}).get("kv_cache_bytes_per_token") or result.get("kv_cache_bytes_per_token")
        return str(kv) if kv else "—"

    engine_rows(out, r, timing, [("Switchyard, in-process (latent cache)", "deepseek-switchyard-inprocess", sy),
                                 ("Switchyard, in-process, FP8 weights", "deepseek-fp8-switchyard-inprocess", sf),
                                 ("transformers CPU bf16, 2 threads", "deepseek-transformers", hf),
                                 ("llama.cpp bf16, 2 threads", "deepseek-llama-bf16", ll)], extra=kv_bytes)
    ratio_rows(out, paired, [("Switchyard ÷ llama.cpp bf16", sy, ll), ("Switchyard ÷ transformers bf16", sy, hf),
                             ("Switchyard FP8 ÷ Switchyard bf16 (same shape)", sf, sy)])
    full = c["num_hidden_layers"] * c["num_attention_heads"] * (c["qk_nope_head_dim"] + c["qk_rope_head_dim"] + c["v_head_dim"]) * 2
    latent = c["num_hidden_layers"] * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 2
    out(f"  KV bytes/token at bf16: full keys and values {full}, the compressed latent {latent} ({full / latent:.1f}× fewer)")


def gptoss_bytes_per_token(config):
    """Bytes one decoded token reads from a gpt-oss checkpoint with MXFP4 experts: attention (bf16, with
    biases), router (bf16), top-k experts' gate_up and down in MXFP4 (4 bits a weight + one e8m0 scale per
    32, so 4.25 bits) and the LM head (bf16); the embedding row is negligible."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    attention = 2 * (hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2)
    router = 2 * hidden * config["num_local_experts"]
    experts = config["num_experts_per_tok"] * 3 * hidden * config["intermediate_size"] * 4.25 / 8
    return layers * (attention + router + experts) + 2 * hidden * config["vocab_size"]


def gptoss_section(out, r, args, floor_2t_bandwidth, paired, timing):
    """The gpt-oss-shaped model: experts in MXFP4 as released, against llama.cpp's MXFP4 GGUF of the same weights."""
    sy = load(r, "gptoss-switchyard-inprocess")
    ll = load(r, "gptoss-llama-mxfp4")
    path = os.path.join(args.gptoss_model or "", "config.json")
    if not os.path.exists(path) or sy is None:
        out(f"\ngpt-oss-shaped model: skipped: {reason(r, 'gptoss-switchyard-inprocess')}")
        return
    config = json.load(open(path))
    per_token = gptoss_bytes_per_token(config)
    out(f"\ngpt-oss-shaped model (hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
        f"{config['num_local_experts']} experts top-{config['num_experts_per_tok']}, expert FFN {config['intermediate_size']}, "
        f"MXFP4 experts, the rest bf16): {per_token / 1e6:.0f} MB read per decoded token")
    out(f"  {'engine':<44}{'prefill':>10}{'decode':>10}")
    engine_rows(out, r, timing, [("Switchyard, in-process (MXFP4 kernels)", "gptoss-switchyard-inprocess", sy),
                                 ("llama.cpp MXFP4 GGUF, 2 threads", "gptoss-llama-mxfp4", ll)])
    ratio_rows(out, paired, [("Switchyard ÷ llama.cpp (MXFP4 against MXFP4)", sy, ll)])
    if floor_2t_bandwidth:
        floor = floor_2t_bandwidth * 1e9 / per_token
        out(f"  {'decode floor (bandwidth ÷ bytes per token, 2 threads)':<58}{fmt(floor):>10} tok/s")
        for name, result in [("Switchyard", sy), ("llama.cpp MXFP4", ll)]:
            out(f"  {name + ' decode ÷ floor (2 threads)':<58}{fmt(ratio(timing(result)[1] if result else None, floor), 2):>10}")


if __name__ == "__main__":
    main()
