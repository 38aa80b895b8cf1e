# Socket driver for LifetimeCaseTests: runs inside a workload cgroup and performs one socket
# operation per JSON line read from stdin, answering with one JSON line on stdout. Sockets are
# named as the case's steps name them (`as`). Every answer carries `cookie`, the socket's
# SO_COOKIE, which is lfp's transportEndpointHandle (README, "ALE layers and the endpoint
# lifetime on Linux"), so the test knows which endpoint each kernel event belongs to.
#
# Requests: {"op": "socket", "as": n, "type": "SOCK_STREAM"|"SOCK_DGRAM"}
#           {"op": "bind", "socket": n, "host": h, "port": p}
#           {"op": "listen", "socket": n}
#           {"op": "connect", "socket": n, "host": h, "port": p}
#           {"op": "sendto", "socket": n, "host": h, "port": p}
#           {"op": "accept", "socket": listener, "as": n}     (waits at most 5 s)
#           {"op": "close", "socket": n}
#           {"op": "quit"}
# Answers:  {"ok": true|false, "errno": e, "error": text, "cookie": c, "port": local port}
import json
import socket
import struct
import sys

SO_COOKIE = 57
socks = {}


def cookie(s):
    try:
        return struct.unpack('=Q', s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    except OSError:
        return 0


def local_port(s):
    try:
        return s.getsockname()[1]
    except OSError:
        return 0


def run(req):
    op = req['op']
    if op == 'socket':
        kind = {'SOCK_STREAM': socket.SOCK_STREAM, 'SOCK_DGRAM': socket.SOCK_DGRAM}[req['type']]
        s = socket.socket(socket.AF_INET, kind)
        socks[req['as']] = s
        return {'cookie': cookie(s)}
    if op == 'accept':
        lsn = socks[req['socket']]
        lsn.settimeout(5)
        c, _ = lsn.accept()
        c.settimeout(None)
        socks[req['as']] = c
        return {'cookie': cookie(c), 'port': local_port(c)}
    s = socks[req['socket']]
    out = {'cookie': cookie(s)}
    if op == 'bind':
        s.bind((req['host'], req['port']))
    elif op == 'listen':
        s.listen(8)
    elif op == 'connect':
        s.settimeout(5)
        s.connect((req['host'], req['port']))
    elif op == 'sendto':
        s.sendto(b'lfp', (req['host'], req['port']))
    elif op == 'close':
        s.close()
        del socks[req['socket']]
        return out
    else:
        raise ValueError('unknown op ' + op)
    out['port'] = local_port(s)
    return out


print(json.dumps({'ready': True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req['op'] == 'quit':
        break
    try:
        ans = run(req)
        ans['ok'] = True
    except OSError as e:
        ans = {'ok': False, 'errno': e.errno or 0, 'error': str(e)}
        if req.get('socket') in socks:
            ans['cookie'] = cookie(socks[req['socket']])
    print(json.dumps(ans), flush=True)
for s in socks.values():
    s.close()
