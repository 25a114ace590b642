"""A CURVE secret key file that the group or others may read is refused, as ssh refuses such a
private key, with the chmod that fixes it; a private one (0600, 0400) is used."""
import os
import subprocess
import tempfile

from conftest import BIN, _wait_for, make_keys


def test_serve_and_worker_refuse_a_readable_secret_key(model):
    keys = tempfile.mkdtemp(prefix="switchyard-key-mode-")
    server_key, coordinator_pub = make_keys(os.path.join(keys, "coordinator"), "coordinator")
    worker_key, _ = make_keys(os.path.join(keys, "allowed"), "worker")
    assert os.stat(server_key).st_mode & 0o777 == 0o600
    serve = [BIN, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers", "1", "--http", "127.0.0.1:0",
             "--key", server_key, "--allow-keys", os.path.join(keys, "allowed")]
    for mode in (0o644, 0o640, 0o604, 0o620):
        os.chmod(server_key, mode)
        result = subprocess.run(serve, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode != 0, oct(mode)
        assert f"chmod 600 {server_key}" in result.stderr, result.stderr
        assert oct(mode)[2:] in result.stderr, result.stderr

    os.chmod(worker_key, 0o640)
    worker = subprocess.run([BIN, "worker", "--coordinator", "tcp://127.0.0.1:9", "--model", model, "--name", "w0",
                             "--key", worker_key, "--coordinator-key", coordinator_pub],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert worker.returncode != 0
    assert f"chmod 600 {worker_key}" in worker.stderr, worker.stderr

    # Read-only for its owner, as Kubernetes (defaultMode 0400) and systemd credentials give it: used.
    os.chmod(server_key, 0o400)
    log = os.path.join(keys, "serve.log")
    proc = subprocess.Popen(serve, stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
