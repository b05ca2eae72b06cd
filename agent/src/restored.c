/* cove-agent --restored NS SEEDHEX: run once by the host in a microVM restored from a saved
 * state (src/runtime/microvm/identity.ts). The clock stood still at the save: it is set to the
 * host's (ns). The CRNG is the saved VM's, so every clone of one template would draw the same
 * numbers until its next reseed (a minute of the guest's jiffies): the host's bytes are added
 * with credit and the CRNG is reseeded at once. Busybox cannot make these ioctls. */
#include "agent.h"

#include <fcntl.h>
#include <linux/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int agent_restored(const char *ns_text, const char *hex)
{
	char *end;
	unsigned long long ns = strtoull(ns_text, &end, 10);
	size_t n = strlen(hex) / 2;
	if (*end || n == 0 || n > 256 || strlen(hex) % 2)
		return 2;
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL), .tv_nsec = (long)(ns % 1000000000ULL) };
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		return 1;
	struct {
		struct rand_pool_info info;
		unsigned char buf[256];
	} seed;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return 2;
		seed.buf[i] = (unsigned char)(hi << 4 | lo);
	}
	seed.info.entropy_count = (int)(n * 8);
	seed.info.buf_size = (int)n;
	int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &seed) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		return 1;
	close(fd);
	return 0;
}
