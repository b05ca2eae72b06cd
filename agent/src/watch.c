/* Recursive inotify watches: one inotify instance per watch, a table from watch descriptor
 * to the directory's path relative to the watched root. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB)
#define MAX_WATCH_DEPTH 64

struct wdir {
	int wd;
	char *rel; /* "" for the root */
};

struct watch {
	uint32_t id; /* 0: free slot */
	int fd, recursive, pidx, elevated;
	uid_t uid;
	gid_t gid;
	char *root; /* without trailing slash; "" for "/" */
	struct wdir *dirs;
	int nd, cap;
};

static struct watch watches[MAX_WATCHES];
static char full[MAX_PATH * 2];

static void wclose(struct watch *w)
{
	close(w->fd);
	for (int i = 0; i < w->nd; i++)
		free(w->dirs[i].rel);
	free(w->dirs);
	free(w->root);
	memset(w, 0, sizeof *w);
}

static const char *join(const char *a, const char *b)
{
	if (!*b)
		return *a ? a : "/";
	size_t la = strlen(a), lb = strlen(b);
	if (la + 1 + lb >= sizeof full)
		return "/nonexistent/too-long";
	memcpy(full, a, la);
	full[la] = '/';
	memcpy(full + la + 1, b, lb + 1);
	return full;
}

static struct wdir *by_wd(struct watch *w, int wd)
{
	for (int i = 0; i < w->nd; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static int add_dir(struct watch *w, const char *rel)
{
	int wd = inotify_add_watch(w->fd, join(w->root, rel), MASK | IN_ONLYDIR | (*rel ? IN_DONT_FOLLOW : 0));
	if (wd < 0)
		return errno;
	char *copy = strdup(rel);
	if (!copy)
		return ENOMEM;
	struct wdir *d = by_wd(w, wd);
	if (d) { /* same inode seen again (moved inside the tree): keep its newest name */
		free(d->rel);
		d->rel = copy;
		return 0;
	}
	if (w->nd >= MAX_WATCH_DIRS) {
		inotify_rm_watch(w->fd, wd);
		free(copy);
		return ENOSPC;
	}
	if (w->nd == w->cap) {
		int cap = w->cap ? w->cap * 2 : 8;
		struct wdir *nd = realloc(w->dirs, (size_t)cap * sizeof *nd);
		if (!nd) {
			free(copy);
			return ENOMEM;
		}
		w->dirs = nd, w->cap = cap;
	}
	w->dirs[w->nd++] = (struct wdir){ wd, copy };
	return 0;
}

static void event(uint32_t id, uint8_t kind, const char *rel)
{
	tx_begin(REP_EVENT, id);
	tx_u8(kind);
	tx_str(rel, strlen(rel));
	tx_end();
}

/* Watches the subdirectories of rel (and, with emit, reports what is already there as
 * created: it appeared between the mkdir event and the new watch). */
static int scan(struct watch *w, const char *rel, int emit, int depth)
{
	if (depth > MAX_WATCH_DEPTH)
		return 0;
	DIR *d = opendir(join(w->root, rel));
	if (!d)
		return errno;
	int e = 0;
	struct dirent *de;
	while (!e && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *child = malloc(strlen(rel) + strlen(de->d_name) + 2);
		if (!child) {
			e = ENOMEM;
			break;
		}
		strcpy(child, rel);
		if (*rel)
			strcat(child, "/");
		strcat(child, de->d_name);
		if (emit)
			event(w->id, 1, child);
		struct stat st;
		if (strlen(child) < MAX_PATH && lstat(join(w->root, child), &st) == 0 &&
		    S_ISDIR(st.st_mode)) {
			e = add_dir(w, child);
			if (!e)
				e = scan(w, child, emit, depth + 1);
			if (e == EACCES || e == ENOENT)
				e = 0; /* unreadable or already gone: not watched, not fatal */
		}
		free(child);
	}
	closedir(d);
	return e;
}

void watch_start(uint32_t id, struct rd *r)
{
	uint32_t uid = rd_u32(r), gid = rd_u32(r);
	int elevated = req_flags & F_ELEVATED;
	uint8_t rec = rd_u8(r);
	char path[MAX_PATH];
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("watch");
	if (bad || rec > 1)
		return send_err(id, EINVAL, "watch");
	struct watch *w = NULL;
	for (int i = 0; i < MAX_WATCHES && !w; i++)
		if (!watches[i].id)
			w = &watches[i];
	if (!w)
		return send_err(id, EMFILE, "too many watches");
	size_t len = strlen(path);
	while (len > 0 && path[len - 1] == '/')
		path[--len] = 0;
	fs_as(uid, gid, elevated);
	struct stat st;
	int e = stat(len ? path : "/", &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (!e && (w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
		e = errno;
	else if (!e) {
		/* pidx -1: not in this round's poll array (a freed slot reads 0, another fd's). */
		w->id = id, w->recursive = rec, w->uid = uid, w->gid = gid, w->elevated = elevated, w->pidx = -1;
		if (!(w->root = strdup(path)))
			e = ENOMEM;
		else if (!(e = add_dir(w, "")) && rec)
			e = scan(w, "", 0, 1);
		if (e)
			wclose(w);
	}
	fs_root();
	if (e)
		return send_err(id, e, "watch");
	tx_begin(REP_STARTED, id);
	tx_end();
}

int watch_cancel(uint32_t id)
{
	for (int i = 0; i < MAX_WATCHES; i++) {
		if (watches[i].id == id && id) {
			wclose(&watches[i]);
			send_ok(id);
			return 1;
		}
	}
	return 0;
}

void watch_close_all(void)
{
	for (int i = 0; i < MAX_WATCHES; i++)
		if (watches[i].id)
			wclose(&watches[i]);
}

int watch_pollfds(struct pollfd *pfd, int max, int congested)
{
	int n = 0;
	for (int i = 0; i < MAX_WATCHES; i++) {
		struct watch *w = &watches[i];
		w->pidx = -1;
		/* While congested the kernel queues (bounded by max_queued_events) instead of us. */
		if (!w->id || congested || n >= max)
			continue;
		w->pidx = n;
		pfd[n++] = (struct pollfd){ .fd = w->fd, .events = POLLIN };
	}
	return n;
}

static void handle_one(struct watch *w, const struct inotify_event *ev)
{
	struct wdir *d = by_wd(w, ev->wd);
	if (!d)
		return;
	if (ev->mask & IN_IGNORED) {
		if (!*d->rel) { /* the watched directory itself is gone */
			uint32_t id = w->id;
			wclose(w);
			return send_err(id, ENOENT, "watched directory removed");
		}
		free(d->rel);
		*d = w->dirs[--w->nd];
		return;
	}
	if (!ev->len)
		return;
	char rel[MAX_PATH];
	size_t ld = strlen(d->rel), ln = strlen(ev->name), sep = ld ? 1 : 0;
	if (ld + sep + ln >= sizeof rel)
		return;
	memcpy(rel, d->rel, ld);
	rel[ld] = '/';
	memcpy(rel + ld + sep, ev->name, ln + 1);
	/* One inotify event with several bits becomes several, in fsnotify's order. */
	if (ev->mask & (IN_CREATE | IN_MOVED_TO))
		event(w->id, 1, rel);
	if (ev->mask & IN_MOVED_FROM)
		event(w->id, 4, rel);
	if (ev->mask & IN_ATTRIB)
		event(w->id, 5, rel);
	if (ev->mask & IN_MODIFY)
		event(w->id, 2, rel);
	if (ev->mask & IN_DELETE)
		event(w->id, 3, rel);
	if (w->recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
		fs_as(w->uid, w->gid, w->elevated);
		if (add_dir(w, rel) == 0)
			scan(w, rel, 1, 1);
		fs_root();
	}
}

void watch_handle(struct pollfd *pfd, int n)
{
	static char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	(void)n;
	for (int i = 0; i < MAX_WATCHES; i++) {
		struct watch *w = &watches[i];
		if (!w->id || w->pidx < 0 || !(pfd[w->pidx].revents & POLLIN))
			continue;
		ssize_t len = read(w->fd, buf, sizeof buf);
		for (ssize_t off = 0; off < len && w->id;) {
			const struct inotify_event *ev = (const void *)(buf + off);
			off += (ssize_t)sizeof *ev + ev->len;
			handle_one(w, ev);
		}
	}
}
