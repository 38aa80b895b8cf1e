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

make --no-print-directory -s uninstall PREFIX=$P DESTDIR="$R" UNITS="$UNITS" >/dev/null
left=$(find "$R" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install-test: ok"
