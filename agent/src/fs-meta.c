/* E2B file metadata: user-defined key/value pairs kept as `user.e2b.<key>` xattrs, read into
 * every entry record and replaced as a whole by SETMETA (an upload replaces the set, and
 * O_TRUNC keeps xattrs, so a stale set would otherwise survive an overwrite). */
#include "agent.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>

#define META_MAX_PAIRS 512 /* Σ(9 + key + value) ≤ 4096 allows at most 409 */
#define PREFIX_LEN (sizeof META_PREFIX - 1)

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* Lists the path's xattr names into buf (cap + 1 bytes, NUL-terminated even if the list is
 * not); returns their length, or -1 with errno. */
static ssize_t list_names(const char *path, char *buf, size_t cap)
{
	ssize_t n = listxattr(path, buf, cap);
	buf[n > 0 ? n : 0] = 0;
	return n;
}

static int is_meta(const char *name, size_t len)
{
	return len > PREFIX_LEN && !memcmp(name, META_PREFIX, PREFIX_LEN);
}

size_t meta_read(const char *path, uint8_t *out, size_t cap)
{
	static char names[8192 + 1];
	static char val[META_MAX_SET];
	/* Best effort: unsupported, too many names to list or gone means no metadata, never a
	 * failed entry. */
	ssize_t n = list_names(path, names, sizeof names - 1);
	size_t len = 2;
	uint16_t count = 0;
	for (ssize_t off = 0; off < n;) {
		const char *name = names + off;
		size_t nl = strnlen(name, (size_t)(n - off));
		off += (ssize_t)nl + 1;
		if (!is_meta(name, nl))
			continue;
		/* A value larger than any valid set (ERANGE) is skipped, as is one gone meanwhile. */
		ssize_t vl = getxattr(path, name, val, sizeof val);
		if (vl < 0)
			continue;
		size_t kl = nl - PREFIX_LEN;
		if (len + 8 + kl + (size_t)vl > cap || count == META_MAX_PAIRS)
			break;
		put_u32(out + len, (uint32_t)kl);
		memcpy(out + len + 4, name + PREFIX_LEN, kl);
		len += 4 + kl;
		put_u32(out + len, (uint32_t)vl);
		memcpy(out + len + 4, val, (size_t)vl);
		len += 4 + (size_t)vl;
		count++;
	}
	if (!count)
		return 0;
	out[0] = (uint8_t)count, out[1] = (uint8_t)(count >> 8);
	return len;
}

static int printable(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return 0;
	return 1;
}

struct pair {
	const uint8_t *key, *val;
	uint32_t kl, vl;
};

static int in_set(const struct pair *set, int n, const char *key, size_t kl)
{
	for (int i = 0; i < n; i++)
		if (set[i].kl == kl && !memcmp(set[i].key, key, kl))
			return 1;
	return 0;
}

static int unsupported(int e) { return e == ENOTSUP || e == EOPNOTSUPP; }

/* Removes the user.e2b.* names absent from set, then writes set; 0 or an errno. */
static int replace(const char *path, const struct pair *set, int n)
{
	static char names[8192 + 1];
	ssize_t len = list_names(path, names, sizeof names - 1);
	if (len < 0 && unsupported(errno))
		return 0; /* e.g. /proc: nothing can be kept; the entry shows what was */
	if (len < 0)
		return errno;
	for (ssize_t off = 0; off < len;) {
		const char *name = names + off;
		size_t nl = strnlen(name, (size_t)(len - off));
		off += (ssize_t)nl + 1;
		if (is_meta(name, nl) && !in_set(set, n, name + PREFIX_LEN, nl - PREFIX_LEN) &&
		    removexattr(path, name) < 0 && errno != ENODATA)
			return errno;
	}
	char name[PREFIX_LEN + META_MAX_KEY + 1];
	memcpy(name, META_PREFIX, PREFIX_LEN);
	for (int i = 0; i < n; i++) {
		memcpy(name + PREFIX_LEN, set[i].key, set[i].kl);
		name[PREFIX_LEN + set[i].kl] = 0;
		if (setxattr(path, name, set[i].val, set[i].vl, 0) < 0)
			return unsupported(errno) ? 0 : errno;
	}
	return 0;
}

void fs_setmeta(uint32_t id, struct rd *r)
{
	static struct pair set[META_MAX_PAIRS];
	FS_HEAD("setmeta");
	int bad = rd_path(r, path);
	uint16_t n = rd_u16(r);
	int invalid = n > META_MAX_PAIRS;
	size_t total = 0;
	for (int i = 0; i < n && !r->bad && !invalid; i++) {
		struct pair *p = &set[i];
		p->key = rd_bytes(r, &p->kl);
		p->val = rd_bytes(r, &p->vl);
		if (r->bad)
			break;
		total += PREFIX_LEN + p->kl + p->vl;
		invalid |= !p->kl || p->kl > META_MAX_KEY || !printable(p->key, p->kl) ||
			   !printable(p->val, p->vl) || total > META_MAX_SET;
	}
	if (!invalid && !rd_done(r))
		return protocol_violation("setmeta");
	if (bad || invalid)
		return send_err(id, EINVAL, bad ? "path" : "metadata");
	fs_as(uid, gid, elevated);
	int e = replace(path, set, n);
	if (e)
		send_err(id, e, "xattr");
	else
		reply_entry(id, path);
	fs_root();
}
