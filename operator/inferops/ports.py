"""A free port on 127.0.0.1 for a server this process is about to start (the local cluster's
components, the local Triton server, S3, the webhook)."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999 by default), where bind(0) draws too: a port
# found free there can be taken by any outgoing connection before its server binds it (CI saw
# kube-scheduler exit with "address already in use"). Below Kubernetes' NodePorts as well.
_PORTS = range(20000, 30000)
_pick = random.SystemRandom()  # not the global generator, which a caller may have seeded


def free_port() -> int:
    for _ in range(100):
        port = _pick.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
