"""The HTTP API over TLS (`serve --tls-cert --tls-key`): the openai client, curl and the switchyard
CLI reach it when they trust the test CA, and refuse it when they do not.

The CA and the server certificate are made at test time with the openssl CLI.
"""
import os
import re
import ssl
import subprocess
import tempfile
import time

import openai
import pytest

from conftest import BIN


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory):
    """A CA, and a certificate for 127.0.0.1 and localhost that it signs; returns (ca, cert, key) paths."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=switchyard test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    with open(os.path.join(directory, "server.ext"), "w", encoding="utf-8") as handle:
        handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                     "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=directory)
    return tuple(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))


@pytest.fixture(scope="module")
def tls_server(model):
    directory = tempfile.mkdtemp(prefix="switchyard-tls-")
    ca, cert, key = make_certificates(directory)
    log_path = os.path.join(directory, "serve.log")
    with open(log_path, "w", encoding="utf-8") as log:
        serve = subprocess.Popen(
            [BIN, "serve", "--model", model, "--workers", "0", "--served-model-name", "switchyard", "--http", "127.0.0.1:0",
             "--tls-cert", cert, "--tls-key", key],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        base = None
        while base is None and time.time() < deadline:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                match = re.search(r"HTTP API listening on (https://127\.0\.0\.1:\d+)", handle.read())
            if match:
                base = match.group(1)
            elif serve.poll() is not None:
                raise RuntimeError(f"serve exited with {serve.returncode}:\n{open(log_path).read()}")
            else:
                time.sleep(0.05)
        if base is None:
            raise RuntimeError(f"serve never listened:\n{open(log_path).read()}")
        yield base, ca
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=10)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


def openai_client(base, verify):
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120,
                         http_client=openai.DefaultHttpxClient(verify=verify, timeout=120))


def test_openai_client_over_tls_with_the_test_ca(tls_server):
    base, ca = tls_server
    client = openai_client(base, ssl.create_default_context(cafile=ca))
    response = client.completions.create(model="switchyard", prompt="Once upon a time", max_tokens=4,
                                         temperature=0, extra_body={"ignore_eos": True})
    assert response.usage.completion_tokens == 4
    assert [model.id for model in client.models.list().data]


def test_openai_client_without_the_ca_refuses_the_server(tls_server):
    base, _ = tls_server
    client = openai_client(base, ssl.create_default_context())
    with pytest.raises(openai.APIConnectionError) as refused:
        client.models.list()
    assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value.__cause__), repr(refused.value.__cause__)


def test_curl_over_tls_with_and_without_the_ca(tls_server):
    base, ca = tls_server
    trusted = subprocess.run(["curl", "-sS", "--cacert", ca, base + "/v1/models"], capture_output=True, text=True,
                             timeout=60)
    assert trusted.returncode == 0, trusted.stderr
    assert '"object":"list"' in trusted.stdout.replace(" ", ""), trusted.stdout
    untrusted = subprocess.run(["curl", "-sS", base + "/v1/models"], capture_output=True, text=True, timeout=60)
    assert untrusted.returncode == 60, (untrusted.returncode, untrusted.stderr)  # 60: peer certificate not trusted
    plain = subprocess.run(["curl", "-sS", base.replace("https://", "http://") + "/health"], capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode != 0, plain.stdout  # plain HTTP to the TLS port gets no answer


def test_cli_health_and_generate_verify_the_certificate(tls_server):
    base, ca = tls_server
    health = subprocess.run([BIN, "health", "--server", base, "--ca", ca], capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stderr
    refused = subprocess.run([BIN, "health", "--server", base], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "--ca" in refused.stderr, refused.stderr
    generated = subprocess.run(
        [BIN, "generate", "--server", base, "--ca", ca, "--prompt", "Once upon a time", "--max-tokens", "3",
         "--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.strip(), generated.stdout
    not_a_ca = subprocess.run([BIN, "health", "--server", base, "--ca", os.devnull], capture_output=True, text=True,
                              timeout=60)
    assert not_a_ca.returncode != 0
    assert f"--ca {os.devnull}" in not_a_ca.stderr, not_a_ca.stderr
