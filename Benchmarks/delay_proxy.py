#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction: a slow link between the
coordinator and its workers on one machine, for kernels without `tc netem` (this one has no sch_netem;
`Tests/python/test_chaos.py` falls back to nftables for loss the same way).

    proxy = DelayProxy(upstream=("127.0.0.1", 5555), delay_s=0.001)   # listens on 127.0.0.1, a free port
    ... connect to ("127.0.0.1", proxy.port) ...
    proxy.stats()   # {"chunks": ..., "mean_late_us": ..., "p99_late_us": ...}
    proxy.close()

Each chunk read from one side is written to the other side `delay_s` after it was read, in order
(a writer thread per direction sleeps until the chunk is due). What the proxy itself adds on top (its
lateness: the time a chunk was written after it was due) is measured and reported, so a figure taken
through it states the delay it really had. `python3 delay_proxy.py --upstream HOST:PORT --delay-ms D`
runs one from the command line until interrupted.
"""
import argparse
import queue
import socket
import statistics
import threading
import time


class DelayProxy:
    def __init__(self, upstream, delay_s, listen_host="127.0.0.1", listen_port=0):
        self.upstream = upstream
        self.delay_s = delay_s
        self._listener = socket.create_server((listen_host, listen_port))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._late = []  # seconds each chunk was written after it was due
        self._sockets = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            self._pump(client, server)
            self._pump(server, client)

    def _pump(self, source, target):
        """Reads `source` into a queue of (due time, bytes); a second thread writes them to `target`."""
        chunks = queue.Queue()

        def read():
            while True:
                try:
                    data = source.recv(1 << 16)
                except OSError:
                    data = b""
                chunks.put((time.perf_counter() + self.delay_s, data))
                if not data:
                    return

        def write():
            while True:
                due, data = chunks.get()
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        target.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                late = time.perf_counter() - due
                try:
                    target.sendall(data)
                except OSError:
                    return
                with self._lock:
                    self._late.append(late)

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def stats(self):
        """Chunks forwarded and how late the proxy wrote them (µs, on top of the delay)."""
        with self._lock:
            late = sorted(self._late)
        if not late:
            return {"chunks": 0, "delay_us": self.delay_s * 1e6}
        return {"chunks": len(late), "delay_us": self.delay_s * 1e6,
                "mean_late_us": statistics.fmean(late) * 1e6, "p99_late_us": late[int(0.99 * (len(late) - 1))] * 1e6}

    def close(self):
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay added in each direction")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (0: a free one)")
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    proxy = DelayProxy((host, int(port)), args.delay_ms / 1e3, listen_port=args.port)
    print(f"delaying 127.0.0.1:{proxy.port} -> {args.upstream} by {args.delay_ms} ms each way", flush=True)
    try:
        while True:
            time.sleep(10)
            print(proxy.stats(), flush=True)
    except KeyboardInterrupt:
        proxy.close()


if __name__ == "__main__":
    main()
