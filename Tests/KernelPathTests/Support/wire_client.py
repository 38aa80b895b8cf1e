#!/usr/bin/env python3
"""A peer of lfp daemon's socket written from docs/protocol.md alone, for the daemon tests.

argv[1]: the socket. Each stdin line is a request (a JSON object) sent as one frame (4-byte big
endian length, then the JSON); "RAW <text>" sends <text> as a frame as it is (malformed input);
"WAIT" prints the next frame the daemon sends. After each request the script prints the reply
frame as one line. Prints {"connectError": "..."} if the socket refuses.
"""
import json, socket, struct, sys

def read_frame(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body.decode()

def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        print(json.dumps({"connectError": e.strerror}), flush=True)
        return
    print(json.dumps({"connected": True}), flush=True)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line != "WAIT":
            data = (line[4:] if line.startswith("RAW ") else line).encode()
            try:
                s.sendall(struct.pack(">I", len(data)) + data)
            except OSError:
                pass  # the daemon may have answered and closed first (a refused peer): read it
        try:
            reply = read_frame(s)
        except (socket.timeout, OSError) as e:
            reply = None
        print(reply if reply is not None else json.dumps({"closed": True}), flush=True)

main()
