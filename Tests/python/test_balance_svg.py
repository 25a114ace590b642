"""`switchyard balance --svg` renders in a real browser: headless Chromium takes a screenshot of the
heatmap and the hottest expert's cell shows the hot colour, distinct from the coldest expert's."""
import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, post

HOT = (0x80, 0x00, 0x26)  # the heat scale's top (LoadReportFormat.color at the maximum)
SVG_NS = "{http://www.w3.org/2000/svg}"


def chromium_binary():
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    for path in ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/headless_shell"):
        if os.access(path, os.X_OK):
            return path
    return None


def cell_frames(svg_path):
    """id -> (x, y, width, height) of every heatmap cell."""
    frames = {}
    for rect in ET.parse(svg_path).getroot().iter(SVG_NS + "rect"):
        if rect.get("id"):
            frames[rect.get("id")] = tuple(int(rect.get(k)) for k in ("x", "y", "width", "height"))
    return frames


def close(a, b, tolerance=6):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def test_svg_heatmap_shows_the_hot_experts_in_chromium(cluster):
    browser = chromium_binary()
    if browser is None:
        pytest.skip("no Chromium binary (chromium-headless-shell or chromium) found; Deploy/install-deps.sh installs it")
    for prompt in ("heat", "more heat", "a longer prompt to route some tokens"):
        status, answer = post(cluster.base, "/v1/completions",
                              {"prompt": prompt, "max_tokens": 6, "temperature": 0, "ignore_eos": True})
        assert status == 200, answer

    work = tempfile.mkdtemp(prefix="switchyard-svg-")
    svg = os.path.join(work, "load.svg")
    out = subprocess.run([BIN, "balance", "--server", cluster.base, "--json", "--svg", svg],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    counts = report["tokens_per_expert"]
    cells = [(count, layer, expert) for layer, row in enumerate(counts) for expert, count in enumerate(row)]
    hot_count, hot_layer, hot_expert = max(cells)
    cold_count, cold_layer, cold_expert = min(cells)
    assert hot_count > cold_count, counts

    frames = cell_frames(svg)
    root = ET.parse(svg).getroot()
    width, height = int(root.get("width")), int(root.get("height"))
    png = os.path.join(work, "load.png")
    shot = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", f"--window-size={width},{height}",
                           f"--screenshot={png}", "file://" + svg],
                          capture_output=True, text=True, timeout=120)
    assert os.path.exists(png), f"{browser} wrote no screenshot: {shot.stderr[-2000:]}"
    image = Image.open(png).convert("RGB")

    def pixel(cell_id):
        x, y, w, h = frames[cell_id]
        return image.getpixel((x + 3, y + 3))  # a corner: away from the cell's number

    hot = pixel(f"expert-{hot_layer}-{hot_expert}")
    cold = pixel(f"expert-{cold_layer}-{cold_expert}")
    assert close(hot, HOT), f"hottest expert (layer {hot_layer}, expert {hot_expert}, {hot_count} tokens) is {hot}"
    assert not close(cold, HOT, tolerance=40), f"coldest expert ({cold_count} tokens) is {cold}, like the hot one"
    assert sum(cold) > sum(hot) + 200, f"cold {cold} is not much lighter than hot {hot}"

    # The layers × workers map: the busiest (layer, worker) is hot too.
    rows = [(worker["layers"][layer]["expert_rows"], layer, index)
            for index, worker in enumerate(report["workers"]) for layer in range(len(counts))]
    busy_rows, busy_layer, busy_worker = max(rows)
    assert busy_rows > 0
    assert close(pixel(f"worker-{busy_layer}-{busy_worker}"), HOT)


def test_balance_table_csv_and_metrics(cluster):
    post(cluster.base, "/v1/completions", {"prompt": "table", "max_tokens": 3, "temperature": 0})
    table = subprocess.run([BIN, "balance", "--server", cluster.base], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "Hottest experts" in table.stdout and "Workers" in table.stdout
    csv = subprocess.run([BIN, "balance", "--server", cluster.base, "--csv", "--window", "5m"],
                         capture_output=True, text=True, timeout=120)
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("period,layer,kind,name,tokens")
    assert any(line.startswith("run,0,worker,w0,") for line in lines)

    import urllib.request
    with urllib.request.urlopen(cluster.base + "/metrics", timeout=30) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    assert families["switchyard_layer_balancedness"].type == "gauge"
    assert all(0 < s.value <= 1 for s in families["switchyard_layer_balancedness"].samples)
    dispatch = families["switchyard_worker_dispatch_seconds"]
    assert dispatch.type == "histogram"
    counts = {s.labels["worker"]: s.value for s in dispatch.samples if s.name.endswith("_count")}
    assert set(counts) == {"w0", "w1"} and all(v > 0 for v in counts.values()), counts


def test_recording_holds_the_routing_of_the_steps_between_start_and_stop(cluster):
    status, started = post(cluster.base, "/v1/expert_load/record/start", {})
    assert status == 200 and started["recording"] is True, started
    status, answer = post(cluster.base, "/v1/completions",
                          {"prompt": "record this", "max_tokens": 5, "temperature": 0, "ignore_eos": True})
    assert status == 200, answer
    status, stopped = post(cluster.base, "/v1/expert_load/record/stop", {})
    assert status == 200 and stopped["recording"] is False, stopped
    out = subprocess.run([BIN, "balance", "--server", cluster.base, "--record", "read"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    recording = json.loads(out.stdout)
    steps = recording["steps"]
    assert steps and recording["dropped_steps"] == 0
    prompt_tokens = answer["usage"]["prompt_tokens"]
    # The prompt, then the 4 sampled tokens fed back (the 5th is not fed).
    assert sum(s["prefill_tokens"] for s in steps) == prompt_tokens
    assert sum(s["decode_tokens"] for s in steps) == 4
    k = 2  # the conftest model routes each token to its top 2 experts
    for layer_counts in recording["tokens_per_expert"]:
        assert sum(layer_counts) == k * (prompt_tokens + 4)
