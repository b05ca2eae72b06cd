/* cove-agent --socket PATH: PID 1 of a sandbox. Startup only: arguments, the token, fds 0-2,
 * signals and the listening socket; then loop.c runs the one poll loop (no threads). See
 * spec/agent-protocol.md for the wire contract and agent/README.md for the bounds. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char token[MAX_TOKEN + 1];
static size_t token_len;

/* No stdio anywhere: printf and its locale machinery are most of a static binary's text. */
static void die(const char *msg, int code)
{
	const char *err = code == 1 ? strerrorname_np(errno) : NULL;
	if (write(2, "cove-agent: ", 12) < 0 || write(2, msg, strlen(msg)) < 0 ||
	    (err && (write(2, ": ", 2) < 0 || write(2, err, strlen(err)) < 0)))
		_exit(code);
	if (write(2, "\n", 1) < 0)
		_exit(code);
	_exit(code);
}

/* The token must not stay readable in /proc/1/environ, which shows the initial environment
 * block of the stack, not environ[]: copy it, drop it from environ, then wipe the bytes. */
static void take_token(void)
{
	const char *name = "COVE_AGENT_TOKEN=";
	char *entry = NULL;
	for (char **e = environ; *e; e++)
		if (!strncmp(*e, name, strlen(name)))
			entry = *e;
	if (!entry) {
		die("COVE_AGENT_TOKEN is not set", 2);
	}
	const char *v = entry + strlen(name);
	token_len = strlen(v);
	if (token_len == 0 || token_len > MAX_TOKEN) {
		die("COVE_AGENT_TOKEN must be 1..256 bytes", 2);
	}
	memcpy(token, v, token_len);
	unsetenv("COVE_AGENT_TOKEN");
	memset(entry, 0, strlen(entry));
}

int token_ok(const uint8_t *p, size_t n)
{
	if (agent_port_mode())
		return 1; /* the port's other end is the host's alone (agent.h) */
	/* Constant time in the content; the length is not secret (it is fixed per deployment). */
	unsigned diff = (unsigned)(n ^ token_len);
	for (size_t i = 0; i < MAX_TOKEN; i++)
		diff |= (unsigned)((i < n ? p[i] : 0) ^ (uint8_t)token[i]);
	return diff == 0;
}

int agent_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sa.sun_path)
		return -1;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	unlink(path); /* a stale socket from a previous run */
	mode_t old = umask(0177); /* born 0600: no window where another user could connect */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A microVM's virtio-serial port: its device node appears asynchronously after the driver
 * loads, so wait for it; SIGIO (O_ASYNC) then tells of every change of the host end. */
static int open_port(const char *path)
{
	int fd = -1;
	for (int i = 0; i < 1000 && fd < 0; i++) {
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			usleep(10000);
	}
	if (fd < 0 || fcntl(fd, F_SETOWN, getpid()) < 0 ||
	    fcntl(fd, F_SETFL, O_RDWR | O_NONBLOCK | O_ASYNC) < 0)
		die(path, 1);
	return fd;
}

#define USAGE \
	"usage: cove-agent --socket PATH (token in COVE_AGENT_TOKEN) | --port DEVICE | --restored NS SEEDHEX"

int main(int argc, char **argv)
{
	const char *path = NULL, *port = NULL;
	if (argc == 4 && !strcmp(argv[1], "--restored"))
		return agent_restored(argv[2], argv[3]);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = argv[++i];
		else {
			die(USAGE, 2);
		}
	}
	if (!path == !port) {
		die(USAGE, 2);
	}
	if (!port)
		take_token();
	/* fds 0-2 must exist, or a pipe could land on them and be clobbered by a child's dup2. */
	int nul;
	while ((nul = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && nul <= 2)
		fcntl(nul, F_SETFD, 0);
	if (nul > 2)
		close(nul);
	umask(022); /* inherited by every child and applied to created files */
	setgroups(0, NULL); /* file ops run with the caller's fsuid/fsgid and no stray groups */
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1); /* tests on the host: orphans still come to us */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	int lfd = -1;
	if (port)
		agent_use_port(open_port(port));
	else if ((lfd = agent_listen(path)) < 0)
		die(path, 1);
	if (sfd < 0)
		die("signalfd", 1);
	proc_reap(); /* children inherited before signalfd existed */
	return agent_loop(lfd, sfd, path);
}
