// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Steering for the AF_XDP fast path (DESIGN.md §2.1).
//
// Attached to every fast-path port. Sends to the port's AF_XDP socket (the
// entry of `xsks` at the receiving queue) only what a worker forwards:
//
//   - L2TPv2 data messages: IPv4/UDP to port 1701 whose L2TP header has
//     T=0 and Ver=2 (RFC 2661 §3.1);
//   - PPPoE session frames (EtherType 0x8864, RFC 2516 §5): all of them;
//     the worker punts the PPP control protocols (LCP, PAP, CHAP, IPCP,
//     IPv6CP) to the control plane, which is cheaper than parsing PPP here
//     and keeps one place that decides what is control;
//   - IPv4 to a subscriber address: destination in the `subscribers`
//     LPM trie, which the control plane fills (LNS downstream);
//   - ARP requests (RFC 826, Ethernet/IPv4) whose target address is in
//     that trie, but for announcements (sender address = target address,
//     RFC 5227 §3): the LNS worker answers those for the sessions it has
//     (proxy ARP) and punts the rest.
//
// Everything else goes to the kernel (XDP_PASS): other ARP (for the box's
// own addresses, replies, announcements), ICMP and anything else to the
// box, L2TP control messages (T=1), PPPoE discovery (0x8863),
// IP fragments (only the first carries the UDP header; the kernel
// reassembles), management. When no socket is bound on the queue,
// bpf_redirect_map falls back to XDP_PASS too.
//
// Up to two VLAN tags (802.1ad outer, 802.1Q inner) are looked through
// before any of this, as the worker's codec accepts them.
//
// Options, per interface, in the one-entry `config` array (the control
// plane writes it before attaching, `Steering::attach_with`):
//
//   - STEER_PPPOE_DISCOVERY: PPPoE discovery (0x8863) goes to the socket
//     too. On a LAC access port no kernel socket serves discovery; the
//     worker punts it to the control plane (lacd), which answers PADI and
//     PADR through the worker's inject queue.
//   - STEER_EVERYTHING: every frame goes to the socket (a port that belongs
//     to a userspace stack entirely, such as l2bench's emulated subscribers
//     on a raw port).
//
// Self-contained on purpose: no kernel or libbpf headers, so it builds with
// nothing but clang (-target bpf).

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// enum xdp_action
#define XDP_PASS 2

// enum bpf_map_type
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_F_NO_PREALLOC 1

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

// Helper 51: long bpf_redirect_map(void *map, __u64 key, __u64 flags);
// the low bits of flags are the action when the key has no entry.
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
// Helper 1: void *bpf_map_lookup_elem(void *map, const void *key).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

#define MAX_QUEUES 64
#define MAX_SUBSCRIBER_PREFIXES 65536

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Key of the `subscribers` trie: prefix length in bits, then the IPv4
// network in network byte order (struct bpf_lpm_trie_key layout).
struct subscriber_prefix {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_SUBSCRIBER_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct subscriber_prefix);
	__type(value, __u8);
} subscribers SEC(".maps");

// Bits of `struct steering_config.flags`; io::afxdp::SteeringOptions
// writes them.
#define STEER_PPPOE_DISCOVERY 1
#define STEER_EVERYTHING 2

struct steering_config {
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steering_config);
} config SEC(".maps");

#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define ETH_P_PPPOE_DISCOVERY 0x8863
#define ETH_P_PPPOE_SESSION 0x8864
#define IPPROTO_UDP 17
#define L2TP_PORT 1701

static inline __u16 be16(const __u8 *p)
{
	return (__u16)p[0] << 8 | p[1];
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	__u32 queue = ctx->rx_queue_index;
	__u32 off = 12;
	__u32 zero = 0;
	struct steering_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u32 flags = cfg ? cfg->flags : 0;

	if (flags & STEER_EVERYTHING)
		return bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (data + 14 > end)
		return XDP_PASS;
	__u16 ethertype = be16(data + off);
	// Up to two VLAN tags (802.1ad outer, 802.1Q inner), as the wire
	// codec accepts.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD)
			break;
		off += 4;
		if (data + off + 2 > end)
			return XDP_PASS;
		ethertype = be16(data + off);
	}
	off += 2;

	if (ethertype == ETH_P_PPPOE_SESSION)
		return bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (ethertype == ETH_P_PPPOE_DISCOVERY) {
		if (flags & STEER_PPPOE_DISCOVERY)
			return bpf_redirect_map(&xsks, queue, XDP_PASS);
		return XDP_PASS;
	}
	if (ethertype == ETH_P_ARP) {
		const __u8 *arp = data + off;
		if (arp + 28 > end)
			return XDP_PASS;
		// An Ethernet/IPv4 request: hardware type 1, protocol 0x0800,
		// lengths 6 and 4, operation 1; not an announcement.
		if (be16(arp) != 1 || be16(arp + 2) != ETH_P_IP || arp[4] != 6 ||
		    arp[5] != 4 || be16(arp + 6) != 1)
			return XDP_PASS;
		if (arp[14] == arp[24] && arp[15] == arp[25] &&
		    arp[16] == arp[26] && arp[17] == arp[27])
			return XDP_PASS;
		struct subscriber_prefix target = { .prefixlen = 32 };
		target.addr[0] = arp[24];
		target.addr[1] = arp[25];
		target.addr[2] = arp[26];
		target.addr[3] = arp[27];
		if (bpf_map_lookup_elem(&subscribers, &target))
			return bpf_redirect_map(&xsks, queue, XDP_PASS);
		return XDP_PASS;
	}
	if (ethertype != ETH_P_IP)
		return XDP_PASS;

	const __u8 *ip = data + off;
	if (ip + 20 > end)
		return XDP_PASS;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	if ((ip[0] >> 4) != 4 || ihl < 20)
		return XDP_PASS;

	if (ip[9] == IPPROTO_UDP) {
		// A fragment (MF set or a non-zero offset) is the kernel's to
		// reassemble; only an unfragmented datagram has a UDP header we
		// can trust.
		__u16 frag = be16(ip + 6);
		if ((frag & 0x3fff) == 0) {
			if (ihl > 60)
				return XDP_PASS;
			const __u8 *udp = ip + ihl;
			if (udp + 8 + 2 > end)
				goto subscriber;
			if (be16(udp + 2) == L2TP_PORT) {
				// RFC 2661 §3.1: T (0x80 of the first byte) is 1
				// for control messages, Ver (low 4 bits of the
				// second byte) is 2 for L2TPv2.
				__u8 flags = udp[8];
				__u8 ver = udp[9] & 0x0f;
				if ((flags & 0x80) == 0 && ver == 2)
					return bpf_redirect_map(&xsks, queue, XDP_PASS);
				return XDP_PASS;
			}
		}
	}

subscriber:;
	struct subscriber_prefix key = { .prefixlen = 32 };
	key.addr[0] = ip[16];
	key.addr[1] = ip[17];
	key.addr[2] = ip[18];
	key.addr[3] = ip[19];
	if (bpf_map_lookup_elem(&subscribers, &key))
		return bpf_redirect_map(&xsks, queue, XDP_PASS);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
