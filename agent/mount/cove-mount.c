/*
 * cove-mount: the host-side mounts of one sandbox's root filesystem.
 *
 *   cove-mount up TEMPLATE_ROOTFS SANDBOX_DIR UID_BASE COUNT
 *   cove-mount down SANDBOX_DIR
 *   cove-mount exec-without-unified PROGRAM ARGS...
 *   cove-mount volume SOURCE TARGET UID_BASE COUNT
 *   cove-mount unmount TARGET
 *
 * `up` gives the shared, read-only template an idmapped mount (host uid 0..COUNT-1 appears
 * as UID_BASE..) at SANDBOX_DIR/lower, and mounts an overlay with a private upper layer at
 * SANDBOX_DIR/rootfs. Root in the sandbox's user namespace then owns the files it expects,
 * copy-ups land in the sandbox's own uid range, and the template stays untouched.
 * Node has no binding for open_tree/mount_setattr/move_mount: that is why this is C.
 *
 * `down` detaches both mounts; it succeeds when they are already gone, so that it can be
 * the undo of a half-done `up` and the reclaim of leftovers after a crash.
 * On failure `up` undoes what it did, prints one line to stderr and exits 1.
 *
 * `volume` attaches at TARGET (an existing directory) a read-write, nosuid, nodev clone of
 * the mount at SOURCE (a volume's filesystem), idmapped as `up` maps the template: files the
 * volume keeps as uid 0..COUNT-1 belong to the sandbox's own root and users, and what the
 * sandbox creates lands on disk as 0..COUNT-1 again. Not recursive: nothing mounted below
 * SOURCE comes along. crun then bind-mounts TARGET into the sandbox (a bind keeps the idmap).
 * `unmount` detaches TARGET; like `down`, it succeeds when nothing is mounted there.
 *
 * `exec-without-unified` runs PROGRAM in a private mount namespace without the cgroup v2
 * mount of a hybrid host (/sys/fs/cgroup/unified): crun refuses hybrid hosts otherwise, and
 * only `crun create` needs it. This saves the shell that `unshare -m sh -c` would cost.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

static int fail(const char *what, const char *path) {
  fprintf(stderr, "cove-mount: %s %s: %s\n", what, path ? path : "", strerror(errno));
  return 1;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A user namespace holding the mapping, kept alive by a child that waits on a pipe. */
static int userns_fd(unsigned long base, unsigned long count) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char c;
    close(pipefd[1]);
    if (unshare(CLONE_NEWUSER) < 0) _exit(1);
    /* Tell the parent we are in the namespace by closing nothing: it polls our ns link. */
    if (read(pipefd[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(pipefd[0]);
  char path[64], map[64], own[64];
  int fd = -1;
  /* Wait until the child has unshared: its user ns link differs from ours. */
  struct stat self_ns, child_ns;
  if (stat("/proc/self/ns/user", &self_ns) < 0) goto out;
  snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
  for (int i = 0; i < 100000; i++) {
    if (stat(path, &child_ns) < 0) goto out;
    if (child_ns.st_ino != self_ns.st_ino) break;
    sched_yield();
  }
  snprintf(map, sizeof map, "0 %lu %lu\n", base, count);
  snprintf(own, sizeof own, "/proc/%d/uid_map", pid);
  if (write_file(own, map) < 0) goto out;
  snprintf(own, sizeof own, "/proc/%d/setgroups", pid);
  if (write_file(own, "deny") < 0) goto out;
  snprintf(own, sizeof own, "/proc/%d/gid_map", pid);
  if (write_file(own, map) < 0) goto out;
  fd = open(path, O_RDONLY | O_CLOEXEC);
out:;
  int saved = errno;
  close(pipefd[1]);
  waitpid(pid, NULL, 0);
  errno = saved;
  return fd;
}

static int path_in(char *buf, size_t size, const char *dir, const char *name) {
  int n = snprintf(buf, size, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= size) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return 0;
}

static int make_dir(const char *path, uid_t uid) {
  if (mkdir(path, 0755) < 0 && errno != EEXIST) return -1;
  return uid == (uid_t)-1 ? 0 : chown(path, uid, uid);
}

/*
 * Attaches at `target` a clone of the mount at `source` (not recursive), idmapped so that host
 * uid/gid 0..count-1 appear as base.., with `set` and `clr` mount attributes. Prints why on failure.
 */
static int idmapped_clone(const char *source, const char *target, unsigned long base, unsigned long count,
                          unsigned long long set, unsigned long long clr) {
  int ns = userns_fd(base, count);
  if (ns < 0) {
    fail("user namespace", NULL);
    return -1;
  }
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
  int rc = -1;
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | set, .attr_clr = clr, .userns_fd = (unsigned long)ns};
  if (tree < 0)
    fail("open_tree", source);
  else if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    fail("mount_setattr", source);
  else if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    fail("move_mount", target);
  else
    rc = 0;
  if (tree >= 0) close(tree);
  close(ns);
  return rc;
}

static int down(const char *dir) {
  char rootfs[PATH_MAX], lower[PATH_MAX];
  if (path_in(rootfs, sizeof rootfs, dir, "rootfs") < 0 || path_in(lower, sizeof lower, dir, "lower") < 0)
    return fail("path", dir);
  if (umount2(rootfs, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
    return fail("umount", rootfs);
  if (umount2(lower, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
    return fail("umount", lower);
  return 0;
}

static int up(const char *template, const char *dir, unsigned long base, unsigned long count) {
  char lower[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], rootfs[PATH_MAX], opts[3 * PATH_MAX + 64];
  if (path_in(lower, sizeof lower, dir, "lower") < 0 || path_in(upper, sizeof upper, dir, "upper") < 0 ||
      path_in(work, sizeof work, dir, "work") < 0 || path_in(rootfs, sizeof rootfs, dir, "rootfs") < 0)
    return fail("path", dir);
  if (make_dir(lower, -1) < 0) return fail("mkdir", lower);
  if (make_dir(upper, base) < 0) return fail("mkdir", upper);
  if (make_dir(work, base) < 0) return fail("mkdir", work);
  if (make_dir(rootfs, -1) < 0) return fail("mkdir", rootfs);

  if (idmapped_clone(template, lower, base, count, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, 0) < 0) return 1;

  int n = snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
  if (n < 0 || (size_t)n >= sizeof opts || mount("overlay", rootfs, "overlay", MS_NODEV, opts) < 0) {
    int saved = errno;
    umount2(lower, MNT_DETACH);
    errno = saved;
    return fail("overlay", rootfs);
  }
  return 0;
}

static int volume(const char *source, const char *target, unsigned long base, unsigned long count) {
  /* noexec is cleared: the host mounts the filesystem noexec, the sandbox may run what it keeps. */
  return idmapped_clone(source, target, base, count, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC) < 0 ? 1 : 0;
}

static int unmount(const char *target) {
  if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
    return fail("umount", target);
  return 0;
}

static int parse_ulong(const char *s, unsigned long *out) {
  char *end;
  errno = 0;
  *out = strtoul(s, &end, 10);
  return errno == 0 && *s && !*end ? 0 : -1;
}

static int exec_without_unified(char **argv) {
  if (unshare(CLONE_NEWNS) < 0) return fail("unshare", NULL);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return fail("make-private", "/");
  if (umount2("/sys/fs/cgroup/unified", MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return fail("umount", "/sys/fs/cgroup/unified");
  execvp(argv[0], argv);
  return fail("exec", argv[0]);
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "exec-without-unified") == 0) return exec_without_unified(argv + 2);
  if (argc == 3 && strcmp(argv[1], "down") == 0) return down(argv[2]);
  if (argc == 3 && strcmp(argv[1], "unmount") == 0) return unmount(argv[2]);
  unsigned long base, count;
  if (argc == 6 && strcmp(argv[1], "volume") == 0 && parse_ulong(argv[4], &base) == 0 &&
      parse_ulong(argv[5], &count) == 0 && count > 0 && base + count <= 0xFFFFFFFFUL)
    return volume(argv[2], argv[3], base, count);
  if (argc == 6 && strcmp(argv[1], "up") == 0 && parse_ulong(argv[4], &base) == 0 &&
      parse_ulong(argv[5], &count) == 0 && count > 0 && base + count <= 0xFFFFFFFFUL)
    return up(argv[2], argv[3], base, count);
  fprintf(stderr, "usage: cove-mount up TEMPLATE_ROOTFS SANDBOX_DIR UID_BASE COUNT | down SANDBOX_DIR |\n"
                  "       volume SOURCE TARGET UID_BASE COUNT | unmount TARGET |\n"
                  "       exec-without-unified PROGRAM ARGS...\n");
  return 2;
}
