/* cove-agent's poll loop: the host connection (authentication, reading and dispatching
 * frames), process and watch fds, signals and shutdown, idle trimming. Everything here
 * runs after startup (main.c) and shares its state only within this file. */
#include "agent.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_POLL (4 + 3 * MAX_PROCS + MAX_WATCHES)
#define SHUTDOWN_GRACE_MS 5000
/* After this long without events, buffers and free heap go back to the kernel. */
#define TRIM_AFTER_MS 500
/* While quiesced, how often the agent looks for the host's `listen` file (see listen_requested in probe.c). */
#define RELISTEN_POLL_MS 5

static int lfd = -1, sfd = -1; /* lfd is -1 while quiesced (SIGUSR2) */
static const char *lpath;
static int vfd = -1;                 /* --port: the virtio-serial port (port.c) */
static int hfd = -1;                 /* the authenticated host */
static int pfd_conn = -1;            /* a connection that has not authenticated yet */
static int64_t pend_deadline;
static uint8_t pend_buf[HDR_LEN + MAX_TOKEN];
static size_t pend_len;
static uint8_t rxbuf[MAX_FRAME] __attribute__((aligned(4096)));
static size_t rxlen;
static int violated;
static int64_t shutdown_deadline; /* 0: running */
static struct pollfd pfds[MAX_POLL];
static int dirty; /* events since the last trim */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void protocol_violation(const char *why)
{
	(void)why;
	violated = 1;
}

/* Ends a connection. The port stays open, and is not drained: a new host may already have
 * written its AUTH behind the old one's leftovers, which read_pending skips. */
static void close_conn(int fd)
{
	if (fd != vfd)
		close(fd);
}

static void drop_host(void)
{
	if (hfd < 0)
		return;
	close_conn(hfd);
	hfd = -1;
	rxlen = 0;
	out_attach(-1);
	proc_detach_all();
	fs_close_all();
	watch_close_all();
}

static void drop_pending(void);
static void finish_auth(void);

/* --port: an AUTH on the port while a host is authenticated comes from a new host whose
 * bytes came before the agent saw the old one close (port.c). It is taken as a new
 * connection: the old host's streams end and what was queued for it is dropped. */
static void port_reauth(const uint8_t *frame, uint32_t len)
{
	out_attach(-1);
	proc_detach_all();
	fs_close_all();
	watch_close_all();
	hfd = -1;
	rxlen = 0; /* a new host sends nothing before the answer to its AUTH */
	drop_pending();
	memcpy(pend_buf, frame, len);
	pfd_conn = vfd;
	pend_len = len;
	finish_auth();
}

/* Handles the complete frames buffered from the host, while replies can still be queued. */
static void process_rx(void)
{
	size_t off = 0;
	while (hfd >= 0 && !violated && out_pending() <= OUT_STOP_READING && rxlen - off >= HDR_LEN) {
		const uint8_t *h = rxbuf + off;
		uint32_t len = le32(h);
		if (h[4] == T_AUTH && hfd == vfd && !h[5] && !h[6] && !h[7] && le32(h + 8) == 0 &&
		    len > HDR_LEN && len <= sizeof pend_buf) {
			if (rxlen - off < len)
				break;
			return port_reauth(h, len);
		}
		if (len < HDR_LEN || len > MAX_FRAME || !agent_flags_ok(h[4], h[5]) || h[6] || h[7] ||
		    (h[4] == T_AUTH)) {
			violated = 1;
			break;
		}
		if (rxlen - off < len)
			break;
		uint32_t id = le32(h + 8);
		struct rd r = { .p = h + HDR_LEN, .n = len - HDR_LEN };
		req_flags = h[5];
		if (id == 0)
			violated = 1;
		else
			agent_dispatch(h[4], id, &r);
		off += len;
	}
	if (violated || out_broken()) {
		violated = 0;
		drop_host();
		return;
	}
	if (off) {
		memmove(rxbuf, rxbuf + off, rxlen - off);
		rxlen -= off;
	}
}

static int rx_has_frame(void)
{
	return rxlen >= HDR_LEN && le32(rxbuf) <= rxlen;
}

static void read_host(void)
{
	ssize_t n = read(hfd, rxbuf + rxlen, sizeof rxbuf - rxlen);
	if (n == 0 && hfd == vfd)
		return port_read_eof(now_ms());
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		drop_host();
		return;
	}
	if (n > 0)
		rxlen += (size_t)n;
}

static void drop_pending(void)
{
	if (pfd_conn >= 0)
		close_conn(pfd_conn);
	pfd_conn = -1;
	pend_len = 0;
}

/* --port: SIGIO, the host end opened (a host connected to QEMU's socket) or closed. Nothing
 * ends here (port.c): an open end with no session is read for an AUTH (agent_loop). */
static void port_changed(void)
{
	if (vfd >= 0)
		port_look(now_ms());
}

static void accept_conn(void)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	drop_pending(); /* the newest unauthenticated connection wins; the host is the only peer */
	pfd_conn = fd;
	pend_deadline = now_ms() + AUTH_TIMEOUT_MS;
}

static void read_pending(void)
{
	size_t want = pend_len < HDR_LEN ? HDR_LEN : le32(pend_buf);
	ssize_t n = read(pfd_conn, pend_buf + pend_len, want - pend_len);
	if (n == 0 && pfd_conn == vfd)
		return port_read_eof(now_ms());
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return drop_pending();
	if (n < 0)
		return;
	pend_len += (size_t)n;
	if (pend_len == HDR_LEN) {
		uint32_t len = le32(pend_buf);
		if (len <= HDR_LEN || len > sizeof pend_buf || pend_buf[4] != T_AUTH || pend_buf[5] ||
		    pend_buf[6] || pend_buf[7] || le32(pend_buf + 8) != 0) {
			if (pfd_conn != vfd)
				return drop_pending();
			/* The port has no connection boundaries: skip an old host's bytes to the AUTH. */
			memmove(pend_buf, pend_buf + 1, --pend_len);
			return;
		}
	}
	if (pend_len < HDR_LEN || pend_len < le32(pend_buf))
		return;
	finish_auth();
}

/* The pending connection sent a whole AUTH frame (pend_buf): it becomes the host. */
static void finish_auth(void)
{
	if (!token_ok(pend_buf + HDR_LEN, pend_len - HDR_LEN))
		return drop_pending();
	drop_host(); /* a restarted host re-adopts the sandbox */
	hfd = pfd_conn;
	pfd_conn = -1;
	pend_len = 0;
	out_attach(hfd);
	tx_begin(REP_OK, 0);
	tx_u32(PROTO_VERSION);
	tx_u32(MAX_FRAME);
	tx_u32((uint32_t)getpid());
	tx_end();
}

/* SIGUSR2 quiesces, SIGUSR1 resumes (spec/agent-protocol.md, Checkpoint); both idempotent.
 * gVisor cannot checkpoint a socket bound on the host, so before a checkpoint the host asks
 * the agent to close its socket and connections, and after the restore to listen again. The
 * socket file is gone while the agent is quiesced: the host waits for that. Processes keep
 * running throughout. */
static void set_listening(int on)
{
	if (vfd >= 0)
		return; /* a VM is saved with its port: nothing to close */
	if (!on && lfd >= 0) {
		drop_pending();
		drop_host();
		listen_requested(lpath, 0);
		checkpoint_probe(lpath); /* before the unlink the host waits for */
		close(lfd);
		lfd = -1;
		unlink(lpath);
	} else if (on && lfd < 0) {
		lfd = agent_listen(lpath);
	}
}

static void on_signal(void)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			proc_reap();
		} else if (si.ssi_signo == SIGIO) {
			port_changed();
		} else if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGUSR2) {
			set_listening(si.ssi_signo == SIGUSR1);
		} else if (!shutdown_deadline) {
			/* SIGTERM/SIGINT/SIGHUP: ask everything to stop, then SIGKILL after a grace
			 * period and exit. As PID 1, kill(-1) reaches every process in the sandbox,
			 * orphans included. */
			shutdown_deadline = now_ms() + SHUTDOWN_GRACE_MS;
			proc_kill_all(SIGTERM);
			if (getpid() == 1)
				kill(-1, SIGTERM);
		}
	}
}

static void check_shutdown(void)
{
	if (!shutdown_deadline)
		return;
	if (proc_count() > 0 && now_ms() < shutdown_deadline)
		return;
	proc_kill_all(SIGKILL);
	if (getpid() == 1)
		kill(-1, SIGKILL);
	out_flush();
	exit(0);
}

int agent_loop(int listen_fd, int signal_fd, const char *socket_path)
{
	lfd = listen_fd;
	lpath = socket_path;
	sfd = signal_fd;
	vfd = port_fd();
	port_changed();
	for (;;) {
		/* --port: an open host end with no session is read for its AUTH, with no deadline
		 * (only the host reaches the port); a closed one is not polled (it polls POLLHUP). */
		if (vfd >= 0 && port_open() && hfd < 0 && pfd_conn < 0)
			pfd_conn = vfd, pend_len = 0;
		int vfd_idle = vfd >= 0 && !port_open();
		process_rx();
		int congested = out_pending() > 0;
		int n = 0;
		pfds[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		pfds[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		int hidx = -1, pidx = -1;
		if (hfd >= 0 && !(hfd == vfd && vfd_idle)) {
			short ev = 0;
			if (out_pending() <= OUT_STOP_READING && !rx_has_frame())
				ev |= POLLIN;
			if (out_pending())
				ev |= POLLOUT;
			hidx = n;
			pfds[n++] = (struct pollfd){ .fd = hfd, .events = ev };
		}
		if (pfd_conn >= 0 && !(pfd_conn == vfd && vfd_idle)) {
			pidx = n;
			pfds[n++] = (struct pollfd){ .fd = pfd_conn, .events = POLLIN };
		}
		int pstart = n;
		n += proc_pollfds(pfds + n, MAX_POLL - n, congested);
		int wstart = n;
		n += watch_pollfds(pfds + n, MAX_POLL - n, congested);

		int timeout = -1;
		int64_t t = now_ms();
		if (fs_pump(congested) || (!congested && proc_draining()))
			timeout = 0;
		/* A CHUNK the socket did not take whole is queued: wait for room, not for the host
		 * (which may owe no CREDIT) or the idle timer. */
		if (hidx >= 0 && out_pending())
			pfds[hidx].events |= POLLOUT;
		if (pfd_conn >= 0 && pfd_conn != vfd) {
			int left = pend_deadline > t ? (int)(pend_deadline - t) : 0;
			if (timeout < 0 || left < timeout)
				timeout = left;
		}
		int gone = vfd >= 0 ? port_gone_in(t) : -1;
		if (gone >= 0 && (timeout < 0 || gone < timeout))
			timeout = gone;
		if (shutdown_deadline) {
			int left = shutdown_deadline > t ? (int)(shutdown_deadline - t) : 0;
			if (timeout < 0 || left < timeout)
				timeout = left;
		}
		int trim = timeout < 0 && dirty;
		if (trim)
			timeout = TRIM_AFTER_MS;
		int quiesced = lfd < 0 && vfd < 0;
		if (quiesced && (timeout < 0 || timeout > RELISTEN_POLL_MS))
			timeout = RELISTEN_POLL_MS;
		int ready = poll(pfds, (nfds_t)n, timeout);
		if (ready < 0 && errno != EINTR)
			return 1;
		if (ready == 0 && trim) {
			dirty = 0;
			if (!rxlen)
				madvise(rxbuf, sizeof rxbuf, MADV_DONTNEED);
			frame_trim();
			malloc_trim(0);
		}
		if (ready > 0)
			dirty = 1;

		if (pfds[1].revents)
			on_signal();
		if (hidx >= 0 && hfd >= 0) {
			short re = pfds[hidx].revents;
			if ((re & POLLOUT) && out_flush() < 0)
				drop_host();
			else if (re & (POLLIN | POLLHUP | POLLERR))
				read_host();
		}
		proc_handle(pfds + pstart, wstart - pstart, congested);
		watch_handle(pfds + wstart, n - wstart);
		if (hfd >= 0 && out_broken())
			drop_host();
		if (pidx >= 0 && pfd_conn >= 0 && pfds[pidx].revents)
			read_pending();
		if (pfd_conn >= 0 && pfd_conn != vfd && now_ms() >= pend_deadline)
			drop_pending();
		if (vfd >= 0 && port_gone(now_ms())) {
			drop_host(); /* the host left: its processes are detached */
			drop_pending();
		}
		if (lfd >= 0 && pfds[0].revents & POLLIN)
			accept_conn();
		if (quiesced && lfd < 0 && listen_requested(lpath, 1))
			set_listening(1);
		check_shutdown();
	}
}
