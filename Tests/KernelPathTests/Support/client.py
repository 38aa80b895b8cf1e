#!/usr/bin/env python3
"""Socket client run inside a workload's cgroup by the kernel-path tests.

argv[1] is a JSON list of steps; each step opens a fresh socket, performs one operation and
closes it (unless "keep": true). Prints one JSON list: per step {"ok": true, ...} or
{"errno": N, "error": "ENAME", "stage": "socket|bind|connect|listen|sendto"}.
"""
import errno, json, socket, sys

def run(step):
    fam = socket.AF_INET6 if step.get("family") == 6 else socket.AF_INET
    typ = socket.SOCK_DGRAM if step.get("type") == "udp" else socket.SOCK_STREAM
    stage = "socket"
    try:
        s = socket.socket(fam, typ)
        try:
            if "device" in step:  # SO_BINDTODEVICE: the socket's bound device (IP_LOCAL_INTERFACE)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, step["device"].encode())
            if "v6only" in step:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if step["v6only"] else 0)
            if "bind" in step:
                stage = "bind"
                s.bind((step["bind"], step.get("bindPort", 0)))
            op = step.get("op", "connect")
            if op == "connect":
                stage = "connect"
                s.settimeout(3)
                s.connect((step["addr"], step["port"]))
            elif op == "listen":
                stage = "listen"
                s.listen(4)
            elif op == "sendto":
                stage = "sendto"
                s.sendto(b"lfp", (step["addr"], step["port"]))
            local = s.getsockname()
            return {"ok": True, "localPort": local[1]}
        finally:
            s.close()
    except OSError as e:
        return {"errno": e.errno, "error": errno.errorcode.get(e.errno, "?"), "stage": stage}

print(json.dumps([run(s) for s in json.loads(sys.argv[1])]))
