/* lxr-netsetup: a container's network in one process, over rtnetlink.
 *
 *   lxr-netsetup attach HOSTIF BRIDGE PID ADDRESS/PREFIX GATEWAY
 *
 * Makes a veth pair whose host end HOSTIF joins BRIDGE (up) and whose other
 * end is created directly in the network namespace of PID as eth0 (no move
 * between namespaces, which waits for an RCU grace period), then, inside
 * that namespace, gives eth0 the address, brings eth0 and lo up and adds
 * the default route via GATEWAY. The same steps as agent/net/net-plan.ts's
 * planAttach, without a process per step. Errors: one line on stderr
 * naming the step, exit 1. */
#include "../common/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct req {
	struct nlmsghdr h;
	char buf[1024];
};

static struct rtattr *attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len) memcpy(RTA_DATA(a), data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
	return a;
}

static void nest_end(struct nlmsghdr *h, struct rtattr *a)
{
	a->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)a);
}

/* Sends one request and reads its ACK. */
static int talk(int fd, struct nlmsghdr *h, const char *step, struct lxr_err *err)
{
	static unsigned seq;
	h->nlmsg_seq = ++seq;
	h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	if (send(fd, h, h->nlmsg_len, 0) < 0) return lxr_fail(err, errno, step, "netlink send");
	char buf[4096];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR) continue;
			return lxr_fail(err, errno, step, "netlink recv");
		}
		for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, (unsigned)n); r = NLMSG_NEXT(r, n)) {
			if (r->nlmsg_seq != h->nlmsg_seq || r->nlmsg_type != NLMSG_ERROR) continue;
			int e = -((struct nlmsgerr *)NLMSG_DATA(r))->error;
			return e ? lxr_fail(err, e, step, "rtnetlink") : 0;
		}
	}
}

static int rtnl(struct lxr_err *err)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0) return lxr_fail(err, errno, "netlink", "socket");
	return fd;
}

static int link_up(int fd, unsigned idx, int master, const char *step, struct lxr_err *err)
{
	struct req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK } };
	struct ifinfomsg *ifi = NLMSG_DATA(&r.h);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)idx;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (master > 0) attr(&r.h, IFLA_MASTER, &master, sizeof master);
	return talk(fd, &r.h, step, err);
}

static int add_veth(int fd, const char *host, int pid, struct lxr_err *err)
{
	struct req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK, .nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL } };
	attr(&r.h, IFLA_IFNAME, host, strlen(host) + 1);
	struct rtattr *info = attr(&r.h, IFLA_LINKINFO, NULL, 0);
	attr(&r.h, IFLA_INFO_KIND, "veth", 4);
	struct rtattr *data = attr(&r.h, IFLA_INFO_DATA, NULL, 0);
	struct rtattr *peer = attr(&r.h, VETH_INFO_PEER, NULL, 0);
	r.h.nlmsg_len += NLMSG_ALIGN(sizeof(struct ifinfomsg)); /* the peer's ifinfomsg, zeroed */
	attr(&r.h, IFLA_IFNAME, "eth0", 5);
	attr(&r.h, IFLA_NET_NS_PID, &pid, sizeof pid);
	nest_end(&r.h, peer);
	nest_end(&r.h, data);
	nest_end(&r.h, info);
	return talk(fd, &r.h, "create the veth pair", err);
}

static int add_addr(int fd, unsigned idx, struct in_addr a, int prefix, struct lxr_err *err)
{
	struct req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)), .nlmsg_type = RTM_NEWADDR, .nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL } };
	struct ifaddrmsg *ifa = NLMSG_DATA(&r.h);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = idx;
	attr(&r.h, IFA_LOCAL, &a, sizeof a);
	attr(&r.h, IFA_ADDRESS, &a, sizeof a);
	return talk(fd, &r.h, "add the address", err);
}

static int add_default_route(int fd, unsigned idx, struct in_addr gw, struct lxr_err *err)
{
	struct req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)), .nlmsg_type = RTM_NEWROUTE, .nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL } };
	struct rtmsg *rt = NLMSG_DATA(&r.h);
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	attr(&r.h, RTA_GATEWAY, &gw, sizeof gw);
	attr(&r.h, RTA_OIF, &idx, sizeof idx);
	return talk(fd, &r.h, "add the default route", err);
}

static int attach(const char *host, const char *bridge, int pid, const char *cidr, const char *gateway, struct lxr_err *err)
{
	char addr[32];
	const char *slash = strchr(cidr, '/');
	struct in_addr a, gw;
	if (!slash || (size_t)(slash - cidr) >= sizeof addr) return lxr_fail(err, EINVAL, "arguments", "%s is not ADDRESS/PREFIX", cidr);
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = 0;
	int prefix = atoi(slash + 1);
	if (inet_pton(AF_INET, addr, &a) != 1 || prefix < 1 || prefix > 32) return lxr_fail(err, EINVAL, "arguments", "%s is not ADDRESS/PREFIX", cidr);
	if (inet_pton(AF_INET, gateway, &gw) != 1) return lxr_fail(err, EINVAL, "arguments", "%s is not an address", gateway);
	unsigned br = if_nametoindex(bridge);
	if (!br) return lxr_fail(err, errno, "find the bridge", "%s", bridge);
	char nspath[64];
	snprintf(nspath, sizeof nspath, "/proc/%d/ns/net", pid);
	int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) return lxr_fail(err, errno, "open the container's network namespace", "%s", nspath);
	int fd = rtnl(err);
	if (fd < 0) return -1;
	if (add_veth(fd, host, pid, err) < 0) return -1;
	unsigned hidx = if_nametoindex(host);
	if (!hidx) return lxr_fail(err, errno, "find the host end", "%s", host);
	if (link_up(fd, hidx, (int)br, "put the host end on the bridge", err) < 0) return -1;
	close(fd);
	if (setns(nsfd, CLONE_NEWNET) < 0) return lxr_fail(err, errno, "enter the container's network namespace", "%s", nspath);
	close(nsfd);
	fd = rtnl(err); /* a netlink socket belongs to the namespace it was made in */
	if (fd < 0) return -1;
	unsigned eth0 = if_nametoindex("eth0"), lo = if_nametoindex("lo");
	if (!eth0 || !lo) return lxr_fail(err, errno, "find eth0 and lo in the container", "if_nametoindex");
	if (add_addr(fd, eth0, a, prefix, err) < 0) return -1;
	if (link_up(fd, eth0, 0, "bring eth0 up", err) < 0) return -1;
	if (link_up(fd, lo, 0, "bring lo up", err) < 0) return -1;
	if (add_default_route(fd, eth0, gw, err) < 0) return -1;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct lxr_err err = { 0 };
	if (argc != 7 || strcmp(argv[1], "attach")) {
		fprintf(stderr, "usage: lxr-netsetup attach HOSTIF BRIDGE PID ADDRESS/PREFIX GATEWAY\n");
		return 2;
	}
	if (attach(argv[2], argv[3], atoi(argv[4]), argv[5], argv[6], &err) < 0) {
		fprintf(stderr, "lxr-netsetup: %s: %s\n", err.step, err.msg);
		return 1;
	}
	return 0;
}
