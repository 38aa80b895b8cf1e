#!/usr/bin/env python3
"""Generate N equivalent non-matching rules for `make bench`, in one of four forms:
  lfp N          an lfp policy (JSON): N BLOCK filters at ALE_AUTH_CONNECT_V4, remote address
                 10.a.b.c and remote port, in one sublayer
  iptables N     iptables-restore input: an "established first" rule, then N DROP rules in OUTPUT
  nft-linear N   nft -f input: the same as N rules of one chain
  nft-set N      nft -f input: the same as one rule over a concatenated set of N elements
Rule i: destination 10.(i>>16 & 255).(i>>8 & 255).(i & 255), TCP destination port 1024 + i % 60000.
Nothing matches loopback traffic: the bench measures the cost of not matching."""
import json, sys

kind, n = sys.argv[1], int(sys.argv[2])
extra = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # lfp: filters numbered from here (one-filter change)


def addr(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def port(i):
    return 1024 + i % 60000


if kind == "lfp":
    sub = "b5e4c000-0000-4000-8000-000000000001"
    filters = []
    for i in range(extra, extra + n):
        filters.append({
            "displayData": {"name": f"bench {i}"},
            "layerKey": "FWPM_LAYER_ALE_AUTH_CONNECT_V4",
            "subLayerKey": sub,
            "weight": {"type": "FWP_UINT64", "uint64": i},
            "filterCondition": [
                {"fieldKey": "FWPM_CONDITION_IP_REMOTE_ADDRESS", "matchType": "FWP_MATCH_EQUAL",
                 "conditionValue": {"type": "FWP_UINT32", "uint32": addr(i)}},
                {"fieldKey": "FWPM_CONDITION_IP_REMOTE_PORT", "matchType": "FWP_MATCH_EQUAL",
                 "conditionValue": {"type": "FWP_UINT16", "uint16": port(i)}},
            ],
            "action": {"type": "FWP_ACTION_BLOCK"},
        })
    doc = {"sublayers": [{"subLayerKey": sub, "displayData": {"name": "bench"}, "weight": 0x4000}], "filters": filters}
    json.dump(doc, sys.stdout)
elif kind == "iptables":
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    out += [f"-A OUTPUT -d {addr(i)}/32 -p tcp -m tcp --dport {port(i)} -j DROP" for i in range(n)]
    out.append("COMMIT")
    print("\n".join(out))
elif kind == "nft-linear":
    print("table ip lfpbench {\n chain out {\n  type filter hook output priority 0; policy accept;")
    print("  ct state established,related accept")
    for i in range(n):
        print(f"  ip daddr {addr(i)} tcp dport {port(i)} drop")
    print(" }\n}")
elif kind == "nft-set":
    print("table ip lfpbench {\n set blk {\n  type ipv4_addr . inet_service")
    if n:
        print("  elements = { " + ", ".join(f"{addr(i)} . {port(i)}" for i in range(n)) + " }")
    print(" }\n chain out {\n  type filter hook output priority 0; policy accept;")
    print("  ct state established,related accept\n  ip daddr . tcp dport @blk drop\n }\n}")
else:
    sys.exit(f"unknown kind {kind}")
