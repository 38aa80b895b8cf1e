/* CLibBPF: libbpf (libbpf-dev) for Swift. Only BPFKit imports this module. */
#ifndef LFP_CLIBBPF_SHIM_H
#define LFP_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <errno.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/epoll.h>

/* A 4-byte store that publishes what was written before it (the delta of a classifier map, read
 * by BPF programs with one 4-byte load): release ordering, which Swift's raw pointers do not
 * give. */
static inline void lfp_store_release_u32(void *p, __u32 v)
{
	__atomic_store_n((__u32 *)p, v, __ATOMIC_RELEASE);
}

/* BPF_FS_MAGIC lives in <linux/magic.h>; exposed as a constant Swift can read. */
static inline unsigned long lfp_bpffs_magic(void)
{
	return 0xcafe4a11UL;
}
/* The 4-byte global `name` of `obj`'s .rodata, read after open and before load: from the
 * section's BTF (the variable's offset) and libbpf's copy of the section's initial value. A C
 * shim because BTF's variable records are packed, variable-length arrays (btf_var_secinfos)
 * that Swift would have to walk by pointer arithmetic. Returns 0, -ENOENT when the object has
 * no such variable, -EINVAL when it is not 4 bytes. */
static inline int lfp_object_rodata_u32(struct bpf_object *obj, const char *name, __u32 *out)
{
	struct btf *btf = bpf_object__btf(obj);
	if (!btf)
		return -ENOENT;
	int sec = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (sec < 0)
		return -ENOENT;
	const struct btf_type *t = btf__type_by_id(btf, sec);
	const struct btf_var_secinfo *v = btf_var_secinfos(t);
	for (int i = 0; i < btf_vlen(t); i++, v++) {
		const struct btf_type *var = btf__type_by_id(btf, v->type);
		if (!var || strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
			continue;
		if (v->size != 4)
			return -EINVAL;
		struct bpf_map *map = bpf_object__find_map_by_name(obj, ".rodata");
		size_t size = 0;
		const char *data = map ? bpf_map__initial_value(map, &size) : NULL;
		if (!data || v->offset + 4 > size)
			return -ENOENT;
		memcpy(out, data + v->offset, 4);
		return 0;
	}
	return -ENOENT;
}
#endif
