/*
 * cove-run: starts host commands (ip, nft, crun, cove-mount) for the Cove server.
 *
 * Why: Node's child_process forks the whole server to start a command, and fork() blocks the
 * event loop for as long as it takes to copy the server's page tables: ~2 ms at 70 MiB of RSS,
 * ~8 ms at 220 MiB, ~26 ms at 600 MiB (measured, Node 24, libuv 1.52). A create and a kill
 * start ~10 commands, so every request in flight waited for them, and the more sandboxes were
 * alive (the bigger the server), the longer. This process is small: its fork costs ~0.1 ms,
 * and the server's event loop never stops.
 *
 * Protocol (little-endian, on stdin/stdout; src/core/runner.ts is the other side):
 *   request:  u32 len | u32 id | u32 timeout_ms | u32 nstr | u32 input_len |
 *             nstr NUL-terminated strings (the log file, "" for pipes; then argv) | input
 *   replies:  u32 len | u32 id | u8 kind | data
 *             kind 1: stdout bytes, 2: stderr bytes, 3: exit (i32 code, i32 signal),
 *             4: could not start (a message)
 * With a log file, the command's stdout and stderr are that file (appended), so that a daemon
 * it leaves behind (crun's container) holds no pipe of ours. A command's stdin is `input`
 * (from a memfd), else /dev/null. At end of stdin the runner exits; its commands keep running.
 *
 * It is a child subreaper: what a command leaves running (runsc's sandbox and gofer, crun's
 * container) is reparented to it, not to the host's PID 1, and reaped the moment it exits.
 * `runsc delete` and `runsc kill` wait until the sandbox process is reaped, and a PID 1 that
 * reaps late (this host's, ~1.2 s) made every runsc kill and pause wait that long.
 *
 * `cove-run --hide-proc-sys-net DIR FILE ARGS...` is not the server: it runs FILE in a mount
 * namespace of its own with a tmpfs over /proc/sys/net and a fresh proc at DIR (what runsc
 * start and restore need: src/runtime/runsc/invoke.ts), in place of `unshare -m sh -c
 * 'mount ...; mount ...; exec ...'`: four programs, ~15-20 ms on a quiet host, now one.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 256
#define MAX_REQUEST (16u << 20)

struct child {
  pid_t pid; /* 0: free slot */
  uint32_t id;
  int out, err; /* pipes, -1 when closed or unused */
  int exited, code, sig;
  int64_t deadline; /* ms, 0: none */
  int killed;
};

static struct child kids[MAX_CHILDREN];
static unsigned char *inbuf;
static size_t inlen, incap;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v & 255;
  p[1] = (v >> 8) & 255;
  p[2] = (v >> 16) & 255;
  p[3] = (v >> 24) & 255;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_all(const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(1, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(1); /* the server is gone */
    p += n;
    len -= (size_t)n;
  }
}

static void reply(uint32_t id, unsigned char kind, const void *data, size_t len) {
  unsigned char head[9];
  put32(head, (uint32_t)(5 + len));
  put32(head + 4, id);
  head[8] = kind;
  write_all(head, sizeof head);
  if (len) write_all(data, len);
}

static void fail(uint32_t id, const char *what, int err) {
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  reply(id, 4, msg, (size_t)n);
}

/* Sends the exit once the process is reaped and both pipes are drained. */
static void maybe_done(struct child *c) {
  if (!c->pid || !c->exited || c->out >= 0 || c->err >= 0) return;
  unsigned char data[8];
  put32(data, (uint32_t)c->code);
  put32(data + 4, (uint32_t)c->sig);
  reply(c->id, 3, data, sizeof data);
  c->pid = 0;
}

static void start(const unsigned char *req, size_t len) {
  if (len < 16) _exit(2);
  uint32_t id = get32(req), timeout = get32(req + 4), nstr = get32(req + 8), input_len = get32(req + 12);
  const char *p = (const char *)req + 16, *end = (const char *)req + len;
  if (nstr < 2 || nstr > 4096 || input_len > len - 16) { fail(id, "bad request", EINVAL); return; }
  char *strs[4097];
  for (uint32_t i = 0; i < nstr; i++) {
    const char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) { fail(id, "bad request", EINVAL); return; }
    strs[i] = (char *)p;
    p = z + 1;
  }
  if ((size_t)(end - p) != input_len) { fail(id, "bad request", EINVAL); return; }
  strs[nstr] = NULL;

  struct child *c = NULL;
  for (int i = 0; i < MAX_CHILDREN && !c; i++)
    if (!kids[i].pid) c = &kids[i];
  if (!c) {
    fail(id, "spawn", EAGAIN);
    return;
  }

  int in = -1, out[2] = {-1, -1}, err[2] = {-1, -1}, log = -1;
  if (input_len) {
    in = (int)syscall(SYS_memfd_create, "input", MFD_CLOEXEC);
    if (in < 0 || write(in, p, input_len) != (ssize_t)input_len || lseek(in, 0, SEEK_SET) != 0) {
      int e = errno;
      if (in >= 0) close(in);
      { fail(id, "input", e); return; }
    }
  }
  if (strs[0][0]) {
    log = open(strs[0], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log < 0) {
      int e = errno;
      if (in >= 0) close(in);
      { fail(id, strs[0], e); return; }
    }
  } else if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    int e = errno;
    for (int i = 0; i < 2; i++) {
      if (out[i] >= 0) close(out[i]);
      if (err[i] >= 0) close(err[i]);
    }
    if (in >= 0) close(in);
    { fail(id, "pipe", e); return; }
  }

  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int fd0 = in >= 0 ? in : open("/dev/null", O_RDONLY);
    int fd1 = log >= 0 ? log : out[1], fd2 = log >= 0 ? log : err[1];
    if (fd0 < 0 || dup2(fd0, 0) < 0 || dup2(fd1, 1) < 0 || dup2(fd2, 2) < 0) _exit(126);
    syscall(SYS_close_range, 3, ~0u, 0);
    execvp(strs[1], strs + 1);
    dprintf(2, "spawn %s %s\n", strs[1], strerrorname_np(errno)); /* as Node says it */
    _exit(127);
  }
  int fork_err = errno;
  if (in >= 0) close(in);
  if (log >= 0) close(log);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  if (pid < 0) {
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    { fail(id, "fork", fork_err); return; }
  }
  *c = (struct child){.pid = pid, .id = id, .out = out[0], .err = err[0]};
  if (timeout) c->deadline = now_ms() + timeout;
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_CHILDREN; i++) {
      struct child *c = &kids[i];
      if (c->pid != pid || c->exited) continue;
      c->exited = 1;
      c->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      c->sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      maybe_done(c);
    }
  }
}

/* Reads what stdin holds and starts every complete request in it. */
static void read_requests(void) {
  if (incap - inlen < 65536) {
    incap = incap ? incap * 2 : 1 << 17;
    inbuf = realloc(inbuf, incap);
    if (!inbuf) _exit(3);
  }
  ssize_t n = read(0, inbuf + inlen, incap - inlen);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) _exit(0); /* the server closed us (or is gone) */
  inlen += (size_t)n;
  size_t off = 0;
  while (inlen - off >= 4) {
    uint32_t len = get32(inbuf + off);
    if (len > MAX_REQUEST) _exit(2);
    if (inlen - off - 4 < len) {
      if (incap < (size_t)len + 4) {
        incap = (size_t)len + 4 + 65536;
        inbuf = realloc(inbuf, incap);
        if (!inbuf) _exit(3);
      }
      break;
    }
    start(inbuf + off + 4, len);
    off += 4 + (size_t)len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
}

static int hide_proc_sys_net(const char *visible, char **argv) {
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
      mount("none", "/proc/sys/net", "tmpfs", 0, NULL) < 0 || mount("proc", visible, "proc", 0, NULL) < 0) {
    dprintf(2, "cove-run: hiding /proc/sys/net: %s\n", strerror(errno));
    return 125;
  }
  execvp(argv[0], argv);
  dprintf(2, "cove-run: %s: %s\n", argv[0], strerror(errno));
  return 127;
}

int main(int argc, char **argv) {
  if (argc > 3 && strcmp(argv[1], "--hide-proc-sys-net") == 0) return hide_proc_sys_net(argv[2], argv + 3);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;

  struct pollfd fds[2 + 2 * MAX_CHILDREN];
  struct child *owner[2 + 2 * MAX_CHILDREN];
  for (;;) {
    int n = 0, wait = -1;
    int64_t now = now_ms();
    fds[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (int i = 0; i < MAX_CHILDREN; i++) {
      struct child *c = &kids[i];
      if (!c->pid) continue;
      if (c->deadline && !c->killed && !c->exited) {
        if (now >= c->deadline) {
          kill(c->pid, SIGTERM); /* as execFile's timeout */
          c->killed = 1;
        } else if (wait < 0 || c->deadline - now < wait) {
          wait = (int)(c->deadline - now);
        }
      }
      if (c->out >= 0) owner[n] = c, fds[n++] = (struct pollfd){.fd = c->out, .events = POLLIN};
      if (c->err >= 0) owner[n] = c, fds[n++] = (struct pollfd){.fd = c->err, .events = POLLIN};
    }
    if (poll(fds, (nfds_t)n, wait) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    for (int i = 2; i < n; i++) {
      if (!fds[i].revents) continue;
      struct child *c = owner[i];
      unsigned char buf[65536];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      int is_out = fds[i].fd == c->out;
      if (got > 0) {
        reply(c->id, is_out ? 1 : 2, buf, (size_t)got);
        continue;
      }
      close(fds[i].fd);
      if (is_out) c->out = -1;
      else c->err = -1;
      maybe_done(c);
    }
    if (fds[1].revents) {
      struct signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) > 0) {
      }
      reap();
    }
    if (fds[0].revents) read_requests();
  }
}
