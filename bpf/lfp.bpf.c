// SPDX-License-Identifier: GPL-2.0
/* The one object the loader opens (bpf/build/lfp.bpf.o): every hook family's entry file in one
 * translation unit. One unit rather than `bpftool gen object` over one object per file: the
 * classifier calls kfuncs (bpf_iter_num_*), whose externs Debian 12's libbpf 1.1 linker cannot
 * link, while its loader resolves them fine. */
#include "lfp_connect.bpf.c"
#include "lfp_iter.bpf.c"
#include "lfp_skb.bpf.c"
#include "lfp_sock.bpf.c"
#include "lfp_sockops.bpf.c"

/* The ABI this object was built against (lfp_abi.h). The loader reads it from .rodata before
 * loading and refuses an object whose version differs from the one compiled into lfp, so a stale
 * or foreign object (LFP_BPF_OBJECT, an old build) cannot be loaded by accident. */
const volatile __u32 lfp_abi_version = LFP_ABI_VERSION;
