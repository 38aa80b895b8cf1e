// SPDX-License-Identifier: GPL-2.0
/* ALE_AUTH_RECV_ACCEPT_V4/V6: inbound SYNs and first datagrams per peer. Logic: lib/inbound.h. */
#include "lib/inbound.h"

SEC("cgroup_skb/ingress")
int lfp_ingress(struct __sk_buff *skb)
{
	return lfp_on_ingress(skb);
}
