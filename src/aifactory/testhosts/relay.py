"""Byte relays between a run's network namespace and the host's, started by the harness.

python -m aifactory.testhosts.relay stdio HOST PORT
    SSH's ProxyCommand, run under `ip netns exec NS`: standard input and output to HOST:PORT.
python -m aifactory.testhosts.relay listen NS ADDR:PORT TARGET:PORT
    Listens on ADDR:PORT inside namespace NS and connects each client to TARGET:PORT in the
    namespace it was started in: the run's nodes reach the host-side package proxy this way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

from .netns import path, setns


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                s.shutdown(how)


def stdio(host: str, port: int) -> int:
    conn = socket.create_connection((host, port), timeout=10)
    conn.settimeout(None)

    def upstream() -> None:
        try:
            while data := os.read(0, 65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while data := conn.recv(65536):
            os.write(1, data)
    except OSError:
        return 1
    return 0


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def listen(ns: str, listen_at: str, target: str) -> int:
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(path(ns), os.O_RDONLY)
    setns(there)
    server = socket.create_server(_addr(listen_at), reuse_port=False, backlog=64)
    setns(home)  # every connection out is opened from the namespace this relay started in
    target_addr = _addr(target)
    print(f"relay: {listen_at} in {ns} -> {target}", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target_addr, timeout=10)
        except OSError as exc:
            print(f"relay: {target}: {exc}", flush=True)
            client.close()
            continue
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "stdio":
        return stdio(argv[1], int(argv[2]))
    if len(argv) == 4 and argv[0] == "listen":
        return listen(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
