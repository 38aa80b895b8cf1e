/* CLibBPF: libbpf (libbpf-dev) for Swift. Only BPFKit imports this module. */
#ifndef LFP_CLIBBPF_SHIM_H
#define LFP_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/epoll.h>

/* BPF_FS_MAGIC lives in <linux/magic.h>; exposed as a constant Swift can read. */
static inline unsigned long lfp_bpffs_magic(void)
{
	return 0xcafe4a11UL;
}
#endif
