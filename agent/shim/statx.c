/* cove-statx.so: preloaded in runsc sandboxes only (/etc/ld.so.preload there). The gVisor in
 * Debian 12 (runsc 0.0~20221219) rejects statx() and fstatat() with AT_NO_AUTOMOUNT as
 * EINVAL, and Debian 12's coreutils pass that flag, so `ls -l` and `stat` fail on every path.
 * The flag means nothing under gVisor (it has no automounts): drop it and make the call. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
	return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}
