"""`switchyard launch` failure paths on this machine (hosts reached with the empty prefix `[]`).

A worker that cannot start makes the launcher stop the cluster and exit non-zero, naming it; a
process that ignores the stop is killed on its host by the pid it announced; a launcher killed with
SIGKILL leaves no process behind. No namespaces needed.
"""
import os
import signal
import subprocess

import pytest

from launch_support import our_processes, scratch_directory
from netns_support import wait_until

BIN = os.path.abspath(os.environ.get("SWITCHYARD_BIN", ".build/debug/switchyard"))


@pytest.fixture(scope="module")
def workdir():
    yield from scratch_directory("switchyard-launch-local-")


@pytest.fixture(scope="module")
def model(workdir):
    path = os.path.join(workdir, "model")
    subprocess.run([BIN, "make-model", "--arch", "mixtral", "--out", path, "--hidden", "64", "--layers", "2",
                    "--experts", "4", "--top-k", "2", "--vocab", "300"], check=True, capture_output=True, timeout=300)
    return path


def free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def launch(workdir, name, text, *extra):
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return subprocess.run([BIN, "launch", path, *extra], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def test_a_worker_that_fails_stops_the_cluster(workdir, model):
    zmq, http = free_ports(2)
    result = launch(workdir, "failing", f"""\
model: {model}
switchyard: {BIN}
hosts:
  here: {{command_prefix: []}}
  broken: {{command_prefix: [], model: {workdir}/no-such-model}}
coordinator: {{host: here, zmq_port: {zmq}, http_port: {http}}}
workers:
  - {{name: w0, host: here}}
  - {{name: w1, host: broken}}
""")
    assert result.returncode == 1
    assert "[w1] error: config.json" in result.stderr, result.stderr
    assert "w1 exited with status 1 before the cluster was ready; stopping the cluster" in result.stderr
    assert "cluster stopped" in result.stderr
    assert our_processes(workdir) == []


def test_a_process_that_ignores_the_stop_is_killed_on_its_host(workdir, model):
    stubborn = os.path.join(workdir, "stubborn.sh")
    with open(stubborn, "w", encoding="utf-8") as handle:
        # Ignores SIGTERM and its standard input: only a kill on its host stops it.
        handle.write("#!/bin/sh\ntrap '' TERM INT HUP\nwhile :; do sleep 1; done\n")
    os.chmod(stubborn, 0o755)
    zmq, http = free_ports(2)
    result = launch(workdir, "stubborn", f"""\
model: {model}
switchyard: {BIN}
hosts:
  here: {{command_prefix: []}}
  odd: {{command_prefix: [], switchyard: {stubborn}}}
coordinator: {{host: here, zmq_port: {zmq}, http_port: {http}}}
workers:
  - {{name: w0, host: odd}}
""", "--ready-timeout", "2", "--stop-timeout", "1")
    assert result.returncode == 1
    assert "the coordinator did not become ready" in result.stderr, result.stderr
    assert "0 of 1 workers are ready" in result.stderr
    assert "w0 did not stop within 1.0 s; killing pid" in result.stderr
    assert our_processes(workdir) == []


def test_killed_launcher_leaves_no_process_without_namespaces(workdir, model):
    # The same clean-up test_launch_netns.py checks across namespaces, here on 127.0.0.1 alone, so it
    # runs wherever the tests do: SIGKILL gives the launcher no chance to stop anything; its
    # processes must notice the pipes it held close and exit by themselves.
    zmq, http = free_ports(2)
    path = os.path.join(workdir, "killed.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"""\
model: {model}
switchyard: {BIN}
hosts:
  here: {{command_prefix: []}}
coordinator: {{host: here, zmq_port: {zmq}, http_port: {http}}}
workers:
  - {{name: w0, host: here}}
  - {{name: w1, host: here}}
""")
    out_path, err_path = os.path.join(workdir, "killed.out"), os.path.join(workdir, "killed.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        launcher = subprocess.Popen([BIN, "launch", path, "--ready-timeout", "120"], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
    try:
        def ready():
            if launcher.poll() is not None:
                with open(err_path, encoding="utf-8") as handle:
                    raise AssertionError(f"launch exited with {launcher.returncode}:\n{handle.read()}")
            with open(out_path, encoding="utf-8") as handle:
                return "cluster ready" in handle.read()
        wait_until(ready, 180, "the cluster to become ready")
        # The coordinator and both workers, each started by the launcher (their command lines name
        # the model in our scratch directory).
        started = [pid for pid in our_processes(workdir) if pid != launcher.pid]
        assert len(started) >= 3, f"expected a coordinator and two workers, found {started}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait(timeout=30)
    assert launcher.returncode == -signal.SIGKILL
    wait_until(lambda: our_processes(workdir) == [], 60, "every switchyard process to exit after SIGKILL")
