/* Processes the host spawned: fork/exec with the caller's identity, output forwarding,
 * stdin, signals, pty size, list/attach, and reaping (every zombie, orphans included). */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
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

struct proc {
	struct proc *next;
	pid_t pid;
	uint32_t stream; /* subscribed host stream, 0 = output is dropped */
	int out, err, in; /* pty: out is the master and in/err are -1 */
	int pty, exited, status;
	int iout, ierr, iin; /* indices into the poll array of this round, -1 if absent */
	uint8_t *pend;       /* stdin not yet taken by the pipe; its request waits for it */
	size_t pend_len, pend_off;
	uint32_t pend_id;
	uint8_t *info; /* cwd, tag, argc, argv exactly as on the wire: replayed in PROC frames */
	size_t info_len;
};

static struct proc *procs;
static int nprocs;
static size_t pend_total;

static struct proc *find(uint32_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if ((uint32_t)p->pid == pid && !p->exited)
			return p;
	return NULL;
}

static void closefd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void drop_pend(struct proc *p, int err)
{
	if (!p->pend)
		return;
	if (err)
		send_err(p->pend_id, err, "stdin");
	pend_total -= p->pend_len;
	free(p->pend);
	p->pend = NULL;
}

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
	if (nprocs >= MAX_PROCS) {
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
	p->next = procs;
	procs = p;
	nprocs++;
	tx_begin(REP_STARTED, id);
	tx_u32((uint32_t)pid);
	tx_u8((uint8_t)(p->pty | (p->in >= 0) << 1));
	tx_end();
}

static void flush_stdin(struct proc *p)
{
	int fd = p->pty ? p->out : p->in;
	while (p->pend_off < p->pend_len) {
		ssize_t n = write(fd, p->pend + p->pend_off, p->pend_len - p->pend_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			return drop_pend(p, errno);
		}
		p->pend_off += (size_t)n;
	}
	uint32_t id = p->pend_id;
	drop_pend(p, 0);
	send_ok(id);
}

void proc_stdin(uint32_t id, struct rd *r)
{
	uint32_t pid = rd_u32(r);
	if (r->bad || r->n > MAX_CHUNK)
		return protocol_violation("stdin");
	struct proc *p = find(pid);
	if (!p)
		return send_err(id, ESRCH, "stdin");
	if (!p->pty && p->in < 0)
		return send_err(id, EBADF, "stdin is not open");
	if (p->pend)
		return send_err(id, EBUSY, "stdin write in progress");
	if (pend_total + r->n > STDIN_PENDING_CAP)
		return send_err(id, EAGAIN, "stdin");
	if (!(p->pend = malloc(r->n ? r->n : 1)))
		return send_err(id, ENOMEM, "stdin");
	memcpy(p->pend, r->p, r->n);
	p->pend_len = r->n, p->pend_off = 0, p->pend_id = id;
	pend_total += r->n;
	flush_stdin(p);
}

void proc_close_stdin(uint32_t id, struct rd *r)
{
	uint32_t pid = rd_u32(r);
	if (!rd_done(r))
		return protocol_violation("close stdin");
	struct proc *p = find(pid);
	if (!p)
		return send_err(id, ESRCH, "close stdin");
	if (p->pty)
		return send_err(id, ENOTTY, "close stdin of a pty: send ^D");
	if (p->in < 0)
		return send_err(id, EBADF, "stdin is not open");
	if (p->pend)
		return send_err(id, EBUSY, "stdin write in progress");
	closefd(&p->in);
	send_ok(id);
}

void proc_signal(uint32_t id, struct rd *r)
{
	uint32_t pid = rd_u32(r), sig = rd_u32(r);
	uint8_t group = rd_u8(r);
	if (!rd_done(r))
		return protocol_violation("signal");
	if (sig < 1 || sig > 64 || group > 1)
		return send_err(id, EINVAL, "signal");
	/* Only processes we spawned and have not reaped: a reaped pid may already be reused. */
	struct proc *p = find(pid);
	if (!p)
		return send_err(id, ESRCH, "signal");
	if (kill(group ? -p->pid : p->pid, (int)sig) < 0)
		return send_err(id, errno, "signal");
	send_ok(id);
}

void proc_resize(uint32_t id, struct rd *r)
{
	uint32_t pid = rd_u32(r);
	uint16_t cols = rd_u16(r), rows = rd_u16(r); /* sequenced: initializer order is not */
	struct winsize ws = { .ws_col = cols, .ws_row = rows };
	if (!rd_done(r))
		return protocol_violation("resize");
	if (!ws.ws_col || !ws.ws_row || ws.ws_col > 4096 || ws.ws_row > 4096)
		return send_err(id, EINVAL, "resize");
	struct proc *p = find(pid);
	if (!p)
		return send_err(id, ESRCH, "resize");
	if (!p->pty)
		return send_err(id, ENOTTY, "resize");
	if (ioctl(p->out, TIOCSWINSZ, &ws) < 0) /* the kernel sends SIGWINCH to the foreground */
		return send_err(id, errno, "resize");
	send_ok(id);
}

void proc_list(uint32_t id, struct rd *r)
{
	if (!rd_done(r))
		return protocol_violation("list");
	for (struct proc *p = procs; p; p = p->next) {
		if (p->exited)
			continue;
		tx_begin(REP_PROC, id);
		tx_u32((uint32_t)p->pid);
		tx_u8((uint8_t)(p->pty | (p->in >= 0) << 1));
		tx_bytes(p->info, p->info_len);
		tx_end();
	}
	send_ok(id);
}

void proc_attach(uint32_t id, struct rd *r)
{
	uint32_t pid = rd_u32(r);
	if (!rd_done(r))
		return protocol_violation("attach");
	struct proc *p = find(pid);
	if (!p)
		return send_err(id, ESRCH, "attach");
	if (p->stream)
		send_err(p->stream, EBUSY, "attached elsewhere");
	p->stream = id;
	tx_begin(REP_STARTED, id);
	tx_u32((uint32_t)p->pid);
	tx_u8((uint8_t)(p->pty | (p->in >= 0) << 1));
	tx_end();
}

void proc_reap(void)
{
	int st;
	pid_t pid;
	/* waitpid(-1): as PID 1 (or subreaper) orphans are ours too, and nobody else reaps them. */
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (struct proc *p = procs; p; p = p->next) {
			if (p->pid == pid && !p->exited) {
				p->exited = 1;
				p->status = st;
				break;
			}
		}
	}
}

void proc_detach_all(void)
{
	for (struct proc *p = procs; p; p = p->next) {
		p->stream = 0;
		drop_pend(p, 0);
	}
}

void proc_kill_all(int sig)
{
	for (struct proc *p = procs; p; p = p->next)
		if (!p->exited)
			kill(-p->pid, sig);
}

int proc_count(void)
{
	int n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n += !p->exited;
	return n;
}

int proc_draining(void)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->exited)
			return 1;
	return 0;
}

int proc_pollfds(struct pollfd *pfd, int max, int congested)
{
	int n = 0;
	for (struct proc *p = procs; p; p = p->next) {
		p->iout = p->ierr = p->iin = -1;
		if (n + 3 > max)
			continue;
		short rd = congested ? 0 : POLLIN;
		if (p->out >= 0) {
			p->iout = n;
			pfd[n++] = (struct pollfd){ .fd = p->out,
						    .events = rd | (p->pty && p->pend ? POLLOUT : 0) };
		}
		if (p->err >= 0) {
			p->ierr = n;
			pfd[n++] = (struct pollfd){ .fd = p->err, .events = rd };
		}
		if (p->in >= 0 && p->pend) {
			p->iin = n;
			pfd[n++] = (struct pollfd){ .fd = p->in, .events = POLLOUT };
		}
	}
	return n;
}

/* Forwards one chunk; returns 0 when the fd is finished (EOF, EIO of a closed pty, or empty
 * after exit) and closes it. */
static int pump(struct proc *p, int *fd, uint8_t kind)
{
	tx_begin(REP_DATA, p->stream);
	tx_u8(kind);
	ssize_t n = read(*fd, tx_tail(), MAX_CHUNK);
	if (n > 0) {
		tx_advance((size_t)n);
		if (p->stream)
			tx_end();
		else
			tx_abort(); /* nobody listening: dropped, so the child never blocks */
		return 1;
	}
	tx_abort();
	if (n < 0 && (errno == EINTR || (errno == EAGAIN && !p->exited)))
		return 1;
	closefd(fd);
	return 0;
}

static void finish(struct proc *p)
{
	if (p->stream) {
		tx_begin(REP_EXIT, p->stream);
		tx_u32((uint32_t)(WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1));
		tx_u8((uint8_t)(WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0));
		tx_end();
	}
	drop_pend(p, EPIPE);
	closefd(&p->in);
	free(p->info);
	free(p);
	nprocs--;
}

void proc_handle(struct pollfd *pfd, int n, int congested)
{
	(void)n;
	for (struct proc **pp = &procs; *pp;) {
		struct proc *p = *pp;
		short ro = p->iout >= 0 ? pfd[p->iout].revents : 0;
		short re = p->ierr >= 0 ? pfd[p->ierr].revents : 0;
		short ri = p->iin >= 0 ? pfd[p->iin].revents : 0;
		if (p->pend && ((ro & POLLOUT) || ri))
			flush_stdin(p);
		if (!congested) {
			/* After exit, drain what the child wrote (a few chunks per round), and stop at
			 * the first empty read: a descendant holding the pipe must not delay EXIT. */
			int rounds = p->exited ? 4 : 1;
			for (int i = 0; i < rounds && p->out >= 0 && (p->exited || (ro & ~POLLOUT)); i++)
				if (!pump(p, &p->out, p->pty ? 3 : 1) || out_pending())
					break;
			for (int i = 0; i < rounds && p->err >= 0 && (p->exited || re); i++)
				if (!pump(p, &p->err, 2) || out_pending())
					break;
		}
		if (p->exited && p->out < 0 && p->err < 0) {
			*pp = p->next;
			finish(p);
			continue;
		}
		pp = &p->next;
	}
}
