/*
 * Directories reached through descriptors (base/fs.h), what a restore writes with:
 *   - ws_dir_lookup: an existing directory, one with missing components (nothing created), a
 *     link of our own followed, a link of another user refused (when run as root), a file on
 *     the way refused, ".." in the missing part refused;
 *   - ws_dir_create: the missing components, a link planted in their place refused;
 *   - ws_dir_clear: a nested tree emptied, links removed and never followed (what they point to
 *     keeps its content); a mount point inside refused, not entered (as root), a bind mount
 *     of a directory of the same file system too;
 *   - ws_tree: files and directories created below the root and below a mount, a link at a
 *     directory or file of the tree refused, invalid relative paths refused, the cursor reused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "fixture.h"
#include "unit.h"

static const char *fresh_dir(void)
{
    static char bufs[16][512];
    static int next;
    char *p = bufs[next++ % 16];

    snprintf(p, 512, "%s/d.XXXXXX", unit_tmpdir());
    if (!mkdtemp(p))
        unit_fail(__FILE__, __LINE__, "mkdtemp");
    return p;
}

static void path_of(char *out, size_t outsz, const char *dir, const char *rel)
{
    snprintf(out, outsz, "%s/%s", dir, rel);
}

static int make_file(const char *dir, const char *rel, const char *text)
{
    char p[700];
    int fd, ok;

    path_of(p, sizeof(p), dir, rel);
    if ((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
        return -1;
    ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

static int file_is(const char *path, const char *text)
{
    char buf[256];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/* Entries in a directory other than "." and "..", -1 if it cannot be read (fixture.h). */
#define entries unit_entries

static int same_dir(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

static void test_lookup(void)
{
    const char *d = fresh_dir();
    char p[700], q[700];
    struct ws_dir_ref ref;
    struct ws_error err = {0};
    struct stat st;

    /* existing */
    REQUIRE(ws_dir_lookup(d, &ref, &err) == 0);
    CHECK(ref.missing[0] == '\0' && same_dir(ref.fd, d));
    ws_dir_ref_close(&ref);

    /* missing components: the deepest existing ancestor, nothing created */
    path_of(p, sizeof(p), d, "a/./b/");
    REQUIRE(ws_dir_lookup(p, &ref, &err) == 0);
    CHECK(strcmp(ref.missing, "a/b") == 0 && same_dir(ref.fd, d));
    path_of(q, sizeof(q), d, "a");
    CHECK(lstat(q, &st) != 0 && errno == ENOENT);
    /* ... which ws_dir_create makes */
    REQUIRE(ws_dir_create(&ref, p, 0700, &err) == 0);
    path_of(q, sizeof(q), d, "a/b");
    CHECK(ref.missing[0] == '\0' && same_dir(ref.fd, q));
    ws_dir_ref_close(&ref);

    /* a link of our own on the way (and as the last component) is followed */
    path_of(p, sizeof(p), d, "mine");
    REQUIRE(symlink("a", p) == 0);
    path_of(p, sizeof(p), d, "mine/b");
    REQUIRE(ws_dir_lookup(p, &ref, &err) == 0);
    CHECK(ref.missing[0] == '\0' && same_dir(ref.fd, q));
    ws_dir_ref_close(&ref);
    path_of(p, sizeof(p), d, "mine");
    REQUIRE(ws_dir_lookup(p, &ref, &err) == 0);
    path_of(q, sizeof(q), d, "a");
    CHECK(same_dir(ref.fd, q));
    ws_dir_ref_close(&ref);

    /* ".." after a missing component cannot be resolved */
    path_of(p, sizeof(p), d, "nothing/../a");
    CHECK(ws_dir_lookup(p, &ref, &err) == WS_ERR_INVALID && ref.fd < 0);

    /* a file on the way */
    REQUIRE(make_file(d, "file", "x") == 0);
    path_of(p, sizeof(p), d, "file/sub");
    CHECK(ws_dir_lookup(p, &ref, &err) == WS_ERR_INVALID && ref.fd < 0);
    CHECK(strstr(err.msg, "file/sub") != NULL);
}

/* A link owned by another user (not root) is never followed: only root can make one here. */
static void test_lookup_foreign_link(void)
{
    const char *d = fresh_dir();
    char p[700];
    struct ws_dir_ref ref;
    struct ws_error err = {0};

    if (geteuid() != 0) {
        printf("    (not root: foreign links not tested)\n");
        return;
    }
    path_of(p, sizeof(p), d, "target");
    REQUIRE(mkdir(p, 0700) == 0);
    path_of(p, sizeof(p), d, "theirs");
    REQUIRE(symlink("target", p) == 0);
    REQUIRE(lchown(p, 65534, 65534) == 0);
    CHECK(ws_dir_lookup(p, &ref, &err) == WS_ERR_INVALID && ref.fd < 0);
    CHECK(strstr(err.msg, "owned by user 65534") != NULL);
    path_of(p, sizeof(p), d, "theirs/sub");
    CHECK(ws_dir_lookup(p, &ref, &err) == WS_ERR_INVALID);
    /* root's own link is followed */
    path_of(p, sizeof(p), d, "theirs");
    REQUIRE(lchown(p, 0, 0) == 0);
    CHECK(ws_dir_lookup(p, &ref, &err) == 0 && ref.missing[0] == '\0');
    ws_dir_ref_close(&ref);
}

static void test_create_refuses_planted_link(void)
{
    const char *d = fresh_dir(), *elsewhere = fresh_dir();
    char p[700];
    struct ws_dir_ref ref;
    struct ws_error err = {0};
    struct stat st;

    path_of(p, sizeof(p), d, "new/sub");
    REQUIRE(ws_dir_lookup(p, &ref, &err) == 0);
    CHECK(strcmp(ref.missing, "new/sub") == 0);
    /* someone plants "new" -> elsewhere between the lookup and the creation */
    path_of(p, sizeof(p), d, "new");
    REQUIRE(symlink(elsewhere, p) == 0);
    path_of(p, sizeof(p), d, "new/sub");
    CHECK(ws_dir_create(&ref, p, 0700, &err) == WS_ERR_INVALID);
    ws_dir_ref_close(&ref);
    path_of(p, sizeof(p), elsewhere, "sub");
    CHECK(lstat(p, &st) != 0 && errno == ENOENT);
}

static void test_clear(void)
{
    const char *d = fresh_dir(), *outside = fresh_dir();
    char p[700], q[700];
    struct ws_error err = {0};
    struct stat st;
    int fd;

    REQUIRE(make_file(outside, "keep", "precious") == 0);
    path_of(p, sizeof(p), d, "a");
    REQUIRE(mkdir(p, 0700) == 0);
    path_of(p, sizeof(p), d, "a/b");
    REQUIRE(mkdir(p, 0500) == 0); /* not writable: removal needs only the parent */
    path_of(p, sizeof(p), d, "a/c");
    REQUIRE(mkdir(p, 0700) == 0);
    REQUIRE(make_file(d, "a/c/f", "1") == 0 && make_file(d, "top", "2") == 0);
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof(name), "a/c/many%d", i);
        REQUIRE(make_file(d, name, "m") == 0);
    }
    path_of(p, sizeof(p), d, "a/to-dir");
    REQUIRE(symlink(outside, p) == 0);
    path_of(p, sizeof(p), d, "to-file");
    path_of(q, sizeof(q), outside, "keep");
    REQUIRE(symlink(q, p) == 0);

    REQUIRE((fd = open(d, O_RDONLY | O_DIRECTORY)) >= 0);
    CHECK(ws_dir_clear(fd, d, &err) == 0);
    close(fd);
    CHECK(stat(d, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(entries(d) == 0);
    /* what the links pointed to is untouched */
    CHECK(file_is(q, "precious") && entries(outside) == 1);
}

/* A file system mounted inside is refused, its files kept (needs root to mount). */
static void test_clear_mount_point(void)
{
    const char *d = fresh_dir();
    char p[700];
    struct ws_error err = {0};
    int fd;

    path_of(p, sizeof(p), d, "m");
    REQUIRE(mkdir(p, 0700) == 0);
    if (mount("walsafe-unit", p, "tmpfs", 0, "size=1m") != 0) {
        printf("    (cannot mount a tmpfs: %s; mount points not tested)\n", strerror(errno));
        return;
    }
    CHECK(make_file(p, "keep", "on another file system") == 0);
    /* (no REQUIRE until the umount below: a failure must not leave the mount behind) */
    fd = open(d, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    CHECK(ws_dir_clear(fd, d, &err) == WS_ERR_INVALID && strstr(err.msg, "mount point") != NULL);
    if (fd >= 0)
        close(fd);
    path_of(p, sizeof(p), d, "m/keep");
    CHECK(file_is(p, "on another file system"));
    path_of(p, sizeof(p), d, "m");
    CHECK(umount(p) == 0);
}

/* A bind mount of a directory of the same file system (same st_dev) is refused as well: the
 * directory it shows lies outside the tree being cleared. */
static void test_clear_bind_mount(void)
{
    const char *d = fresh_dir(), *outside = fresh_dir();
    char p[700];
    struct ws_error err = {0};
    int fd;

    REQUIRE(make_file(outside, "precious", "outside the cleared tree") == 0);
    path_of(p, sizeof(p), d, "sub");
    REQUIRE(mkdir(p, 0700) == 0);
    path_of(p, sizeof(p), d, "sub/b");
    REQUIRE(mkdir(p, 0700) == 0);
    if (mount(outside, p, NULL, MS_BIND, NULL) != 0) {
        printf("    (cannot bind-mount: %s; bind mounts not tested)\n", strerror(errno));
        return;
    }
    /* (no REQUIRE until the umount below: a failure must not leave the mount behind) */
    fd = open(d, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    CHECK(ws_dir_clear(fd, d, &err) == WS_ERR_INVALID && strstr(err.msg, "mount point") != NULL);
    if (fd >= 0)
        close(fd);
    path_of(p, sizeof(p), outside, "precious");
    CHECK(file_is(p, "outside the cleared tree"));
    path_of(p, sizeof(p), d, "sub/b");
    CHECK(umount(p) == 0);
}

static void test_tree(void)
{
    const char *root = fresh_dir(), *ts = fresh_dir(), *elsewhere = fresh_dir();
    char p[700];
    struct ws_tree_mount mount = {"pg_tblspc/16385", -1};
    struct ws_tree t = {-1, NULL, &mount, 1};
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    struct ws_error err = {0};
    struct stat st;
    int fd;

    t.fd = open(root, O_RDONLY | O_DIRECTORY);
    t.name = root;
    mount.fd = open(ts, O_RDONLY | O_DIRECTORY);
    REQUIRE(t.fd >= 0 && mount.fd >= 0);

    CHECK(ws_tree_mkdir(&t, &c, "base", 0750, &err) == 0);
    CHECK(ws_tree_mkdir(&t, &c, "base", 0700, &err) == 0); /* exists: taken, mode set */
    path_of(p, sizeof(p), root, "base");
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0700);
    CHECK(ws_tree_mkdir(&t, &c, "base/5", 0700, &err) == 0);
    CHECK(ws_tree_open(&t, &c, "base/5/1259", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err) == 0);
    CHECK(fd >= 0 && write(fd, "abc", 3) == 3);
    close(fd);
    CHECK(ws_tree_open(&t, &c, "base/5/1260", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err) == 0);
    close(fd);
    path_of(p, sizeof(p), root, "base/5/1259");
    CHECK(file_is(p, "abc"));

    /* below the mount: in the tablespace directory, not in the root */
    CHECK(ws_tree_mkdir(&t, &c, "pg_tblspc", 0700, &err) == 0);
    CHECK(ws_tree_symlink(&t, &c, ts, "pg_tblspc/16385", &err) == 0);
    CHECK(ws_tree_mkdir(&t, &c, "pg_tblspc/16385/PG_15_1", 0700, &err) == 0);
    CHECK(ws_tree_open(&t, &c, "pg_tblspc/16385/PG_15_1/f", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd,
                       &err) == 0);
    close(fd);
    path_of(p, sizeof(p), ts, "PG_15_1/f");
    CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
    path_of(p, sizeof(p), root, "pg_tblspc/16385");
    CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    /* the mount prefix itself is a name in the root: the link is not a directory */
    CHECK(ws_tree_mkdir(&t, &c, "pg_tblspc/16385", 0700, &err) == WS_ERR_INVALID);
    /* a prefix that only starts like the mount's is not below it */
    CHECK(ws_tree_mkdir(&t, &c, "pg_tblspc/163850", 0700, &err) == 0);
    path_of(p, sizeof(p), root, "pg_tblspc/163850");
    CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));

    /* base/6 swapped for a link to elsewhere: never written through */
    path_of(p, sizeof(p), root, "base/6");
    REQUIRE(symlink(elsewhere, p) == 0);
    CHECK(ws_tree_open(&t, &c, "base/6/x", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err) ==
          WS_ERR_INVALID);
    CHECK(err.sys_errno == ENOTDIR && strstr(err.msg, "base/6") != NULL);
    CHECK(ws_tree_mkdir(&t, &c, "base/6/y", 0700, &err) == WS_ERR_INVALID);
    CHECK(ws_tree_mkdir(&t, &c, "base/6", 0700, &err) == WS_ERR_INVALID);
    path_of(p, sizeof(p), elsewhere, "x");
    CHECK(lstat(p, &st) != 0);
    path_of(p, sizeof(p), elsewhere, "y");
    CHECK(lstat(p, &st) != 0);
    /* a file name taken by a link */
    path_of(p, sizeof(p), root, "base/5/1261");
    REQUIRE(symlink("/etc/hostname", p) == 0);
    CHECK(ws_tree_open(&t, &c, "base/5/1261", O_WRONLY, 0, &fd, &err) == WS_ERR_IO);
    CHECK(err.sys_errno == ELOOP);

    /* the cursor still points at base/5 after the swap of base/5 itself: what it opened */
    CHECK(ws_tree_open(&t, &c, "base/5/1262", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err) == 0);
    close(fd);

    /* changed in place only when a regular file of its own: not through a hard link (the file
     * outside keeps its bytes), never blocked on a FIFO */
    CHECK(ws_tree_open_own(&t, &c, "base/5/1259", O_RDWR, &fd, &err) == 0 && fd >= 0);
    close(fd);
    path_of(p, sizeof(p), root, "base/5/1259");
    {
        char q[700];
        path_of(q, sizeof(q), elsewhere, "linked");
        REQUIRE(link(p, q) == 0);
        CHECK(ws_tree_open_own(&t, &c, "base/5/1259", O_WRONLY, &fd, &err) == WS_ERR_INVALID);
        CHECK(fd == -1 && strstr(err.msg, "base/5/1259") != NULL);
        CHECK(file_is(q, "abc"));
    }
    path_of(p, sizeof(p), root, "base/5/1263");
    REQUIRE(mkfifo(p, 0600) == 0);
    CHECK(ws_tree_open_own(&t, &c, "base/5/1263", O_WRONLY, &fd, &err) != 0 && fd == -1);
    CHECK(ws_tree_open_own(&t, &c, "base/5/1261", O_WRONLY, &fd, &err) == WS_ERR_IO);

    /* paths a tree never resolves */
    static const char *const bad[] = {"", "/etc", "a//b", "./a", "a/.", "a/../b", "..", "a/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ws_tree_open(&t, &c, bad[i], O_RDONLY, 0, &fd, &err) == WS_ERR_INVALID);

    ws_tree_cursor_close(&c);
    close(t.fd);
    close(mount.fd);
}

const struct unit_test unit_tests[] = {
    {"lookup", test_lookup},
    {"lookup_foreign_link", test_lookup_foreign_link},
    {"create_refuses_planted_link", test_create_refuses_planted_link},
    {"clear", test_clear},
    {"clear_mount_point", test_clear_mount_point},
    {"clear_bind_mount", test_clear_bind_mount},
    {"tree", test_tree},
    {NULL, NULL},
};
