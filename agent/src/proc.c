/* Processes the host spawned, once running (spawn.c starts them): the table, output
 * forwarding, stdin, signals, pty size, list/attach, and reaping (every zombie, orphans
 * included). */
#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

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

void closefd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int proc_full(void)
{
	return nprocs >= MAX_PROCS;
}

void proc_add(struct proc *p)
{
	p->next = procs;
	procs = p;
	nprocs++;
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
