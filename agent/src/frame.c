/* Frame parsing and building, and the one outgoing queue toward the host. */
#include "agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- parsing: every accessor is bounds-checked; a short field sets r->bad ---- */
static int need(struct rd *r, size_t n)
{
	if (r->bad || r->n < n) {
		r->bad = 1;
		return 0;
	}
	return 1;
}

uint8_t rd_u8(struct rd *r)
{
	if (!need(r, 1))
		return 0;
	uint8_t v = r->p[0];
	r->p++, r->n--;
	return v;
}

uint16_t rd_u16(struct rd *r)
{
	if (!need(r, 2))
		return 0;
	uint16_t v = (uint16_t)(r->p[0] | r->p[1] << 8);
	r->p += 2, r->n -= 2;
	return v;
}

uint32_t rd_u32(struct rd *r)
{
	if (!need(r, 4))
		return 0;
	uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
		     (uint32_t)r->p[3] << 24;
	r->p += 4, r->n -= 4;
	return v;
}

const uint8_t *rd_bytes(struct rd *r, uint32_t *len)
{
	uint32_t n = rd_u32(r);
	if (!need(r, n)) {
		*len = 0;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n, r->n -= n;
	*len = n;
	return p;
}

int rd_cstr(struct rd *r, char *dst, size_t cap)
{
	uint32_t n;
	const uint8_t *p = rd_bytes(r, &n);
	dst[0] = 0;
	if (!p || n >= cap || memchr(p, 0, n))
		return -1;
	memcpy(dst, p, n);
	dst[n] = 0;
	return 0;
}

int rd_path(struct rd *r, char *dst)
{
	if (rd_cstr(r, dst, MAX_PATH) < 0 || dst[0] != '/')
		return -1;
	return 0;
}

int rd_done(struct rd *r) { return !r->bad && r->n == 0; }

/* ---- building: one frame at a time in a static scratch buffer ---- */
static uint8_t txbuf[MAX_FRAME] __attribute__((aligned(4096)));
static size_t txlen;
static int txover;

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void tx_begin(uint8_t type, uint32_t id)
{
	memset(txbuf, 0, HDR_LEN);
	txbuf[4] = type;
	put_le(txbuf + 8, id, 4);
	txlen = HDR_LEN;
	txover = 0;
}

size_t tx_room(void) { return sizeof txbuf - txlen; }
uint8_t *tx_tail(void) { return txbuf + txlen; }
size_t tx_len(void) { return txlen; }
void tx_advance(size_t n) { txlen += n; }
void tx_abort(void) { txlen = 0; }

static void put(const void *p, size_t n)
{
	if (txover || n > tx_room()) {
		txover = 1;
		return;
	}
	memcpy(txbuf + txlen, p, n);
	txlen += n;
}

void tx_u8(uint8_t v) { put(&v, 1); }
void tx_u16(uint16_t v) { uint8_t b[2]; put_le(b, v, 2); put(b, 2); }
void tx_u32(uint32_t v) { uint8_t b[4]; put_le(b, v, 4); put(b, 4); }
void tx_u64(uint64_t v) { uint8_t b[8]; put_le(b, v, 8); put(b, 8); }
void tx_bytes(const void *p, size_t n) { put(p, n); }
void tx_str(const void *p, size_t n) { tx_u32((uint32_t)n); put(p, n); }

static void out_queue(const uint8_t *p, size_t n);

void tx_end(void)
{
	if (txover) {
		/* A reply that does not fit is a bug in a caller's bound, never the host's fault:
		 * answer with an error rather than a truncated frame. */
		uint32_t id = (uint32_t)txbuf[8] | (uint32_t)txbuf[9] << 8 |
			      (uint32_t)txbuf[10] << 16 | (uint32_t)txbuf[11] << 24;
		send_err(id, E2BIG, "reply too large");
		return;
	}
	put_le(txbuf, txlen, 4);
	out_queue(txbuf, txlen);
	txlen = 0;
}

void send_ok(uint32_t id)
{
	tx_begin(REP_OK, id);
	tx_end();
}

void send_err(uint32_t id, int err, const char *ctx)
{
	const char *name = strerrorname_np(err);
	if (!name)
		name = "EIO";
	tx_begin(REP_ERR, id);
	tx_u32((uint32_t)err);
	tx_str(name, strlen(name));
	tx_str(ctx, strnlen(ctx, 256));
	tx_end();
}

/* ---- the outgoing queue: written directly while the socket takes it, buffered otherwise ---- */
static int ofd = -1;
static int obroken;
static uint8_t *obuf;
static size_t ooff, olen, ocap;

void out_attach(int fd)
{
	ofd = fd;
	obroken = 0;
	free(obuf); /* freed, not kept: idle agents should hold no buffer */
	obuf = NULL;
	ooff = olen = ocap = 0;
}

int out_fd(void) { return ofd; }
size_t out_pending(void) { return olen - ooff; }
int out_broken(void) { return obroken; }

static void out_queue(const uint8_t *p, size_t n)
{
	if (ofd < 0 || obroken)
		return;
	if (olen == ooff) {
		ssize_t w = write(ofd, p, n);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			obroken = 1;
			return;
		}
		if (w > 0)
			p += w, n -= (size_t)w;
		if (!n)
			return;
		ooff = olen = 0;
	}
	if (olen + n > ocap) {
		if (ooff) {
			memmove(obuf, obuf + ooff, olen - ooff);
			olen -= ooff, ooff = 0;
		}
		if (olen + n > ocap) {
			size_t cap = ocap ? ocap : 65536;
			while (cap < olen + n)
				cap *= 2;
			uint8_t *nb = realloc(obuf, cap);
			if (!nb) {
				obroken = 1;
				return;
			}
			obuf = nb, ocap = cap;
		}
	}
	memcpy(obuf + olen, p, n);
	olen += n;
}

int out_flush(void)
{
	while (ooff < olen) {
		ssize_t w = write(ofd, obuf + ooff, olen - ooff);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			obroken = 1;
			return -1;
		}
		ooff += (size_t)w;
	}
	ooff = olen = 0;
	if (ocap > 65536) { /* give a burst's memory back */
		free(obuf);
		obuf = NULL;
		ocap = 0;
	}
	return 0;
}

/* Idle agents are counted by the thousand: give back the pages a burst dirtied. */
void frame_trim(void)
{
	madvise(txbuf, sizeof txbuf, MADV_DONTNEED);
	if (ooff == olen && obuf) {
		free(obuf);
		obuf = NULL;
		ooff = olen = ocap = 0;
	}
}
