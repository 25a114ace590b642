"""Hosts made of network namespaces on this machine, for the tests that run a cluster across them.

A coordinator namespace holds a bridge `br0` at SUBNET.1; each worker namespace hangs off it by a
veth pair: `v<role>` in the coordinator's namespace (a bridge port) and `eth0` in the worker's, at
SUBNET.2, .3, …. The addresses exist only inside these namespaces. Removing the hosts SIGKILLs every
process left in them and deletes the namespaces, also when a test failed.

Where namespaces cannot be made (not root, no `ip netns`), `require_namespaces()` skips the test with
the reason, or fails it when SWITCHYARD_REQUIRE_NETNS=1 (Scripts/test.sh sets it when run as root, so
that CI cannot pass by skipping).
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

REQUIRE_ENV = "SWITCHYARD_REQUIRE_NETNS"


def run(*args, check=True, timeout=60, input=None):
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True, input=input)


_unavailable = []


def namespaces_unavailable():
    """Why network namespaces cannot be made here, or None when they can (probed once a process)."""
    if not _unavailable:
        _unavailable.append(_probe())
    return _unavailable[0]


def _probe():
    if os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to make network namespaces"
    probe = f"sy-probe-{os.getpid()}"
    result = run("ip", "netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"cannot make a network namespace here: {result.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def require_namespaces():
    """Skips the calling test (or fixture) when namespaces cannot be made; fails it instead when
    SWITCHYARD_REQUIRE_NETNS=1."""
    reason = namespaces_unavailable()
    if reason is not None:
        skip_or_fail(reason)


def skip_or_fail(reason):
    """Skips the calling test (or fixture) for `reason`; fails it instead when SWITCHYARD_REQUIRE_NETNS=1."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def ns_pids(ns):
    result = run("ip", "netns", "pids", ns, check=False)
    return [int(pid) for pid in result.stdout.split()]


def wait_until(condition, timeout, what):
    """Calls `condition` every 0.1 s until it returns a true value (returned), or raises
    AssertionError after `timeout` seconds naming `what`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Hosts:
    """Namespaces `c` (the bridge, SUBNET.1) and one per worker role (SUBNET.2, .3, … in order)."""

    def __init__(self, workers=("w0", "w1"), subnet="10.213.0"):
        tag = os.getpid()
        self.subnet = subnet
        self.workers = tuple(workers)
        self.names = {role: f"sy-{tag}-{role}" for role in ("c", *self.workers)}
        self.made = []
        try:
            for ns in self.names.values():
                run("ip", "netns", "add", ns)
                self.made.append(ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
            c = self.names["c"]
            run("ip", "-n", c, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", c, "addr", "add", f"{subnet}.1/24", "dev", "br0")
            run("ip", "-n", c, "link", "set", "br0", "up")
            for role in self.workers:
                ns = self.names[role]
                run("ip", "-n", c, "link", "add", self.bridge_port(role), "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
                run("ip", "-n", c, "link", "set", self.bridge_port(role), "master", "br0")
                run("ip", "-n", c, "link", "set", self.bridge_port(role), "up")
                run("ip", "-n", ns, "addr", "add", f"{self.address(role)}/24", "dev", "eth0")
                run("ip", "-n", ns, "link", "set", "eth0", "up")
        except Exception:
            self.remove()
            raise

    def address(self, role):
        """The role's address: SUBNET.1 for `c`, then the workers in order."""
        return f"{self.subnet}.{1 if role == 'c' else 2 + self.workers.index(role)}"

    @staticmethod
    def bridge_port(role):
        """The coordinator-side end of a worker's veth pair (the worker's end is `eth0`)."""
        return f"v{role}"

    def exec_prefix(self, role):
        return ["ip", "netns", "exec", self.names[role]]

    def remove(self):
        """SIGKILLs every process left in the namespaces, then deletes them."""
        for ns in self.made:
            for pid in ns_pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run("ip", "netns", "del", ns, check=False)
        self.made = []

    def leftovers(self):
        """Our namespaces that `ip netns list` still shows."""
        listed = {line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines() if line}
        return sorted(listed & set(self.names.values()))
