/* Starting a process: parsing the SPAWN request, the child's setup between fork and exec
 * (session, pty, identity, cwd), and the errno pipe that reports a failed stage. Kept apart
 * from proc.c, which owns the table once a process runs. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_ARGS 4096
#define MAX_GROUPS 64
#define MAX_TAG 64

struct spawn_req {
	uint32_t uid, gid;
	uint8_t flags;
	uint16_t cols, rows;
	uint32_t ngroups;
	gid_t groups[MAX_GROUPS];
	char cwd[MAX_PATH];
	char **argv, **envp;
};

enum { ST_SETSID, ST_TTY, ST_DUP, ST_SETGROUPS, ST_SETGID, ST_SETUID, ST_CHDIR, ST_EXEC };
static const char *const stage_names[] = { "setsid", "tty", "dup", "setgroups",
					   "setgid", "setuid", "chdir", "exec" };

static void child_fail(int pipefd, int stage)
{
	int msg[2] = { stage, errno };
	if (write(pipefd, msg, sizeof msg) < 0)
		_exit(126);
	_exit(127);
}

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void child(struct spawn_req *q, int errfd, int in, int out, int err, int slave)
{
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL); /* SIG_IGN survives exec: the agent ignores SIGPIPE */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		child_fail(errfd, ST_SETSID);
	if (slave >= 0) {
		if (ioctl(slave, TIOCSCTTY, 0) < 0 || fchown(slave, q->uid, q->gid) < 0)
			child_fail(errfd, ST_TTY);
		in = out = err = slave;
	} else if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		child_fail(errfd, ST_DUP);
	}
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		child_fail(errfd, ST_DUP);
	if (setgroups(q->ngroups, q->groups) < 0)
		child_fail(errfd, ST_SETGROUPS);
	if (setgid(q->gid) < 0)
		child_fail(errfd, ST_SETGID);
	if (setuid(q->uid) < 0)
		child_fail(errfd, ST_SETUID);
	if (chdir(q->cwd) < 0) /* as the user: a cwd they cannot enter fails here */
		child_fail(errfd, ST_CHDIR);
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC); /* errfd stays usable until exec succeeds */
	environ = q->envp; /* execvp searches the PATH of the environment it runs with */
	execvp(q->argv[0], q->argv);
	child_fail(errfd, ST_EXEC);
}

/* Copies n wire strings into C strings in blob; NULL-terminates the array. */
static int read_strv(struct rd *r, uint32_t n, char **v, char **blob)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t len;
		const uint8_t *s = rd_bytes(r, &len);
		if (!s)
			return -1;
		if (memchr(s, 0, len))
			return -2;
		memcpy(*blob, s, len);
		(*blob)[len] = 0;
		v[i] = *blob;
		*blob += len + 1;
	}
	v[n] = NULL;
	return 0;
}

static int parse_spawn(struct rd *r, struct spawn_req *q, char **mem, const uint8_t **info,
		       size_t *info_len)
{
	q->uid = rd_u32(r);
	q->gid = rd_u32(r);
	q->flags = rd_u8(r);
	q->cols = rd_u16(r);
	q->rows = rd_u16(r);
	q->ngroups = rd_u32(r);
	if (r->bad)
		return -1;
	if (q->ngroups > MAX_GROUPS || (q->flags & ~3u))
		return -2;
	for (uint32_t i = 0; i < q->ngroups; i++)
		q->groups[i] = rd_u32(r);
	*info = r->p;
	if (rd_path(r, q->cwd) < 0)
		return r->bad ? -1 : -2;
	uint32_t taglen;
	if (!rd_bytes(r, &taglen))
		return -1;
	if (taglen > MAX_TAG)
		return -2;
	uint32_t argc = rd_u32(r);
	if (r->bad)
		return -1;
	if (argc < 1 || argc > MAX_ARGS)
		return -2;
	/* Every wire string costs 4 bytes more than its C string needs: the payload size
	 * bounds the blob. */
	/* Pointer arrays sized by the payload: each wire string takes at least 4 bytes. */
	size_t slots = r->n / 4 + 2;
	char *blob = *mem = malloc(r->n + (slots + 2) * sizeof(char *));
	if (!blob)
		return -3;
	q->argv = (char **)blob;
	q->envp = q->argv + argc + 1;
	blob = (char *)(q->argv + slots + 2);
	int rc = read_strv(r, argc, q->argv, &blob);
	if (rc)
		return rc;
	*info_len = (size_t)(r->p - *info);
	uint32_t envc = rd_u32(r);
	if (r->bad)
		return -1;
	if (envc > MAX_ARGS)
		return -2;
	if ((rc = read_strv(r, envc, q->envp, &blob)))
		return rc;
	if (!rd_done(r))
		return -1;
	if ((q->flags & 1) && (!q->cols || !q->rows || q->cols > 4096 || q->rows > 4096))
		return -2;
	return 0;
}

static int open_pty(struct spawn_req *q, int *master, int *slave)
{
	char name[64];
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	struct winsize ws = { .ws_row = q->rows, .ws_col = q->cols };
	if (unlockpt(*master) < 0 || ptsname_r(*master, name, sizeof name) ||
	    ioctl(*master, TIOCSWINSZ, &ws) < 0 ||
	    (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		close(*master);
		return -1;
	}
	return 0;
}

void proc_spawn(uint32_t id, struct rd *r)
{
	struct spawn_req q;
	char *mem = NULL;
	const uint8_t *info;
	size_t info_len = 0;
	int rc = parse_spawn(r, &q, &mem, &info, &info_len);
	if (rc == -1) {
		free(mem);
		return protocol_violation("spawn");
	}
	if (rc < 0) {
		free(mem);
		return send_err(id, rc == -3 ? ENOMEM : EINVAL, "spawn request");
	}
	if (proc_full()) {
		free(mem);
		return send_err(id, EAGAIN, "too many processes");
	}
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, ep[2] = { -1, -1 };
	int master = -1, slave = -1, e = 0;
	const char *ctx = "pipe";
	if (q.flags & 1) {
		ctx = "pty";
		if (open_pty(&q, &master, &slave) < 0)
			e = errno;
	} else if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
		   ((q.flags & 2) && pipe2(pin, O_CLOEXEC) < 0)) {
		e = errno;
	}
	if (!e && pipe2(ep, O_CLOEXEC) < 0)
		e = errno, ctx = "pipe";
	pid_t pid = -1;
	if (!e && (pid = fork()) < 0)
		e = errno, ctx = "fork";
	if (pid == 0)
		child(&q, ep[1], pin[0], pout[1], perr[1], slave);
	closefd(&ep[1]), closefd(&pin[0]), closefd(&pout[1]), closefd(&perr[1]), closefd(&slave);
	if (!e) {
		int msg[2];
		ssize_t n;
		do
			n = read(ep[0], msg, sizeof msg);
		while (n < 0 && errno == EINTR);
		if (n == sizeof msg) { /* the child failed before exec and has exited */
			waitpid(pid, NULL, 0);
			e = msg[1];
			ctx = msg[0] >= 0 && msg[0] <= ST_EXEC ? stage_names[msg[0]] : "spawn";
		}
	}
	closefd(&ep[0]);
	struct proc *p = e ? NULL : calloc(1, sizeof *p);
	if (!e && (!p || !(p->info = malloc(info_len)))) {
		kill(pid, SIGKILL); /* reaped by proc_reap as an unknown pid */
		e = ENOMEM, ctx = "spawn";
	}
	free(mem);
	if (e) {
		if (p)
			free(p);
		closefd(&pin[1]), closefd(&pout[0]), closefd(&perr[0]), closefd(&master);
		return send_err(id, e, ctx);
	}
	memcpy(p->info, info, info_len);
	p->info_len = info_len;
	p->pid = pid;
	p->stream = id;
	p->pty = master >= 0;
	p->out = p->pty ? master : pout[0];
	p->err = perr[0];
	p->in = pin[1];
	for (int *fd = &p->out; fd <= &p->in; fd++)
		if (*fd >= 0)
			fcntl(*fd, F_SETFL, O_NONBLOCK);
	proc_add(p);
	tx_begin(REP_STARTED, id);
	tx_u32((uint32_t)pid);
	tx_u8((uint8_t)(p->pty | (p->in >= 0) << 1));
	tx_end();
}
