# Socket driver for ReferenceKernelCaseTests: runs inside a workload cgroup and performs the socket
# operations of a reference case's steps, one JSON request per stdin line. An operation the
# kernel may hold (connect, bind, listen: a callout pended it) must not stop the driver from
# taking the next request, so each answers twice, on stdout, one JSON line each:
#   {"id": n, "phase": "start", "cookie": c}       at once, before the call that may block
#   {"id": n, "phase": "done", "ok": true|false, "errno": e, "error": text, "cookie": c, "port": p}
#                                                   when the call returned (run on its own thread)
# `cookie` is the socket's SO_COOKIE, lfp's transportEndpointHandle (the flowId of
# FwpsFlowAssociateContext0), so the test knows which endpoint each callout invocation and event
# belongs to. Sockets are named as the steps name them (`as`).
#
# Requests: {"id": n, "op": "connect", "as": s, "host": h, "port": p}     new TCP socket, connect
#           {"id": n, "op": "bind", "as": s, "host": h, "port": p}        new TCP socket, bind
#           {"id": n, "op": "listen", "socket": s}                        listen on a bound socket
#           {"id": n, "op": "listen", "as": s, "host": h, "port": p}      new socket, bind, listen
#           {"id": n, "op": "accept", "socket": s, "as": a, "timeout": t} accept, t seconds at most
#           {"id": n, "op": "send", "socket": s}                          send b"lfp"
#           {"id": n, "op": "close", "socket": s}
#           {"op": "quit"}
import json
import socket
import struct
import sys
import threading

SO_COOKIE = 57
socks = {}
out = threading.Lock()


def say(obj):
    with out:
        print(json.dumps(obj), flush=True)


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


def blocking(rid, s, body):
    """Answer "start" now and "done" when body() returned, from a thread of its own."""
    say({'id': rid, 'phase': 'start', 'cookie': cookie(s)})

    def run():
        ans = {'id': rid, 'phase': 'done', 'cookie': cookie(s)}
        try:
            extra = body()
            ans.update(extra or {})
            ans['ok'] = True
        except OSError as e:
            ans.update({'ok': False, 'errno': e.errno or 0, 'error': str(e)})
        ans['port'] = local_port(s)
        say(ans)
    threading.Thread(target=run, daemon=True).start()


def handle(req):
    op, rid = req['op'], req['id']
    if op in ('connect', 'bind') or (op == 'listen' and 'as' in req):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socks[req['as']] = s
        addr = (req['host'], req['port'])
        if op == 'connect':
            s.settimeout(30)
            blocking(rid, s, lambda: s.connect(addr))
        elif op == 'bind':
            blocking(rid, s, lambda: s.bind(addr))
        else:
            def bind_listen():
                s.bind(addr)
                s.listen(8)
            blocking(rid, s, bind_listen)
        return
    s = socks[req['socket']]
    if op == 'listen':
        blocking(rid, s, lambda: s.listen(8))
    elif op == 'accept':
        def acc():
            s.settimeout(req.get('timeout', 5))
            c, _ = s.accept()
            c.settimeout(None)
            socks[req['as']] = c
            return {'accepted': cookie(c)}
        blocking(rid, s, acc)
    elif op == 'send':
        blocking(rid, s, lambda: s.send(b'lfp') and None)
    elif op == 'close':
        c = cookie(s)
        say({'id': rid, 'phase': 'start', 'cookie': c})
        s.close()
        del socks[req['socket']]
        say({'id': rid, 'phase': 'done', 'ok': True, 'cookie': c})
    else:
        raise ValueError('unknown op ' + op)


say({'ready': True})
for line in sys.stdin:
    req = json.loads(line)
    if req['op'] == 'quit':
        break
    try:
        handle(req)
    except OSError as e:  # socket() itself refused: the step's start fails
        say({'id': req.get('id'), 'phase': 'start', 'ok': False, 'errno': e.errno or 0, 'error': str(e)})
        say({'id': req.get('id'), 'phase': 'done', 'ok': False, 'errno': e.errno or 0, 'error': str(e)})
for s in list(socks.values()):
    s.close()
