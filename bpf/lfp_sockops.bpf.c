// SPDX-License-Identifier: GPL-2.0
/* TCP lifetime from sockops: implicit binds, ALE_AUTH_LISTEN, ALE_FLOW_ESTABLISHED, accepted
 * children and ALE_ENDPOINT_CLOSURE. Logic: lib/tcp.h. */
#include "lib/tcp.h"

SEC("sockops")
int lfp_sockops(struct bpf_sock_ops *skops)
{
	return lfp_on_sockops(skops);
}
