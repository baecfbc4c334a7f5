/* ukrun's own C: only what Python cannot reach.  Read by cffi as a cdef, so it
 * holds plain prototypes and nothing cffi cannot parse (no includes, no guards).
 * Contract of every function: returns >= 0, or -1 with errno set; never prints,
 * never exits; errno is kept across any cleanup.  Rules about arguments (valid
 * interface names, capability numbers) live in Python; C only refuses what would
 * overflow its buffers. */

const char *ukrun_version(void);

/* Tap devices.  ukrun_tap_open opens /dev/net/tun (O_RDWR | O_CLOEXEC) and asks
 * TUNSETIFF for IFF_TAP | IFF_NO_PI named `name`: an existing tap of that name is
 * attached, else one is created (with `exclusive`, IFF_TUN_EXCL makes an existing
 * one an error).  Returns the fd and writes the name the kernel used into
 * `actual` (IFNAMSIZ bytes, NUL-terminated). */
int ukrun_tap_open(const char *name, int exclusive, char *actual);
int ukrun_tap_set_persist(int fd, int persist);
/* TUNSETOWNER: only euid `uid` (or CAP_NET_ADMIN) may attach to the tap from now on. */
int ukrun_tap_set_owner(int fd, uint32_t uid);
/* TUNSETGROUP: a caller without CAP_NET_ADMIN must be in group `gid` to attach. */
int ukrun_tap_set_group(int fd, uint32_t gid);

/* setns(fd, CLONE_NEWNET): the calling thread joins the network namespace of `fd`. */
int ukrun_setns_net(int fd);

/* SIOCETHTOOL with a struct ethtool_value: `cmd` is an ETHTOOL_S* (sets *data)
 * or ETHTOOL_G* (fills *data) command on interface `ifname`. */
int ukrun_ethtool_value(const char *ifname, uint32_t cmd, uint32_t *data);

/* capget/capset, _LINUX_CAPABILITY_VERSION_3, for the calling thread.  Each set
 * is one 64-bit mask (bit n = capability n); C splits it into the kernel's two
 * 32-bit words. */
int ukrun_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);
int ukrun_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);

/* prctl: the steps of the drop (bounding set, no_new_privs, ambient set).  What
 * the drop leaves is read back from /proc/thread-self/status, not through prctl. */
int ukrun_capbset_drop(int cap);
int ukrun_set_no_new_privs(void);
int ukrun_ambient_raise(int cap);
int ukrun_ambient_clear_all(void);
/* PR_GET_SECUREBITS: the calling thread's SECBIT_* mask. */
int ukrun_securebits(void);

/* getxattr(2) of `path` (symlinks followed) with no buffer: the size of extended attribute
 * `name`'s value (ENODATA when there is none).  What os.getxattr does, for the CPythons
 * that lack it (on musl before 3.11.3). */
ssize_t ukrun_xattr_size(const char *path, const char *name);
