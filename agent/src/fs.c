/* File operations, each under the caller's fsuid/fsgid so the kernel applies the user's
 * permissions and new files belong to the user: stat, list, mkdir, rename, remove (streamed
 * read and write are fs-stream.c). */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h> /* rename(2) only */
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

uint8_t req_flags;

/* gVisor (runsc) has no setfsuid/setfsgid (ENOSYS): there the effective ids are switched
 * instead, keeping the saved uid 0 to come back; the effect on file access and on what is
 * created is the same, and nothing else runs in this single-threaded process meanwhile. */
static int no_fsuid = -1;

void fs_as(uid_t uid, gid_t gid, int elevated)
{
	if (no_fsuid < 0)
		no_fsuid = setfsuid((uid_t)-1) == -1 && errno == ENOSYS;
	/* Dropping fsuid from 0 also drops the file capabilities (DAC override, fowner, ...)
	 * for the operation; returning to 0 restores them. */
	if (no_fsuid) {
		setresuid((uid_t)-1, 0, (uid_t)-1); /* root again first: only root may change gid */
		setresgid((gid_t)-1, gid, (gid_t)-1);
		if (uid)
			setresuid((uid_t)-1, uid, (uid_t)-1);
	} else {
		setfsgid(gid);
		setfsuid(uid);
	}
	if (!elevated || !uid)
		return;
	/* They stay in the permitted set: raising them again keeps fsuid/fsgid (the owner of
	 * what gets created) while permission checks pass as root's would. */
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) == 0) {
		d[0].effective = d[0].permitted, d[1].effective = d[1].permitted;
		syscall(SYS_capset, &h, d);
	}
}

void fs_root(void) { fs_as(0, 0, 0); }

static uint8_t ftype(mode_t m)
{
	return S_ISREG(m) ? 1 : S_ISDIR(m) ? 2 : S_ISLNK(m) ? 3 : 4;
}

/* Appends an entry record (spec §4.1) to the frame being built; returns 0 or an errno. */
int tx_entry(const char *path, const char *shown, int follow_target)
{
	struct stat ls, ts;
	if (lstat(path, &ls) < 0)
		return errno;
	char target[PATH_MAX] = "";
	static uint8_t meta[META_MAX_RECORD];
	uint8_t ttype = ftype(ls.st_mode);
	uint32_t tmode = ls.st_mode & 07777;
	if (S_ISLNK(ls.st_mode)) {
		ttype = 0, tmode = 0;
		if (stat(path, &ts) == 0)
			ttype = ftype(ts.st_mode), tmode = ts.st_mode & 07777;
		if (!follow_target || !realpath(path, target)) {
			ssize_t n = readlink(path, target, sizeof target - 1);
			target[n > 0 ? n : 0] = 0;
		}
	}
	size_t nmeta = meta_read(path, meta, sizeof meta);
	tx_u8(ftype(ls.st_mode));
	tx_u8(ttype);
	tx_u16(nmeta ? 1 : 0); /* flags: bit 0, a metadata block follows */
	tx_u32(ls.st_mode & 07777);
	tx_u32(tmode);
	tx_u32(ls.st_uid);
	tx_u32(ls.st_gid);
	tx_u64((uint64_t)ls.st_size);
	tx_u64((uint64_t)((int64_t)ls.st_mtim.tv_sec * 1000000000 + ls.st_mtim.tv_nsec));
	tx_str(shown, strlen(shown));
	tx_str(target, strlen(target));
	tx_bytes(meta, nmeta);
	return 0;
}

void reply_entry(uint32_t id, const char *path)
{
	tx_begin(REP_OK, id);
	int e = tx_entry(path, path, 1);
	if (e) {
		tx_abort();
		return send_err(id, e, "stat");
	}
	tx_end();
}

/* mkdir -p as the current fs identity; *created tells whether the last component was made. */
int fs_mkdirs(char *path, int *created)
{
	*created = 0;
	for (char *s = path + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		int rc = mkdir(path, 0777);
		int e = errno;
		struct stat st;
		if (rc < 0 && e == EEXIST && stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
			rc = -1, e = ENOTDIR;
		else if (rc < 0 && e == EEXIST)
			rc = 0;
		else if (rc == 0)
			*created = 1;
		*s = c;
		if (rc < 0)
			return e;
		if (!c || !s[1])
			return 0;
		*created = 0;
	}
}

int mkparents(char *path)
{
	char *slash = strrchr(path, '/');
	if (slash == path)
		return 0;
	*slash = 0;
	int created, e = fs_mkdirs(path, &created);
	*slash = '/';
	return e;
}

void fs_stat(uint32_t id, struct rd *r)
{
	FS_HEAD("stat");
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("stat");
	if (bad)
		return send_err(id, EINVAL, "path");
	fs_as(uid, gid, elevated);
	reply_entry(id, path);
	fs_root();
}

void fs_mkdir(uint32_t id, struct rd *r)
{
	FS_HEAD("mkdir");
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("mkdir");
	if (bad)
		return send_err(id, EINVAL, "path");
	int created;
	fs_as(uid, gid, elevated);
	int e = fs_mkdirs(path, &created);
	fs_root();
	if (e)
		return send_err(id, e, "mkdir");
	tx_begin(REP_OK, id);
	tx_u8((uint8_t)created);
	tx_end();
}

void fs_rename(uint32_t id, struct rd *r)
{
	FS_HEAD("rename");
	char to[MAX_PATH];
	int bad = rd_path(r, path);
	bad |= rd_path(r, to);
	if (!rd_done(r))
		return protocol_violation("rename");
	if (bad)
		return send_err(id, EINVAL, "path");
	fs_as(uid, gid, elevated);
	struct stat st;
	int e = lstat(path, &st) < 0 ? errno : mkparents(to);
	if (!e && rename(path, to) < 0)
		e = errno;
	if (e)
		send_err(id, e, "rename");
	else
		reply_entry(id, to);
	fs_root();
}

static int rm_err;
static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)f;
	if ((flag == FTW_DP ? rmdir(p) : unlink(p)) < 0 && errno != ENOENT) {
		rm_err = errno;
		return 1;
	}
	return 0;
}

void fs_remove(uint32_t id, struct rd *r)
{
	FS_HEAD("remove");
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("remove");
	if (bad)
		return send_err(id, EINVAL, "path");
	fs_as(uid, gid, elevated);
	struct stat st;
	int e = 0;
	if (lstat(path, &st) < 0)
		e = errno;
	else if (!S_ISDIR(st.st_mode))
		e = unlink(path) < 0 ? errno : 0;
	else {
		/* FTW_PHYS: a symlink inside is removed, never followed. */
		rm_err = 0;
		if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
			e = rm_err ? rm_err : errno;
	}
	fs_root();
	if (e)
		return send_err(id, e, "remove");
	send_ok(id);
}

/* ---- list ---- */
struct lctx {
	uint32_t id;
	int depth;
	size_t count, held, bytes, base;
	char path[MAX_PATH];
};

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk(struct lctx *c, size_t len, int depth)
{
	DIR *d = opendir(c->path[0] ? c->path : "/");
	if (!d)
		return errno;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int e = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* Everything collected will be emitted, so this bounds memory and output alike. */
		if (c->count + c->held >= MAX_LIST_ENTRIES) {
			e = E2BIG;
			break;
		}
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof *names);
			if (!nn) {
				e = ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(de->d_name))) {
			e = ENOMEM;
			break;
		}
		n++, c->held++;
	}
	closedir(d);
	if (!e)
		qsort(names, n, sizeof *names, cmp);
	for (size_t i = 0; i < n && !e; i++) {
		size_t nl = strlen(names[i]);
		if (len + 1 + nl >= MAX_PATH) {
			e = ENAMETOOLONG;
			break;
		}
		c->path[len] = '/';
		memcpy(c->path + len + 1, names[i], nl + 1);
		const char *rel = c->path + c->base + 1;
		if (tx_room() < 64 + strlen(rel) + PATH_MAX + META_MAX_RECORD) {
			tx_end();
			tx_begin(REP_ENTRIES, c->id);
		}
		size_t before = tx_len();
		if (tx_entry(c->path, rel, 1)) {
			c->held--, c->count++; /* vanished meanwhile: skip it */
			continue;
		}
		c->bytes += tx_len() - before;
		c->held--, c->count++;
		if (c->bytes > MAX_LIST_BYTES)
			e = E2BIG;
		struct stat st;
		if (!e && depth < c->depth && lstat(c->path, &st) == 0 && S_ISDIR(st.st_mode)) {
			int se = walk(c, len + 1 + nl, depth + 1);
			if (se == E2BIG || se == ENOMEM || se == ENAMETOOLONG)
				e = se; /* an unreadable subdirectory is listed but not entered */
		}
	}
	c->path[len] = 0;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return e;
}

void fs_listdir(uint32_t id, struct rd *r)
{
	static struct lctx c; /* 4 KiB path: kept off the stack */
	FS_HEAD("list");
	uint32_t depth = rd_u32(r);
	int bad = rd_path(r, path);
	if (!rd_done(r))
		return protocol_violation("list");
	if (bad)
		return send_err(id, EINVAL, "path");
	memset(&c, 0, sizeof c);
	c.id = id;
	c.depth = depth < 1 ? 1 : depth > MAX_LIST_DEPTH ? MAX_LIST_DEPTH : (int)depth;
	strcpy(c.path, path);
	c.base = strlen(path);
	while (c.base > 1 && c.path[c.base - 1] == '/')
		c.path[--c.base] = 0;
	if (c.base == 1) /* "/": relative names must not start with a slash */
		c.path[0] = 0, c.base = 0;
	fs_as(uid, gid, elevated);
	struct stat st;
	int e = stat(path, &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (!e) {
		tx_begin(REP_ENTRIES, id);
		e = walk(&c, c.base, 1);
		if (!e && tx_len() > HDR_LEN)
			tx_end();
		else
			tx_abort();
	}
	fs_root();
	if (e)
		return send_err(id, e, "list");
	send_ok(id);
}
