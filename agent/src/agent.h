/* cove-agent: PID 1 of every sandbox. Shared declarations; the wire format is
 * spec/agent-protocol.md and every constant here is a bound stated there. */
#ifndef COVE_AGENT_H
#define COVE_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 2: 1 plus F_DIRECT/REP_FD (spec/agent-protocol.md §5); hosts still serve agents of 1. */
#define PROTO_VERSION 2
#define HDR_LEN 12
#define MAX_FRAME (128 * 1024)
#define MAX_CHUNK (64 * 1024)
#define MAX_TOKEN 256
#define MAX_PATH 4096
#define MAX_PROCS 1024
#define MAX_STREAMS 64
#define MAX_WATCHES 64
#define MAX_WATCH_DIRS 8192
#define MAX_LIST_ENTRIES 10000
#define MAX_LIST_BYTES (4 * 1024 * 1024)
#define MAX_LIST_DEPTH 64
#define MAX_CREDIT (16u * 1024 * 1024)
#define STDIN_PENDING_CAP (2 * 1024 * 1024)
/* Above this many queued outgoing bytes the agent stops reading requests: the host is not
 * reading replies, so generating more would only grow memory. */
#define OUT_STOP_READING (1024 * 1024)
#define AUTH_TIMEOUT_MS 2000
/* Header flag bit 0 of a file request: act with the agent's file capabilities (root's reach)
 * while what is created belongs to uid/gid, as E2B's envd (root, then chown) does. */
#define F_ELEVATED 0x01
/* Header flag bit 1 of READ and WRITE: answer FD with the opened file's descriptor number
 * first, so that a host that can reach this process's files (crun: /proc/<pid>/fd) moves the
 * bytes itself; CHUNK/WDATA still work on the stream if it cannot (spec §3). */
#define F_DIRECT 0x02
/* READ answers FD only for a file at least this big (smaller ones go out as CHUNKs). */
#define DIRECT_MIN (1024 * 1024)
/* File metadata (E2B's `user.e2b.*` xattrs): key ≤ 246 bytes so that the xattr name fits the
 * kernel's 255; a set costs Σ(9 + key + value) ≤ 4096 (envd's bound, one ext4 block). */
#define META_PREFIX "user.e2b."
#define META_MAX_KEY 246
#define META_MAX_SET 4096
/* What an entry record may carry of metadata set from inside the sandbox (setfattr): more is
 * left out rather than failing the stat. */
#define META_MAX_RECORD 8192

enum {
	T_AUTH = 0x01, T_PING = 0x02, T_CANCEL = 0x03,
	T_SPAWN = 0x10, T_STDIN = 0x11, T_CLOSE_STDIN = 0x12, T_SIGNAL = 0x13, T_RESIZE = 0x14,
	T_LIST_PROCS = 0x15, T_ATTACH = 0x16,
	T_STAT = 0x20, T_LISTDIR = 0x21, T_MKDIR = 0x22, T_RENAME = 0x23, T_REMOVE = 0x24,
	T_READ = 0x25, T_CREDIT = 0x26, T_WRITE = 0x27, T_WDATA = 0x28, T_WEND = 0x29, T_WATCH = 0x2A,
	T_SETMETA = 0x2B,
	REP_OK = 0x80, REP_ERR = 0x81, REP_STARTED = 0x82, REP_ENTRIES = 0x83, REP_PROC = 0x84, REP_DATA = 0x85,
	REP_EXIT = 0x86, REP_CHUNK = 0x87, REP_EVENT = 0x88, REP_FD = 0x89,
};

/* ---- frame.c: parsing requests, building replies, the bounded outgoing queue ---- */
struct rd {
	const uint8_t *p;
	size_t n;
	int bad; /* sticky: set on any short read; checked once at the end */
};
uint8_t rd_u8(struct rd *r);
uint16_t rd_u16(struct rd *r);
uint32_t rd_u32(struct rd *r);
/* Returns a pointer into the frame and its length (not NUL-terminated). */
const uint8_t *rd_bytes(struct rd *r, uint32_t *len);
/* Copies a str field into dst as a C string; -1 (and r->bad stays 0) if it holds NUL or is
 * longer than cap-1: a semantic error (EINVAL), not a framing one. */
int rd_cstr(struct rd *r, char *dst, size_t cap);
int rd_path(struct rd *r, char *dst); /* rd_cstr + must be absolute; dst holds MAX_PATH */
int rd_done(struct rd *r);            /* 1 when everything parsed exactly */

void tx_begin(uint8_t type, uint32_t id);
void tx_u8(uint8_t v);
void tx_u16(uint16_t v);
void tx_u32(uint32_t v);
void tx_u64(uint64_t v);
void tx_bytes(const void *p, size_t n);
void tx_str(const void *p, size_t n);
size_t tx_room(void);
uint8_t *tx_tail(void);   /* where the next byte goes: read(2) straight into the frame */
void tx_advance(size_t n);
size_t tx_len(void);
void tx_end(void);
void tx_abort(void);
void send_ok(uint32_t id);
void send_err(uint32_t id, int err, const char *ctx);

void out_attach(int fd);    /* the authenticated host socket, or -1 */
int out_fd(void);
size_t out_pending(void);
int out_flush(void);        /* on POLLOUT; -1 if the connection broke */
int out_broken(void);
void frame_trim(void);

/* ---- proc.c (the process table) and spawn.c (starting a process) ---- */
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
void closefd(int *fd);          /* closes *fd if open and sets it to -1 */
int proc_full(void);            /* 1 when the table holds MAX_PROCS entries (exited included) */
/* Links a started process (calloc'd, fields set) into the table, which owns it from now on
 * and frees it after its EXIT. */
void proc_add(struct proc *p);
void proc_spawn(uint32_t id, struct rd *r); /* spawn.c */
void proc_stdin(uint32_t id, struct rd *r);
void proc_close_stdin(uint32_t id, struct rd *r);
void proc_signal(uint32_t id, struct rd *r);
void proc_resize(uint32_t id, struct rd *r);
void proc_list(uint32_t id, struct rd *r);
void proc_attach(uint32_t id, struct rd *r);
void proc_reap(void);
void proc_detach_all(void);
void proc_kill_all(int sig);
int proc_count(void);
int proc_draining(void); /* an exited process still has output to drain */
/* poll integration: add fds, then handle results. */
struct pollfd;
int proc_pollfds(struct pollfd *pfd, int max, int congested);
void proc_handle(struct pollfd *pfd, int n, int congested);

/* ---- fs.c (one-shot operations) and fs-stream.c (streamed read/write) ---- */
extern uint8_t req_flags;           /* header flags of the request being dispatched */
/* setfsuid/setfsgid; elevated (F_ELEVATED) keeps the file capabilities as well. */
void fs_as(uid_t uid, gid_t gid, int elevated);
void fs_root(void);                 /* back to root */
int fs_mkdirs(char *path, int *created);
int mkparents(char *path);          /* fs_mkdirs of path's parent; 0 or an errno */
/* Sends OK with the entry record of path (followed target), or ERR if it cannot be stat'd. */
void reply_entry(uint32_t id, const char *path);
/* Every file request starts with uid, gid, then a path read into this buffer. */
#define FS_HEAD(name)                                                                              \
	uint32_t uid = rd_u32(r), gid = rd_u32(r);                                                 \
	int elevated = req_flags & F_ELEVATED;                                                     \
	char path[MAX_PATH];                                                                       \
	(void)name

void fs_stat(uint32_t id, struct rd *r);
void fs_listdir(uint32_t id, struct rd *r);
void fs_mkdir(uint32_t id, struct rd *r);
void fs_rename(uint32_t id, struct rd *r);
void fs_remove(uint32_t id, struct rd *r);
void fs_read(uint32_t id, struct rd *r);
void fs_credit(uint32_t id, struct rd *r);
void fs_write(uint32_t id, struct rd *r);
void fs_wdata(uint32_t id, struct rd *r);
void fs_wend(uint32_t id, struct rd *r);
int fs_cancel(uint32_t id);
void fs_close_all(void);
int fs_pump(int congested);          /* sends read chunks; returns 1 if more work is ready */
int tx_entry(const char *path, const char *shown, int follow_target);

/* ---- fs-meta.c: E2B file metadata ---- */
/* Reads path's user.e2b.* xattrs (following symlinks) into an encoded block (u16 n, then n ×
 * key str, value str); returns its length, 0 when there is none. */
size_t meta_read(const char *path, uint8_t *out, size_t cap);
void fs_setmeta(uint32_t id, struct rd *r);

/* ---- watch.c ---- */
void watch_start(uint32_t id, struct rd *r);
int watch_cancel(uint32_t id);
void watch_close_all(void);
int watch_pollfds(struct pollfd *pfd, int max, int congested);
void watch_handle(struct pollfd *pfd, int n);

/* ---- main.c (startup) and loop.c (the poll loop) ---- */
/* 1 if p/n is the token from COVE_AGENT_TOKEN; constant time in the content. */
int token_ok(const uint8_t *p, size_t n);
/* Runs the loop on the listening socket and the signalfd. Never returns normally: shutdown
 * exits the process; returns 1 only if poll fails. */
int agent_loop(int listen_fd, int signal_fd, const char *socket_path);
/* Binds and listens on the agent's socket (born 0600); -1 on failure. */
int agent_listen(const char *path);
/* --port: the host connection is a virtio-serial port (a microVM), not a socket. The loop
 * takes `fd` as a connection whenever the host end is open (SIGIO tells of each change) and
 * never closes it; any token is accepted, since only the host holds the port's other end. */
void agent_use_port(int fd);
int agent_port_mode(void);
/* ---- port.c: the port's host end as last seen, and when a closed one counts as gone ---- */
#define PORT_GONE_MS 3000
int port_fd(void);
int port_open(void);
int port_look(int64_t now);
void port_read_eof(int64_t now);
int port_gone_in(int64_t now);
int port_gone(int64_t now);
/* dispatch.c: one request frame to its handler; whether a request type takes these flags. */
void agent_dispatch(uint8_t type, uint32_t id, struct rd *r);
int agent_flags_ok(uint8_t type, uint8_t flags);
/* --restored NS SEEDHEX (restored.c): a restored microVM's clock and randomness; exit status. */
int agent_restored(const char *ns_text, const char *hex);
/* Marks the host connection as broken; it is dropped after the current frame. */
void protocol_violation(const char *why);
/* probe.c: what the host checks before a gVisor checkpoint, written beside the socket. */
void checkpoint_probe(const char *socket_path);
/* 1 when the host left `listen` beside the socket (removed then); consume 0 only removes it. */
int listen_requested(const char *socket_path, int consume);

#endif
