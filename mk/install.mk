# Install, uninstall and the Debian package (included by the Makefile).
#
#   make install   [PREFIX=/usr/local] [DESTDIR=…] [INSTALL_CONFIG=release|debug]
#   make uninstall [PREFIX=…] [DESTDIR=…]    removes exactly what install put there
#   make deb       [DEB_CONFIG=release|debug] -> .build/deb/lfp_<version>_<arch>.deb
#
# What is installed (PREFIX-relative):
#   sbin/lfp                                   the one binary (the BPF object is embedded in it)
#   share/man/man8/lfp.8, lfp.<subcommand>.8   from the argument parser (generate-manual)
#   share/bash-completion/completions/lfp, share/zsh/site-functions/_lfp,
#   share/fish/vendor_completions.d/lfp.fish   from `lfp --generate-completion-script`
#   lib/systemd/system/*.service               every unit in dist/systemd/, if that directory exists
#
# The release build links the Swift runtime statically (--static-swift-stdlib), so the installed
# binary needs only libbpf, libelf, zlib and the C/C++ runtime, which the package's Depends name.
# INSTALL_CONFIG=debug installs the debug build as it is (the tests do: no second build), which
# still loads the Swift runtime from the toolchain.

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL_CONFIG ?= release
UNITS := $(wildcard dist/systemd/*.service)
# The manual's date: the last commit's, so two builds of one commit write the same pages.
MAN_DATE ?= $(shell git log -1 --format=%cs 2>/dev/null || date -u +%F)

ifeq ($(INSTALL_CONFIG),release)
INSTALL_BUILD_FLAGS := -c release --static-swift-stdlib
else
INSTALL_BUILD_FLAGS := -c debug
endif
STAGE := .build/stage-$(INSTALL_CONFIG)

.PHONY: install uninstall stage deb

# Everything install copies, built once into $(STAGE): the binary, the pages, the completions.
stage: bpf .build/abi.stamp
	$(SWIFT) build $(INSTALL_BUILD_FLAGS) $(SWIFT_FLAGS)
	$(SWIFT) build --product generate-manual $(SWIFT_FLAGS)
	rm -rf $(STAGE) && mkdir -p $(STAGE)/man $(STAGE)/completions
	cp "$$($(SWIFT) build $(INSTALL_BUILD_FLAGS) $(SWIFT_FLAGS) --show-bin-path)/lfp" $(STAGE)/lfp
	@# A release binary carries 80 MB of symbols and debug info that nobody installing it reads.
	$(if $(filter release,$(INSTALL_CONFIG)),strip --strip-unneeded $(STAGE)/lfp)
	"$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/generate-manual" $(STAGE)/lfp \
		--multi-page --section 8 --date $(MAN_DATE) --output-directory $(STAGE)/man
	@# `lfp help` is the parser's own helper, not a command of lfp's: no page for it. The
	@# generator (1.8.2) glues .Sh to the line before it after `.Ex -std`; split them.
	rm -f $(STAGE)/man/lfp.help.8
	sed -i 's/^\.Ex -std\.Sh /.Ex -std\n.Sh /' $(STAGE)/man/*.8
	$(STAGE)/lfp --generate-completion-script bash > $(STAGE)/completions/lfp
	$(STAGE)/lfp --generate-completion-script zsh > $(STAGE)/completions/_lfp
	$(STAGE)/lfp --generate-completion-script fish > $(STAGE)/completions/lfp.fish

# Units name the binary by its installed path: an ExecStart*= (or ExecStop*=, ExecReload=) path
# ending in /lfp, or the placeholder @SBINDIR@, is rewritten to $(SBINDIR).
install: stage
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(STAGE)/lfp $(DESTDIR)$(SBINDIR)/lfp
	install -m 0644 $(STAGE)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(STAGE)/completions/lfp $(DESTDIR)$(BASHCOMPDIR)/lfp
	install -m 0644 $(STAGE)/completions/_lfp $(DESTDIR)$(ZSHCOMPDIR)/_lfp
	install -m 0644 $(STAGE)/completions/lfp.fish $(DESTDIR)$(FISHCOMPDIR)/lfp.fish
	$(if $(UNITS),install -d $(DESTDIR)$(UNITDIR))
	$(foreach u,$(UNITS),sed -e 's#@SBINDIR@#$(SBINDIR)#g' \
		-e 's#^\(Exec[A-Za-z]*=[-@+!:]*\)/[^ ]*/lfp\( \|$$\)#\1$(SBINDIR)/lfp\2#' $(u) > $(DESTDIR)$(UNITDIR)/$(notdir $(u)) \
		&& chmod 0644 $(DESTDIR)$(UNITDIR)/$(notdir $(u));)

# Removes the files install writes, by name (the pages by the list the parser gives now, plus
# any lfp.*.8 left by an older version's subcommands), and no directory but empty ones of ours.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/lfp $(DESTDIR)$(MANDIR)/man8/lfp.8 $(DESTDIR)$(MANDIR)/man8/lfp.*.8 \
		$(DESTDIR)$(BASHCOMPDIR)/lfp $(DESTDIR)$(ZSHCOMPDIR)/_lfp $(DESTDIR)$(FISHCOMPDIR)/lfp.fish
	$(foreach u,$(UNITS),rm -f $(DESTDIR)$(UNITDIR)/$(notdir $(u));)

include mk/deb.mk
