/* --port: the virtio-serial port's host end, as the agent last saw it. A port is one byte
 * stream for every host that connects to QEMU's socket in turn, and its open/close events
 * are not ordered with its bytes: the guest's driver handles data at once but the host
 * end's open/close in a deferred work item (drivers/char/virtio_console.c), so a new host's
 * AUTH can be read before the old host's close is seen (observed under TCG: the close then
 * dropped the new host's session, and its AUTH's answer with it). So a close does not end a
 * session at once: only a new AUTH on the port does, or the host end staying closed for
 * PORT_GONE_MS (a host that really left: its processes are detached then). */
#include "agent.h"

#include <poll.h>

static int vfd = -1;      /* never closed */
static int open_end;      /* the host end was open when last looked at */
static int64_t closed_at; /* when it was first seen closed; 0: open, or its close handled */

void agent_use_port(int fd) { vfd = fd; }
int agent_port_mode(void) { return vfd >= 0; }
int port_fd(void) { return vfd; }
int port_open(void) { return open_end; }

/* Looks at the host end (a virtio port polls POLLHUP while it is closed); returns whether it
 * is open. */
int port_look(int64_t now)
{
	struct pollfd p = { .fd = vfd, .events = POLLIN };
	int was = open_end;
	open_end = poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP);
	if (open_end)
		closed_at = 0;
	else if (was || !closed_at)
		closed_at = now ? now : 1;
	return open_end;
}

/* A read of 0 bytes: the host end is closed and nothing is left to read. */
void port_read_eof(int64_t now)
{
	if (open_end || !closed_at)
		closed_at = now ? now : 1;
	open_end = 0;
}

/* Milliseconds until a closed host end counts as gone (-1: not closed). */
int port_gone_in(int64_t now)
{
	if (open_end || !closed_at)
		return -1;
	int64_t left = closed_at + PORT_GONE_MS - now;
	return left > 0 ? (int)left : 0;
}

/* Whether the host end has been closed PORT_GONE_MS: once per close. */
int port_gone(int64_t now)
{
	if (port_gone_in(now) != 0)
		return 0;
	closed_at = 0;
	return 1;
}
