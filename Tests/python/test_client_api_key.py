"""The commands that talk to the HTTP API send an API key from --api-key-file (its first key) or
SWITCHYARD_API_KEY: `health` then sees a keyed server's reason, and balance, rebalance and
generate work against a keyed server; without a key they are refused."""
import os
import subprocess
import tempfile

from conftest import BIN, Cluster, _wait_for


def key_file(directory, text):
    path = os.path.join(directory, "api-keys")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def run(args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})


def test_health_with_a_key_sees_the_reason(model):
    work = tempfile.mkdtemp(prefix="switchyard-client-key-")
    keys = key_file(work, "ops:k-ops-5c1\n")
    log = os.path.join(work, "serve.log")
    # One worker expected and none started: not ready, and the reason names the worker endpoint.
    proc = subprocess.Popen([BIN, "serve", "--model", model, "--workers", "1", "--bind", "tcp://127.0.0.1:0",
                             "--http", "127.0.0.1:0", "--insecure", "--api-key-file", keys],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = _wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", proc, log).group(1)
        anonymous = run(["health", "--server", base], env={"SWITCHYARD_API_KEY": None})
        assert anonymous.returncode != 0
        assert "unavailable" in anonymous.stderr + anonymous.stdout
        assert "tcp://" not in anonymous.stderr + anonymous.stdout
        for args, env in [(["--api-key-file", keys], {"SWITCHYARD_API_KEY": None}),
                          ([], {"SWITCHYARD_API_KEY": "k-ops-5c1"})]:
            keyed = run(["health", "--server", base, *args], env=env)
            assert keyed.returncode != 0
            assert "workers are ready" in keyed.stderr + keyed.stdout, keyed
            assert "tcp://127.0.0.1" in keyed.stderr + keyed.stdout, keyed
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_balance_rebalance_generate_against_a_keyed_server(model):
    work = tempfile.mkdtemp(prefix="switchyard-client-key-")
    keys = key_file(work, "# the first key is the one clients send\nbatch:k-batch-8e4\nops:k-ops-2a7\n")
    wrong = key_file(tempfile.mkdtemp(prefix="switchyard-client-key-"), "k-wrong-000\n")
    cluster = Cluster(model, extra=["--api-key-file", keys])
    try:
        no_key = {"SWITCHYARD_API_KEY": None}
        refused = run(["generate", "--server", cluster.base, "--prompt", "hello", "--max-tokens", "3"], env=no_key)
        assert refused.returncode != 0
        assert "401" in refused.stderr or "API key" in refused.stderr, refused
        wrong_key = run(["generate", "--server", cluster.base, "--prompt", "hello", "--max-tokens", "3",
                         "--api-key-file", wrong], env=no_key)
        assert wrong_key.returncode != 0

        for args, env in [(["--api-key-file", keys], no_key), ([], {"SWITCHYARD_API_KEY": "k-ops-2a7"})]:
            generated = run(["generate", "--server", cluster.base, "--prompt", "hello", "--max-tokens", "3", *args],
                            env=env)
            assert generated.returncode == 0, generated
            balance = run(["balance", "--server", cluster.base, *args], env=env)
            assert balance.returncode == 0, balance
            assert "balancedness" in balance.stdout.lower(), balance.stdout
            rebalance = run(["rebalance", "--server", cluster.base, "--dry-run", *args], env=env)
            assert rebalance.returncode == 0, rebalance

        assert run(["balance", "--server", cluster.base], env=no_key).returncode != 0
        assert run(["rebalance", "--server", cluster.base, "--dry-run"], env=no_key).returncode != 0
    finally:
        cluster.stop()
    with open(os.path.join(cluster.dir, "serve.log"), encoding="utf-8") as handle:
        text = handle.read()
    assert "k-batch" not in text and "k-ops" not in text


def test_generate_refuses_a_key_without_server(model):
    result = run(["generate", "--model", model, "--prompt", "x", "--api-key", "k"])
    assert result.returncode != 0
    assert "--api-key" in result.stderr and "--server" in result.stderr, result.stderr
