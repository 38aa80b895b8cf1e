/* EmbeddedBPF: lfp.bpf.o compiled into the lfp binary, so a copied or installed binary is
 * complete and never looks for an object in a source tree. Swift mirror: FilterEngine's
 * BPFObjectImage.embeddedLFP. */
#ifndef LFP_EMBEDDED_H
#define LFP_EMBEDDED_H
#include <stddef.h>

/* The object's ELF bytes (static, valid for the life of the process) and their count. */
const void *lfp_embedded_object(size_t *size);
#endif
