"""`switchyard launch` across three hosts made of network namespaces on this machine.

Three namespaces (coordinator, w0, w1) joined by veth pairs to a bridge in the coordinator's
namespace, with addresses 10.213.0.x that exist only inside them. The launcher reaches each "host"
with the `ip netns exec NAME` prefix. The test generates through the HTTP API from inside the
coordinator's namespace and compares the tokens with the same request run in-process, checks that
every process ran in its own namespace, and that stopping (SIGTERM) or killing (SIGKILL) the
launcher leaves no process behind. Every wait is bounded; the namespaces are removed even when a
test fails. Skipped, with the reason, where namespaces cannot be made (not root, no `ip netns`);
failed instead when SWITCHYARD_REQUIRE_NETNS=1.
"""
import json
import os
import re
import signal
import subprocess
import urllib.request

import pytest

from launch_support import cmdline, our_processes, scratch_directory
from netns_support import Hosts, ns_pids, require_namespaces, run, wait_until

BIN = os.path.abspath(os.environ.get("SWITCHYARD_BIN", ".build/debug/switchyard"))
SUBNET = "10.213.0"
PROMPT = "three hosts"
MAX_TOKENS = 12


@pytest.fixture(scope="module", autouse=True)
def namespaces():
    require_namespaces()


@pytest.fixture(scope="module")
def hosts(namespaces):
    made = Hosts(workers=("w0", "w1"), subnet=SUBNET)
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture(scope="module")
def workdir():
    yield from scratch_directory("switchyard-launch-")


@pytest.fixture(scope="module")
def model(workdir):
    path = os.path.join(workdir, "model")
    run(BIN, "make-model", "--arch", "mixtral", "--out", path, "--hidden", "64", "--layers", "2",
        "--experts", "4", "--top-k", "2", "--vocab", "300", "--seed", "7", timeout=300)
    return path


def client_key(workdir):
    """A client key pair for `generate --coordinator` (made once), which the cluster file lets in."""
    secret, public = (os.path.join(workdir, "keys", f"client.{ext}") for ext in ("key", "pub"))
    if not os.path.exists(secret):
        run(BIN, "keys", "generate", "--out", os.path.join(workdir, "keys"), "--name", "client")
    return secret, public


def write_cluster_file(workdir, hosts, model):
    prefix = lambda role: f"[ip, netns, exec, {hosts.names[role]}]"
    _, client_public = client_key(workdir)
    text = f"""\
model: {model}
switchyard: {BIN}
hosts:
  head: {{command_prefix: {prefix("c")}}}
  node-a: {{command_prefix: {prefix("w0")}}}
  node-b: {{command_prefix: {prefix("w1")}}}
coordinator:
  host: head
  bind: {SUBNET}.1
  zmq_port: 5555
  http_port: 8080
  client_keys: [{client_public}]
workers:
  - {{name: w0, host: node-a, experts: [[0, 0], [0, 1], [1, 0]]}}
  - {{name: w1, host: node-b}}
"""
    path = os.path.join(workdir, "cluster.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


class Launch:
    """`switchyard launch` in the background, its stdout and stderr in files."""

    def __init__(self, workdir, cluster_file, name):
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.proc = subprocess.Popen([BIN, "launch", cluster_file, "--ready-timeout", "120"],
                                     stdin=subprocess.DEVNULL, stdout=open(self.out_path, "w"),
                                     stderr=open(self.err_path, "w"), start_new_session=True)

    def text(self):
        with open(self.out_path, encoding="utf-8") as out, open(self.err_path, encoding="utf-8") as err:
            return out.read(), err.read()

    def wait_ready(self):
        def ready():
            out, err = self.text()
            if self.proc.poll() is not None:
                raise AssertionError(f"launch exited with {self.proc.returncode}:\n{out}\n{err}")
            return "cluster ready" in out
        try:
            wait_until(ready, 180, "the cluster to become ready")
        except AssertionError:
            out, err = self.text()
            raise AssertionError(f"launch never became ready:\n{out}\n{err}") from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def in_process_reference(model, workdir):
    """The same request answered by a coordinator computing every expert itself (serve --workers 0)."""
    log = open(os.path.join(workdir, "reference.log"), "w")
    serve = subprocess.Popen([BIN, "serve", "--model", model, "--workers", "0", "--http", "127.0.0.1:0"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        def base():
            with open(log.name, encoding="utf-8") as handle:
                match = re.search(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", handle.read())
            if serve.poll() is not None:
                raise AssertionError(f"reference serve exited with {serve.returncode}")
            return match.group(1) if match else None
        url = wait_until(base, 120, "the in-process reference server")
        def healthy():
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as response:
                    return response.status == 200
            except OSError:
                return False
        wait_until(healthy, 60, "reference /health")
        request = urllib.request.Request(url + "/v1/completions", data=json.dumps(completion_body()).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def completion_body():
    return {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "logprobs": 2}


def test_launch_across_namespaces_matches_in_process(hosts, workdir, model):
    cluster_file = write_cluster_file(workdir, hosts, model)

    dry = run(BIN, "launch", "--dry-run", cluster_file)
    assert f"ip netns exec {hosts.names['w0']} sh -c" in dry.stdout
    assert "w0 on node-a: 3 experts" in dry.stdout, dry.stdout

    launch = Launch(workdir, cluster_file, "launch1")
    try:
        launch.wait_ready()
        out, err = launch.text()
        assert "w0 on node-a: 3 experts: layer 0: 0,1; layer 1: 0" in out, out
        assert "w1 on node-b: 5 experts: layer 0: 2,3; layer 1: 1-3" in out, out
        # Worker logs come back prefixed with the worker's name.
        assert re.search(r"^\[w0\] .*registered with the coordinator", err, re.M), err
        assert re.search(r"^\[w1\] .*loaded 5 experts", err, re.M), err

        # Each process runs in its own namespace: its network namespace is that host's.
        root_net = os.readlink("/proc/self/ns/net")
        for role, needle in (("c", b"serve"), ("w0", b"w0"), ("w1", b"w1")):
            pids = [pid for pid in ns_pids(hosts.names[role]) if needle in cmdline(pid)]
            assert pids, f"no switchyard process in namespace {hosts.names[role]}"
            assert os.readlink(f"/proc/{pids[0]}/ns/net") != root_net

        # Generate over HTTP from inside the coordinator's namespace.
        body = json.dumps(completion_body())
        answer = run("ip", "netns", "exec", hosts.names["c"], "curl", "-sS", "--max-time", "120",
                     f"http://{SUBNET}.1:8080/v1/completions", "-H", "content-type: application/json",
                     "-d", body, timeout=150)
        remote = json.loads(answer.stdout)
        # The link between coordinator and workers is encrypted with the keys the launcher made:
        # it printed the coordinator's public key, and the workers' key pairs are in no command line.
        coordinator_public = re.search(r"coordinator public key \(for `generate --coordinator-key`\): (\S{40})", out)
        assert coordinator_public, out
        for role in ("c", "w0", "w1"):
            for pid in ns_pids(hosts.names[role]):
                args = cmdline(pid)
                if b"serve" in args or b"worker" in args:
                    assert b"--keys-from-stdin" in args and b"--insecure" not in args, args
        assert re.search(r"^\[coordinator\] .*CURVE: accepted key w0", err, re.M), err
        coordinator_key = os.path.join(workdir, "coordinator.pub")
        with open(coordinator_key, "w", encoding="utf-8") as handle:
            handle.write(coordinator_public.group(1) + "\n")
        client_secret, _ = client_key(workdir)
        # And the token ids through the coordinator's ZeroMQ socket, also from its namespace.
        ids = run("ip", "netns", "exec", hosts.names["c"], BIN, "generate", "--coordinator",
                  f"tcp://{SUBNET}.1:5555", "--key", client_secret, "--coordinator-key", coordinator_key,
                  "--prompt", PROMPT, "--max-tokens", str(MAX_TOKENS),
                  "--temperature", "0", "--ignore-eos", "--json", timeout=150)
        remote_ids = json.loads(ids.stdout)["completion_token_ids"]
    finally:
        if launch.proc.poll() is None:
            launch.proc.send_signal(signal.SIGTERM)
        try:
            launch.proc.wait(timeout=90)
        finally:
            launch.kill()

    out, err = launch.text()
    assert launch.proc.returncode == 0, f"launch exited with {launch.proc.returncode}:\n{err}"
    assert "cluster stopped" in err
    for ns in hosts.names.values():
        assert ns_pids(ns) == [], f"processes left in {ns}: {ns_pids(ns)}"
    assert our_processes(workdir) == []

    local = in_process_reference(model, workdir)
    local_ids = json.loads(run(BIN, "generate", "--model", model, "--spawn-workers", "0", "--prompt", PROMPT,
                               "--max-tokens", str(MAX_TOKENS), "--temperature", "0", "--ignore-eos", "--json",
                               timeout=150).stdout)["completion_token_ids"]
    assert remote_ids == local_ids
    assert len(remote_ids) == MAX_TOKENS
    remote_choice, local_choice = remote["choices"][0], local["choices"][0]
    assert remote_choice["text"] == local_choice["text"]
    assert remote_choice["logprobs"]["tokens"] == local_choice["logprobs"]["tokens"]
    assert remote_choice["logprobs"]["token_logprobs"] == pytest.approx(
        local_choice["logprobs"]["token_logprobs"], abs=1e-5)


def test_killed_launcher_leaves_no_process(hosts, workdir, model):
    cluster_file = write_cluster_file(workdir, hosts, model)
    launch = Launch(workdir, cluster_file, "launch2")
    try:
        launch.wait_ready()
        assert our_processes(workdir), "the cluster should be running"
    finally:
        # SIGKILL: the launcher gets no chance to stop anything; the pipes it held close.
        launch.kill()
    wait_until(lambda: our_processes(workdir) == [], 60, "every switchyard process to exit after SIGKILL")
    for ns in hosts.names.values():
        assert ns_pids(ns) == [], f"processes left in {ns}: {ns_pids(ns)}"
