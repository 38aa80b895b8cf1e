// SPDX-License-Identifier: GPL-2.0
/* ALE_AUTH_RECV_ACCEPT_V4/V6: inbound SYNs and first datagrams per peer (lib/inbound.h); and the
 * packets of flows held for a callout, which egress keeps from leaving (lib/pend.h). */
#include "lib/inbound.h"
#include "lib/pend.h"

SEC("cgroup_skb/ingress")
int lfp_ingress(struct __sk_buff *skb)
{
	return lfp_on_ingress(skb);
}

SEC("cgroup_skb/egress")
int lfp_egress(struct __sk_buff *skb)
{
	return lfp_on_egress(skb);
}
