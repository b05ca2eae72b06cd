/* Streamed file transfer: READ sends chunks only as far as the host's credit allows, WRITE
 * takes WDATA chunks and answers WEND with the file's entry. Apart from fs.c because these
 * outlive their request: a table of open streams, pumped by the main loop. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct stream {
	uint32_t id; /* 0: free slot */
	int fd, writing, elevated;
	uint32_t credit;
	char *path; /* write: for the final stat */
	uid_t uid;
	gid_t gid;
};
static struct stream streams[MAX_STREAMS];

static struct stream *stream_find(uint32_t id, int writing)
{
	for (int i = 0; i < MAX_STREAMS; i++)
		if (streams[i].id == id && id && streams[i].writing == writing)
			return &streams[i];
	return NULL;
}

static struct stream *stream_free(void)
{
	for (int i = 0; i < MAX_STREAMS; i++)
		if (!streams[i].id)
			return &streams[i];
	return NULL;
}

/* F_DIRECT: the descriptor's number, for the host to open the same file from outside. */
static void send_fd(uint32_t id, int fd)
{
	tx_begin(REP_FD, id);
	tx_u32((uint32_t)fd);
	tx_end();
}

static void stream_close(struct stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	memset(s, 0, sizeof *s);
	s->fd = -1;
}

void fs_read(uint32_t id, struct rd *r)
{
	FS_HEAD("read");
	uint32_t credit = rd_u32(r);
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("read");
	if (bad)
		return send_err(id, EINVAL, "path");
	struct stream *s = stream_free();
	if (!s)
		return send_err(id, EMFILE, "too many open streams");
	fs_as(uid, gid, elevated);
	/* O_NONBLOCK: opening a FIFO must not hang the agent. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int e = fd < 0 ? errno : 0;
	fs_root();
	struct stat st;
	if (!e && fstat(fd, &st) < 0)
		e = errno;
	if (!e && !S_ISREG(st.st_mode))
		e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	if (e) {
		if (fd >= 0)
			close(fd);
		return send_err(id, e, "open");
	}
	s->id = id, s->fd = fd, s->writing = 0;
	s->credit = credit > MAX_CREDIT ? MAX_CREDIT : credit;
	/* A small file costs less in CHUNKs than a descriptor's round trip; a big one waits for
	 * the host, which gives credit only if it cannot read the file itself. */
	if ((req_flags & F_DIRECT) && st.st_size >= DIRECT_MIN) {
		s->credit = 0;
		send_fd(id, fd);
	}
}

void fs_credit(uint32_t id, struct rd *r)
{
	uint32_t n = rd_u32(r);
	if (!rd_done(r))
		return protocol_violation("credit");
	struct stream *s = stream_find(id, 0);
	if (s)
		s->credit = n > MAX_CREDIT - s->credit ? MAX_CREDIT : s->credit + n;
}

int fs_pump(int congested)
{
	int more = 0;
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = &streams[i];
		if (!s->id || s->writing || !s->credit)
			continue;
		if (congested || out_pending()) {
			more = 0;
			break; /* the host's POLLOUT wakes the loop */
		}
		tx_begin(REP_CHUNK, s->id);
		size_t want = s->credit < MAX_CHUNK ? s->credit : MAX_CHUNK;
		ssize_t n = read(s->fd, tx_tail(), want);
		if (n > 0) {
			tx_advance((size_t)n);
			tx_end();
			s->credit -= (uint32_t)n;
			more |= s->credit > 0;
			continue;
		}
		tx_abort();
		if (n < 0 && errno == EINTR) {
			more = 1;
			continue;
		}
		uint32_t id = s->id;
		int e = n < 0 ? errno : 0;
		stream_close(s);
		if (e)
			send_err(id, e, "read");
		else
			send_ok(id);
	}
	return more && !out_pending();
}

void fs_write(uint32_t id, struct rd *r)
{
	FS_HEAD("write");
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("write");
	if (bad)
		return send_err(id, EINVAL, "path");
	struct stream *s = stream_free();
	if (!s)
		return send_err(id, EMFILE, "too many open streams");
	fs_as(uid, gid, elevated);
	int e = mkparents(path), fd = -1;
	if (!e && (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
			     0666)) < 0)
		e = errno;
	fs_root();
	struct stat st;
	if (!e && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
		e = EINVAL; /* a FIFO or device opened for writing: not a file upload */
	/* Elevated, an existing file of someone else becomes the writer's, as envd chowns it. */
	else if (!e && elevated && (st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)
		e = errno;
	if (!e && !(s->path = strdup(path)))
		e = ENOMEM;
	if (e) {
		if (fd >= 0)
			close(fd);
		return send_err(id, e, "open");
	}
	s->id = id, s->fd = fd, s->writing = 1, s->uid = uid, s->gid = gid, s->elevated = elevated;
	if (req_flags & F_DIRECT)
		send_fd(id, fd);
}

void fs_wdata(uint32_t id, struct rd *r)
{
	if (r->n > MAX_CHUNK)
		return protocol_violation("wdata");
	struct stream *s = stream_find(id, 1);
	if (!s)
		return; /* already failed (ERR sent) or cancelled */
	for (size_t off = 0; off < r->n;) {
		ssize_t n = write(s->fd, r->p + off, r->n - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			stream_close(s);
			return send_err(id, e, "write");
		}
		off += (size_t)n;
	}
}

void fs_wend(uint32_t id, struct rd *r)
{
	if (!rd_done(r))
		return protocol_violation("wend");
	struct stream *s = stream_find(id, 1);
	if (!s)
		return;
	int e = close(s->fd) < 0 ? errno : 0;
	s->fd = -1;
	if (e) {
		stream_close(s);
		return send_err(id, e, "close");
	}
	fs_as(s->uid, s->gid, s->elevated);
	reply_entry(id, s->path);
	fs_root();
	stream_close(s);
}

int fs_cancel(uint32_t id)
{
	struct stream *s = stream_find(id, 0);
	int writing = !s;
	if (!s && !(s = stream_find(id, 1)))
		return 0;
	stream_close(s);
	if (writing)
		send_err(id, ECANCELED, "cancelled");
	else
		send_ok(id);
	return 1;
}

void fs_close_all(void)
{
	for (int i = 0; i < MAX_STREAMS; i++)
		if (streams[i].id)
			stream_close(&streams[i]);
}
