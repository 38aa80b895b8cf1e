#!/bin/bash
# `make install` into a DESTDIR: the binary, a man page per command, completions and units land
# where they should; the installed binary works from outside the tree with the embedded BPF
# object; `make uninstall` removes exactly what install wrote. Run by `make test`.
. "$(dirname "$0")/common.sh"
R="$T/root"
P=/usr/local
make --no-print-directory -s install INSTALL_CONFIG=debug PREFIX=$P DESTDIR="$R" UNITS="$UNITS" >/dev/null

for f in sbin/lfp share/bash-completion/completions/lfp share/zsh/site-functions/_lfp \
	share/fish/vendor_completions.d/lfp.fish lib/systemd/system/lfp-example.service; do
	[ -f "$R$P/$f" ] || fail "make install did not write $P/$f"
done
# lfp(8) and one page per subcommand, each a page man can render.
for c in "" .policy .policy.load .policy.show .policy.export .policy.import .attach .detach .run .events .status .classify; do
	page="$R$P/share/man/man8/lfp$c.8"
	[ -f "$page" ] || fail "no man page lfp$c.8"
	MANWIDTH=100 man -l "$page" 2>/dev/null | grep -q "SYNOPSIS" || fail "lfp$c.8 does not render"
done
MANWIDTH=100 man -l "$R$P/share/man/man8/lfp.8" 2>/dev/null | grep -q "SEE ALSO" || fail "lfp.8 has no SEE ALSO"
bash -c ". '$R$P/share/bash-completion/completions/lfp' && complete -p lfp" >/dev/null || fail "bash completion does not load"
grep -q "^#compdef lfp" "$R$P/share/zsh/site-functions/_lfp" || fail "zsh completion"
grep -q "^complete -c .lfp. " "$R$P/share/fish/vendor_completions.d/lfp.fish" || fail "fish completion"
grep -qx "ExecStart=$P/sbin/lfp daemon --example" "$R$P/lib/systemd/system/lfp-example.service" \
	|| fail "the unit's ExecStart does not name the installed binary"

check_binary "$R$P/sbin/lfp"

# A Windows kill-switch (netsh wfp show state) imported by the installed binary and enforced by
# the kernel: loopback is permitted (IS_LOOPBACK), the rest of the world blocked, SMTP blocked
# even inside the tunnel's network. 192.0.2.1 and 10.8.1.2 are never reached: a block is EPERM at
# connect, before any packet.
cp "$SRC/Tests/NetshImportTests/Fixtures/killswitch-wfpstate.xml" "$T/ks.xml"
(cd "$T" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LFP_BPFFS_ROOT="$LFP_BPFFS_ROOT" \
	LFP_STATE_DIR="$LFP_STATE_DIR" LFP_CGROUP_PARENT="$LFP_CGROUP_PARENT" bash -c '
	set -euo pipefail
	"$0" policy import --netsh ks.xml -o ks.yaml 2>report.txt
	grep -q "4 filters; skipped 4" report.txt
	"$0" policy load ks.yaml >/dev/null
	probe="import socket, errno
for host, port in ((\"127.0.0.1\", 18080), (\"192.0.2.1\", 443), (\"10.8.1.2\", 25)):
    s = socket.socket(); s.settimeout(2)
    try: s.connect((host, port)); r = \"OK\"
    except OSError as e: r = errno.errorcode.get(e.errno, str(e.errno))
    print(host, port, r)"
	out=$("$0" run --workload import-test -- python3 -c "$probe")
	echo "$out" | grep -qx "127.0.0.1 18080 ECONNREFUSED" || { echo "loopback: $out"; exit 1; }
	echo "$out" | grep -qx "192.0.2.1 443 EPERM" || { echo "outside the tunnel: $out"; exit 1; }
	echo "$out" | grep -qx "10.8.1.2 25 EPERM" || { echo "SMTP in the tunnel: $out"; exit 1; }
' "$R$P/sbin/lfp") || fail "the imported Windows kill-switch is not enforced as Windows would"

make --no-print-directory -s uninstall PREFIX=$P DESTDIR="$R" UNITS="$UNITS" >/dev/null
left=$(find "$R" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install-test: ok"
