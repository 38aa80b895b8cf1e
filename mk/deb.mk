# make deb: a Debian package of `make install PREFIX=/usr`, built with dpkg-deb (no debian/
# source tree: lfp builds with the Swift toolchain, which no Debian build-dependency provides).
# Depends come from dpkg-shlibdeps over the packaged binary, so they name exactly the libraries
# it links (libbpf1, libelf1, zlib1g, libc6, ...) with the versions it needs. The maintainer
# scripts are dist/debian/{postinst,prerm,postrm}, given the unit names.

DEB_CONFIG ?= release
# A release tag (v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3+4.gabc) when there is one, else
# 0.1~git<commit date>.<commit>.
DEB_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/' \
	| grep . || echo "0.1~git$$(git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo local)")
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_DIR := .build/deb
DEB_ROOT := $(DEB_DIR)/root
DEB_FILE = $(DEB_DIR)/lfp_$(DEB_VERSION)_$(DEB_ARCH).deb

deb:
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)/DEBIAN
	$(MAKE) --no-print-directory install INSTALL_CONFIG=$(DEB_CONFIG) PREFIX=/usr DESTDIR=$(CURDIR)/$(DEB_ROOT) \
		UNITDIR=/usr/lib/systemd/system ZSHCOMPDIR=/usr/share/zsh/vendor-completions
	@# dpkg-shlibdeps wants a debian/control beside it; the Swift runtime of a debug build comes
	@# from the toolchain, not a package, which --ignore-missing-info lets pass (release links it
	@# statically).
	mkdir -p $(DEB_DIR)/shlibs/debian && printf 'Source: lfp\n\nPackage: lfp\nArchitecture: any\n' > $(DEB_DIR)/shlibs/debian/control
	cd $(DEB_DIR)/shlibs && dpkg-shlibdeps -O --ignore-missing-info $(CURDIR)/$(DEB_ROOT)/usr/sbin/lfp 2>/dev/null \
		| sed -n 's/^shlibs:Depends=//p' > ../depends
	test -s $(DEB_DIR)/depends
	units="$$(cd $(DEB_ROOT)/usr/lib/systemd/system 2>/dev/null && ls *.service 2>/dev/null | tr '\n' ' ' | sed 's/ $$//')"; \
	for s in postinst prerm postrm; do \
	  sed "s|@UNITS@|$$units|" dist/debian/$$s > $(DEB_ROOT)/DEBIAN/$$s && chmod 0755 $(DEB_ROOT)/DEBIAN/$$s; \
	done
	sed -e 's|@VERSION@|$(DEB_VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' \
		-e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)|" \
		-e "s|@DEPENDS@|$$(cat $(DEB_DIR)/depends)|" dist/debian/control.in > $(DEB_ROOT)/DEBIAN/control
	cd $(DEB_ROOT) && find usr -type f -exec md5sum {} + > DEBIAN/md5sums
	dpkg-deb --root-owner-group --build $(DEB_ROOT) $(DEB_FILE)
	@echo "built $(DEB_FILE)"
