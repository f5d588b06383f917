"""The cheapest closed loop Python can drive: KServe v2 HTTP on raw keep-alive sockets, one epoll loop.

The load generator shares the CPU with the server it measures, so every microsecond it spends per
request is taken from the server (on 2 cores, tritonclient's aio gRPC client spent about 150 us
of CPU per request where perf_analyzer spent about 65: the configs with the most requests per
second read lowest). Here the request (JSON header and binary tensor data, Triton's binary
extension) is built once, each client is a socket that sends it again as soon as the last
response is complete, and a response is only framed (status line, Content-Length), never
parsed: a request costs a send, a recv and a few comparisons.
"""

from __future__ import annotations

import json
import selectors
import socket
import time

import numpy as np


def request_bytes(host: str, model_name: str, arrays: dict[str, np.ndarray], outputs: list[str] | None = None) -> bytes:
    """A complete HTTP/1.1 infer request with binary inputs (and binary outputs asked for)."""
    from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

    inputs, blobs = [], []
    for name, array in arrays.items():
        raw = serialize_byte_tensor(array).tobytes() if array.dtype == np.object_ else np.ascontiguousarray(array).tobytes()
        inputs.append({"name": name, "shape": list(array.shape), "datatype": np_to_triton_dtype(array.dtype), "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    header = {"inputs": inputs}
    if outputs:
        header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(blobs)
    return (
        f"POST /v2/models/{model_name}/infer HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(head)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Client:
    __slots__ = ("sock", "buffer", "need", "status", "start", "counted", "done", "first", "last")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.need = -1  # bytes of the whole response, once its header is in
        self.status = 0
        self.start = 0.0
        self.counted = False
        self.done, self.first, self.last = 0, None, None


def drive(url: str, model_name: str, arrays: dict[str, np.ndarray], concurrency: int, requests: int | None, duration_s: float | None,
          warmup_s: float, timeout_s: float):
    """Same contract as loadgen._drive: (latencies, completion times from the window's start,
    errors, elapsed, sum of the clients' rates)."""
    host, _, port = url.rpartition(":")
    payload = request_bytes(url, model_name, arrays)
    selector = selectors.DefaultSelector()
    clients = []
    latencies: list[float] = []
    finished: list[float] = []
    errors: list[str] = []
    issued = 0
    measuring = False
    began = 0.0

    def send(client: _Client) -> None:
        nonlocal issued
        client.counted = measuring
        if measuring:
            issued += 1
        client.buffer.clear()
        client.need = -1
        client.start = time.perf_counter()
        client.sock.sendall(payload)

    try:
        for _ in range(concurrency):
            sock = socket.create_connection((host, int(port)), timeout=timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock)
            clients.append(client)
            selector.register(sock, selectors.EVENT_READ, client)
        started = time.perf_counter()
        for client in clients:
            send(client)
        window_end = None
        active = len(clients)
        while active:
            now = time.perf_counter()
            if not measuring and now - started >= warmup_s:
                measuring, began = True, now
                window_end = began + duration_s if requests is None else None
            stopping = window_end is not None and now >= window_end
            events = selector.select(timeout=0.05)
            if not events and time.perf_counter() - max(c.start for c in clients) > timeout_s:
                errors.append(f"no response within {timeout_s:.0f}s")
                break
            for key, _ in events:
                client: _Client = key.data
                chunk = client.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError(f"the server at {url} closed the connection")
                client.buffer += chunk
                if client.need < 0:
                    end = client.buffer.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head = bytes(client.buffer[:end]).decode("latin-1").lower()
                    client.status = int(head[9:12])
                    length = head.find("content-length:")
                    client.need = end + 4 + (int(head[length + 15:].split("\r\n", 1)[0]) if length >= 0 else 0)
                if len(client.buffer) < client.need:
                    continue
                now = time.perf_counter()
                ok = client.status == 200
                if client.counted:
                    if ok:
                        latencies.append(now - client.start)
                        if window_end is None or now < window_end:
                            finished.append(now)
                    else:
                        errors.append(f"HTTP {client.status}: {bytes(client.buffer[client.buffer.find(b'{'):client.need])[:300].decode(errors='replace')}")
                if measuring and ok:
                    client.done += 1
                    client.first = client.first if client.first is not None else client.start
                    client.last = now
                if stopping or (requests is not None and measuring and issued >= requests):
                    selector.unregister(client.sock)
                    active -= 1
                    continue
                send(client)
            if window_end is None and requests is not None and measuring and len(latencies) + len(errors) >= requests:
                break
        elapsed = (window_end - began) if window_end is not None else time.perf_counter() - began
    finally:
        selector.close()
        for client in clients:
            client.sock.close()
    rates = sum(c.done / (c.last - c.first) for c in clients if c.done and c.last > c.first)
    return latencies, [t - began for t in finished], errors, elapsed, rates
