/* What could stop a gVisor checkpoint, written for the host as the agent quiesces (SIGUSR2):
 * every process's fds, the TCP tables and every process's name, in the format of
 * PROBE_SCRIPT in src/runtime/runsc/tcp.ts, whose parser reads it. Written here rather than
 * by a shell the host starts with `runsc exec`: that took ~70 ms (four programs under
 * gVisor's ptrace platform), this a few. The file goes beside the socket as `probe` (renamed
 * into place whole) before the socket file is unlinked, which is what the host waits for.
 * Also here: the host's `listen` file, the other half of a checkpoint (listen_requested). */
#include "agent.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int numeric(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void copy_file(FILE *out, const char *path)
{
	FILE *in = fopen(path, "re");
	if (!in)
		return;
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
}

static void list_fds(FILE *out, const char *pid)
{
	char dir[300];
	snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
	DIR *fds = opendir(dir);
	if (!fds)
		return;
	fprintf(out, "%s/:\n", dir);
	struct dirent *f;
	while ((f = readdir(fds))) {
		if (!numeric(f->d_name))
			continue;
		char link[640], target[PATH_MAX];
		snprintf(link, sizeof link, "%s/%s", dir, f->d_name);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		fprintf(out, "fd %s -> %s\n", f->d_name, target);
	}
	closedir(fds);
}

static void each_pid(FILE *out, int comm)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return;
	struct dirent *d;
	while ((d = readdir(proc))) {
		if (!numeric(d->d_name) || strlen(d->d_name) > 16)
			continue;
		if (!comm) {
			list_fds(out, d->d_name);
			continue;
		}
		char path[300];
		snprintf(path, sizeof path, "/proc/%s/comm", d->d_name);
		fprintf(out, "==> %s <==\n", path);
		copy_file(out, path);
	}
	closedir(proc);
}

void checkpoint_probe(const char *socket_path)
{
	const char *slash = strrchr(socket_path, '/');
	if (!slash)
		return;
	char tmp[PATH_MAX], done[PATH_MAX];
	int dir = (int)(slash - socket_path);
	snprintf(tmp, sizeof tmp, "%.*s/probe.tmp", dir, socket_path);
	snprintf(done, sizeof done, "%.*s/probe", dir, socket_path);
	FILE *out = fopen(tmp, "we");
	if (!out)
		return;
	each_pid(out, 0);
	fputs("---\n", out);
	copy_file(out, "/proc/net/tcp");
	copy_file(out, "/proc/net/tcp6");
	fputs("---\n", out);
	each_pid(out, 1);
	if (fclose(out) != 0 || rename(tmp, done) != 0)
		unlink(tmp);
}

/* The host leaves a file `listen` beside the socket before it restores a checkpoint: the
 * restored agent, quiesced, finds it within RELISTEN_POLL_MS and listens again, sooner than
 * the SIGUSR1 the host sends through `runsc kill` (~20-40 ms), which stays for older agents.
 * Removed as the agent quiesces, so that a stale one cannot reopen the socket early. */
int listen_requested(const char *socket_path, int consume)
{
	const char *slash = strrchr(socket_path, '/');
	if (!slash)
		return 0;
	char path[MAX_PATH];
	snprintf(path, sizeof path, "%.*s/listen", (int)(slash - socket_path), socket_path);
	if (!consume)
		return unlink(path), 0;
	if (access(path, F_OK) != 0)
		return 0;
	unlink(path);
	return 1;
}
