/*
 * cove-net: plumbs a new sandbox's network namespace over netlink, in one small process.
 *
 *   cove-net attach NETNS PID HOST_VETH ALIAS BRIDGE ADDRESS PREFIX GATEWAY
 *
 * does what src/network/network.ts used to ask of two `ip -batch` processes (iproute2 is
 * dynamically linked with libbpf, libelf, libmnl, ...: ~2-3 ms each to start and build its
 * caches), in the same order:
 *   host:   netns attach NETNS PID (a bind mount of /proc/PID/ns/net under /run/netns, the
 *           name first, so that reclaim finds whatever a failure leaves);
 *           link add HOST_VETH type veth peer name eth0 netns NETNS; alias; master BRIDGE;
 *           bridge_slave isolated on; up; neigh flush to ADDRESS dev BRIDGE
 *   inside: lo up; addr add ADDRESS/PREFIX dev eth0; eth0 up; route add default via GATEWAY
 * Exit 0 when all of it is done; else a message on stderr naming the step and exit 1 (the
 * caller's undo removes the veth and the name, as after a failed `ip`).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define NETNS_DIR "/run/netns"

static const char *step = "start";

static void die(int err) {
  fprintf(stderr, "cove-net: %s: %s\n", step, strerror(err));
  exit(1);
}

/* One netlink request under construction, attributes nested by offset. */
struct req {
  struct nlmsghdr *h;
  unsigned char buf[4096];
};

static void *put(struct req *r, const void *data, size_t len) {
  size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
  if (at + NLMSG_ALIGN(len) > sizeof r->buf) die(E2BIG);
  unsigned char *p = r->buf + at;
  memset(p, 0, NLMSG_ALIGN(len));
  if (data) memcpy(p, data, len);
  r->h->nlmsg_len = (uint32_t)(at + NLMSG_ALIGN(len)); /* padded, as iproute2 keeps it: nests end aligned */
  return p;
}

static void begin(struct req *r, uint16_t type, uint16_t flags, const void *body, size_t len) {
  memset(r->buf, 0, sizeof r->buf);
  r->h = (struct nlmsghdr *)r->buf;
  r->h->nlmsg_len = NLMSG_HDRLEN;
  r->h->nlmsg_type = type;
  r->h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
  put(r, body, len);
}

static size_t attr(struct req *r, uint16_t type, const void *data, size_t len) {
  struct rtattr a = {.rta_len = (unsigned short)RTA_LENGTH(len), .rta_type = type};
  size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
  put(r, &a, sizeof a);
  if (len) {
    r->h->nlmsg_len = (uint32_t)(at + RTA_LENGTH(0));
    put(r, data, len);
  }
  return at;
}

static size_t nest(struct req *r, uint16_t type) { return attr(r, type, NULL, 0); }

static void end_nest(struct req *r, size_t at) {
  ((struct rtattr *)(r->buf + at))->rta_len = (unsigned short)(NLMSG_ALIGN(r->h->nlmsg_len) - at);
}

static uint32_t seq;

/* Sends the request and waits for its ack; returns 0 or the kernel's errno. */
static int talk(int fd, struct req *r) {
  r->h->nlmsg_seq = ++seq;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, r->buf, r->h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return errno;
  for (;;) {
    unsigned char in[8192];
    ssize_t n = recv(fd, in, sizeof in, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    for (struct nlmsghdr *h = (struct nlmsghdr *)in; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      return -((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
  }
}

static int rtnl(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) die(errno);
  return fd;
}

static int index_of(const char *name) {
  unsigned i = if_nametoindex(name);
  if (!i) die(errno);
  return (int)i;
}

static void must(int fd, struct req *r) {
  int err = talk(fd, r);
  if (err) die(err);
}

static void link_up(int fd, int index) {
  struct req r;
  struct ifinfomsg m = {.ifi_family = AF_UNSPEC, .ifi_index = index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
  begin(&r, RTM_NEWLINK, 0, &m, sizeof m);
  must(fd, &r);
}

static in_addr_t ipv4(const char *text) {
  struct in_addr a;
  if (inet_pton(AF_INET, text, &a) != 1) die(EINVAL);
  return a.s_addr;
}

/* `ip netns attach NAME PID`: /run/netns a shared mount point, then the name bound to the namespace. */
static void netns_attach(const char *name, const char *pid) {
  step = "netns attach";
  if (mkdir(NETNS_DIR, 0755) && errno != EEXIST) die(errno);
  int bound = 0;
  while (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL)) {
    if (errno != EINVAL || bound) die(errno);
    if (mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL)) die(errno);
    bound = 1;
  }
  char path[256], source[64];
  if (snprintf(path, sizeof path, "%s/%s", NETNS_DIR, name) >= (int)sizeof path) die(ENAMETOOLONG);
  snprintf(source, sizeof source, "/proc/%s/ns/net", pid);
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) die(errno);
  close(fd);
  if (mount(source, path, "none", MS_BIND, NULL)) {
    int err = errno;
    unlink(path);
    die(err);
  }
}

int main(int argc, char **argv) {
  if (argc != 10 || strcmp(argv[1], "attach")) {
    fprintf(stderr, "usage: cove-net attach NETNS PID HOST_VETH ALIAS BRIDGE ADDRESS PREFIX GATEWAY\n");
    return 2;
  }
  const char *netns = argv[2], *pid = argv[3], *veth = argv[4], *alias = argv[5], *bridge = argv[6];
  in_addr_t address = ipv4(argv[7]), gateway = ipv4(argv[9]);
  int prefix = atoi(argv[8]);
  if (prefix < 1 || prefix > 32 || strlen(veth) >= IFNAMSIZ) die(EINVAL);

  netns_attach(netns, pid);
  char nspath[64];
  snprintf(nspath, sizeof nspath, "/proc/%s/ns/net", pid);
  int ns = open(nspath, O_RDONLY | O_CLOEXEC);
  if (ns < 0) die(errno);

  int fd = rtnl();
  struct req r;
  step = "link add veth";
  struct ifinfomsg m = {.ifi_family = AF_UNSPEC};
  begin(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &m, sizeof m);
  attr(&r, IFLA_IFNAME, veth, strlen(veth) + 1);
  size_t info = nest(&r, IFLA_LINKINFO);
  attr(&r, IFLA_INFO_KIND, "veth", 5);
  size_t data = nest(&r, IFLA_INFO_DATA);
  size_t peer = nest(&r, VETH_INFO_PEER);
  put(&r, &m, sizeof m); /* the peer's own ifinfomsg */
  attr(&r, IFLA_IFNAME, "eth0", 5);
  uint32_t nsfd = (uint32_t)ns;
  attr(&r, IFLA_NET_NS_FD, &nsfd, sizeof nsfd);
  end_nest(&r, peer);
  end_nest(&r, data);
  end_nest(&r, info);
  must(fd, &r);

  int vi = index_of(veth), bi = index_of(bridge);
  step = "link set alias, master";
  struct ifinfomsg set = {.ifi_family = AF_UNSPEC, .ifi_index = vi};
  begin(&r, RTM_NEWLINK, 0, &set, sizeof set);
  attr(&r, IFLA_IFALIAS, alias, strlen(alias));
  uint32_t master = (uint32_t)bi;
  attr(&r, IFLA_MASTER, &master, sizeof master);
  must(fd, &r);

  /* isolated ports forward only to non-isolated ones (the bridge itself): no sandbox-to-sandbox frames */
  step = "bridge_slave isolated on";
  begin(&r, RTM_NEWLINK, 0, &set, sizeof set);
  info = nest(&r, IFLA_LINKINFO);
  attr(&r, IFLA_INFO_KIND, "bridge_slave", 12); /* as iproute2 sends it: the kernel applies slave data under this kind */
  data = nest(&r, IFLA_INFO_SLAVE_DATA);
  uint8_t on = 1;
  attr(&r, IFLA_BRPORT_ISOLATED, &on, sizeof on);
  end_nest(&r, data);
  end_nest(&r, info);
  must(fd, &r);

  step = "link set up";
  link_up(fd, vi);

  /* The slot's address may have served a sandbox killed seconds ago: the bridge's neighbour
   * entry would still name that one's MAC until it expired (~10 s). */
  step = "neigh flush";
  struct ndmsg nd = {.ndm_family = AF_INET, .ndm_ifindex = bi};
  begin(&r, RTM_DELNEIGH, 0, &nd, sizeof nd);
  attr(&r, NDA_DST, &address, sizeof address);
  int err = talk(fd, &r);
  if (err && err != ENOENT && err != ESRCH) die(err);
  close(fd);

  step = "setns";
  if (setns(ns, CLONE_NEWNET)) die(errno);
  fd = rtnl();
  step = "lo up";
  link_up(fd, index_of("lo"));
  int eth0 = index_of("eth0");
  step = "addr add";
  struct ifaddrmsg am = {.ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)prefix, .ifa_index = (unsigned)eth0};
  begin(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &am, sizeof am);
  attr(&r, IFA_LOCAL, &address, sizeof address);
  attr(&r, IFA_ADDRESS, &address, sizeof address);
  must(fd, &r);
  step = "eth0 up";
  link_up(fd, eth0);
  step = "route add default";
  struct rtmsg rm = {
      .rtm_family = AF_INET,
      .rtm_table = RT_TABLE_MAIN,
      .rtm_protocol = RTPROT_BOOT,
      .rtm_scope = RT_SCOPE_UNIVERSE,
      .rtm_type = RTN_UNICAST,
  };
  begin(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rm, sizeof rm);
  attr(&r, RTA_GATEWAY, &gateway, sizeof gateway);
  must(fd, &r);
  return 0;
}
