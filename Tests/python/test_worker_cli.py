"""`switchyard worker` refuses, before it loads or connects, a --name the coordinator's HELLO decoder would
refuse (at most 255 bytes: names go into logs, reports and metric labels)."""
import os
import subprocess

BIN = os.path.abspath(os.environ.get("SWITCHYARD_BIN", ".build/debug/switchyard"))


def worker(name):
    # Port 9 on 127.0.0.1 (discard): nothing there answers ZeroMQ; a refused name never gets that far.
    return subprocess.run(
        [BIN, "worker", "--coordinator", "tcp://127.0.0.1:9", "--model", "/nonexistent", "--insecure", "--name", name],
        capture_output=True, text=True, timeout=60)


def test_a_worker_name_over_255_bytes_is_refused_by_name():
    result = worker("w" * 256)
    assert result.returncode == 64, (result.returncode, result.stderr)
    assert "--name has 256 bytes, but a worker name has at most 255" in result.stderr, result.stderr


def test_a_255_byte_name_passes_the_check_and_fails_later_on_the_model():
    result = worker("w" * 255)
    assert result.returncode != 0
    assert "--name" not in result.stderr, result.stderr
    assert "/nonexistent" in result.stderr, result.stderr
