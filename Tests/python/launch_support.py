"""Helpers shared by the `switchyard launch` tests: finding the processes a test started, and a
scratch directory whose processes are killed and whose files are removed at the end."""
import os
import shutil
import signal
import tempfile


def cmdline(pid):
    """The command line of `pid` as bytes arguments, or [] when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def our_processes(marker):
    """Pids of live processes whose command line mentions `marker` (our temporary directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if any(marker.encode() in part for part in cmdline(int(entry))):
                try:
                    with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                        if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                            continue  # a zombie is already dead; its parent reaps it
                except OSError:
                    continue
                found.append(int(entry))
    return found


def scratch_directory(prefix):
    """A generator for a pytest fixture: yields a new temporary directory, then SIGKILLs every
    process still mentioning it and removes it (also when the test failed)."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        for pid in our_processes(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(path, ignore_errors=True)
