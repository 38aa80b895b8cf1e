#!/bin/bash
# `make deb`, then dpkg on this machine: the package installs the files and enables the unit
# (deb-systemd-helper's links; nothing is started where systemd does not run), its Depends name
# the package of every library the binary links, the installed binary enforces a policy, and
# `dpkg -r` then `dpkg --purge` leave none of its files, links or state. Run by `make test`.
# DEB_CONFIG=debug skips the release build (the Swift runtime then comes from the toolchain).
. "$(dirname "$0")/common.sh"
if dpkg-query -W -f='${Status}' lfp 2>/dev/null | grep -q installed; then
	fail "a package named lfp is already installed here: this test installs and purges its own"
fi
make --no-print-directory -s deb DEB_CONFIG="${DEB_CONFIG:-release}" UNITS="$UNITS" >"$T/deb.log" 2>&1 || { cat "$T/deb.log"; fail "make deb"; }
deb=$(sed -n 's/^built //p' "$T/deb.log")
[ -f "$deb" ] || fail "make deb said no package"

dpkg-deb --field "$deb" Package | grep -qx lfp || fail "Package field"
depends=$(dpkg-deb --field "$deb" Depends)
# Depends' package names, one a line (versions dropped).
dep_names=$(echo "$depends" | tr ',' '\n' | sed 's/^ *//; s/[ (].*//')
for p in libbpf1 libelf1 zlib1g libc6; do
	echo "$dep_names" | grep -qxF "$p" || fail "Depends ($depends) lacks $p"
done
files=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\./|/|p' | grep -v '/$')
echo "$files" | grep -qx /usr/sbin/lfp || fail "no /usr/sbin/lfp in the package"
echo "$files" | grep -qx /usr/share/man/man8/lfp.8 || fail "no lfp.8 in the package"
echo "$files" | grep -qx /usr/lib/systemd/system/lfp-example.service || fail "no unit in the package"

EXTRA_CLEANUP='dpkg --purge lfp >/dev/null 2>&1'
dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i"; }
wants=/etc/systemd/system/multi-user.target.wants/lfp-example.service
[ -L "$wants" ] || fail "postinst did not enable the unit ($wants)"
grep -qx "ExecStart=/usr/sbin/lfp daemon --example" /usr/lib/systemd/system/lfp-example.service || fail "unit ExecStart"
# Every library the binary itself links (its NEEDED entries, not their own dependencies) belongs
# to a package that Depends names (or to the toolchain, for a debug build's Swift runtime).
for soname in $(objdump -p /usr/sbin/lfp | awk '$1 == "NEEDED" { print $2 }'); do
	# ldd writes "soname => path", or the loader's path alone.
	lib=$(ldd /usr/sbin/lfp | awk -v n="$soname" '$1 == n { print $3 } $1 ~ ("/" n "$") { print $1 }')
	[ -n "$lib" ] || fail "$soname does not resolve"
	case "$lib" in /opt/swift/*) continue ;; esac
	pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null) || fail "no package owns $lib"
	pkg=${pkg%%:*}
	echo "$dep_names" | grep -qxF "$pkg" || fail "$lib comes from $pkg, which Depends ($depends) does not name"
done
check_binary /usr/sbin/lfp
MANWIDTH=100 man lfp.policy.load 2>/dev/null | grep -q "SYNOPSIS" || fail "man lfp.policy.load"

dpkg -r lfp >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -r"; }
for f in $files; do [ ! -e "$f" ] || fail "dpkg -r left $f"; done
[ ! -e "$wants" ] || fail "dpkg -r left the unit enabled"
dpkg --purge lfp >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg --purge"; }
EXTRA_CLEANUP=":"
dpkg-query -W lfp >/dev/null 2>&1 && fail "lfp still known to dpkg after purge"
for f in /var/lib/systemd/deb-systemd-helper-enabled/lfp-example.service \
	/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/lfp-example.service \
	/var/lib/systemd/deb-systemd-helper-masked/lfp-example.service /etc/systemd/system/lfp-example.service; do
	[ ! -e "$f" ] && [ ! -L "$f" ] || fail "purge left $f"
done
echo "deb-test: ok"
