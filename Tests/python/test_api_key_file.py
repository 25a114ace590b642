"""`serve --api-key-file`: several named keys, none of them in `ps` or in the log; and
SWITCHYARD_API_KEY from the environment."""
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

from conftest import BIN, _wait_for


def status(base, path, key=None):
    request = urllib.request.Request(base + path, headers={"authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def serve(model, work, args, env=None):
    log = os.path.join(work, "serve.log")
    proc = subprocess.Popen([BIN, "serve", "--model", model, "--workers", "0", "--http", "127.0.0.1:0", *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    base = _wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", proc, log).group(1)
    return proc, base, log


def test_api_key_file_with_named_keys(model):
    work = tempfile.mkdtemp(prefix="switchyard-api-keys-")
    keys = os.path.join(work, "api-keys")
    with open(keys, "w", encoding="utf-8") as handle:
        handle.write("# operators and a batch job\nalice:k-alice-31f#x\nbatch:k-batch-9d2\n")
    proc, base, log = serve(model, work, ["--api-key-file", keys, "--log-level", "debug"])
    try:
        assert status(base, "/v1/models", "k-alice-31f#x") == 200
        assert status(base, "/v1/models", "k-batch-9d2") == 200
        assert status(base, "/v1/models", "k-alice-31f") == 401
        assert status(base, "/v1/models") == 401
        with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
            assert b"k-alice" not in handle.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with open(log, encoding="utf-8") as handle:
        text = handle.read()
    assert "k-alice" not in text and "k-batch" not in text, text


def test_api_key_from_the_environment(model):
    work = tempfile.mkdtemp(prefix="switchyard-api-keys-")
    proc, base, _ = serve(model, work, [], env={"SWITCHYARD_API_KEY": "from-env-77"})
    try:
        assert status(base, "/v1/models", "from-env-77") == 200
        assert status(base, "/v1/models", "other") == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
