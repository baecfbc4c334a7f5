/* The syscalls Python's standard library does not reach: TUNSETIFF with a
 * struct ifreq and the tun ioctls after it, SIOCETHTOOL, capget/capset and
 * the prctls of capabilities and securebits; getxattr, where CPython lacks it.
 * Contract (see ukrun.h): >= 0 on success, -1 with errno on failure. */
#include "kernel.h"
#include "ukrun.h"

const char *ukrun_version(void)
{
    return UKRUN_VERSION;
}

/* Copy an interface name into ifr_name; refuse what would not fit rather than
 * truncate it into some other interface's name. */
static int set_ifr_name(struct ifreq *ifr, const char *name)
{
    size_t len = strnlen(name, IFNAMSIZ);

    if (len == 0 || len >= IFNAMSIZ) {
        errno = EINVAL;
        return -1;
    }
    memcpy(ifr->ifr_name, name, len);
    ifr->ifr_name[len] = '\0';
    return 0;
}

int ukrun_tap_open(const char *name, int exclusive, char *actual)
{
    struct ifreq ifr;
    int fd, err;

    memset(&ifr, 0, sizeof(ifr));
    if (set_ifr_name(&ifr, name) == -1)
        return -1;
    /* IFF_NO_PI: plain Ethernet frames, no 4-byte packet-info header, which
     * every tender and QEMU expect (with it, every frame is silently lost). */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (exclusive)
        ifr.ifr_flags |= IFF_TUN_EXCL;

    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd == -1)
        return -1;
    if (ioctl(fd, TUNSETIFF, &ifr) == -1) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    /* The kernel writes back the name it used: a '%d' in the request would
     * have made it choose one.  Python checks it is the one asked for. */
    memcpy(actual, ifr.ifr_name, IFNAMSIZ);
    actual[IFNAMSIZ - 1] = '\0';
    return fd;
}

int ukrun_tap_set_persist(int fd, int persist)
{
    /* TUNSETPERSIST takes its flag as the ioctl argument itself, not a pointer. */
    return ioctl(fd, TUNSETPERSIST, (unsigned long)(persist != 0));
}

int ukrun_tap_set_owner(int fd, uint32_t uid)
{
    /* Like TUNSETPERSIST, the uid is the argument itself.  Once a tap has an
     * owner, only that euid or CAP_NET_ADMIN may attach to it. */
    return ioctl(fd, TUNSETOWNER, (unsigned long)uid);
}

int ukrun_tap_set_group(int fd, uint32_t gid)
{
    /* The gid is the argument itself, as for TUNSETOWNER.  With a group set, a
     * caller without CAP_NET_ADMIN must be in it (and be the owner, if any). */
    return ioctl(fd, TUNSETGROUP, (unsigned long)gid);
}

int ukrun_setns_net(int fd)
{
    /* The calling thread joins the network namespace `fd` refers to (an open
     * /proc/PID/ns/net or /run/netns/NAME); CLONE_NEWNET makes the kernel refuse
     * an fd of any other kind of namespace. */
    return setns(fd, CLONE_NEWNET);
}

/* A datagram socket only carries the ioctl to the interface; AF_INET is what
 * ethtool(8) uses, AF_UNIX serves where IPv4 is compiled out. */
static int ioctl_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd == -1)
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return fd;
}

int ukrun_ethtool_value(const char *ifname, uint32_t cmd, uint32_t *data)
{
    struct ethtool_value value;
    struct ifreq ifr;
    int fd, ret, err;

    memset(&ifr, 0, sizeof(ifr));
    if (set_ifr_name(&ifr, ifname) == -1)
        return -1;
    memset(&value, 0, sizeof(value));
    value.cmd = cmd;
    value.data = *data;
    ifr.ifr_data = (char *)&value;

    fd = ioctl_socket();
    if (fd == -1)
        return -1;
    ret = ioctl(fd, SIOCETHTOOL, &ifr);
    err = errno;
    close(fd);
    if (ret == -1) {
        errno = err;
        return -1;
    }
    *data = value.data;
    return 0;
}

/* Version 3 carries each set as two 32-bit words, low capabilities first.
 * glibc has no prototypes for capget/capset (libcap does), so use syscall(2). */
int ukrun_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) == -1)
        return -1;
    *effective = (uint64_t)data[1].effective << 32 | data[0].effective;
    *permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    *inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    return 0;
}

int ukrun_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable)
{
    /* pid 0: the calling thread, the only one capset may change. */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {
        {(uint32_t)effective, (uint32_t)permitted, (uint32_t)inheritable},
        {(uint32_t)(effective >> 32), (uint32_t)(permitted >> 32),
         (uint32_t)(inheritable >> 32)},
    };

    return (int)syscall(SYS_capset, &header, data);
}

/* The prctls.  Unused arguments are passed as 0: the kernel rejects anything
 * else with EINVAL for PR_SET_NO_NEW_PRIVS and PR_CAP_AMBIENT. */
int ukrun_capbset_drop(int cap)
{
    return prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0UL, 0UL, 0UL);
}

int ukrun_set_no_new_privs(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL);
}

int ukrun_ambient_raise(int cap)
{
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)cap, 0UL, 0UL);
}

int ukrun_ambient_clear_all(void)
{
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0UL, 0UL, 0UL);
}

int ukrun_securebits(void)
{
    return prctl(PR_GET_SECUREBITS, 0UL, 0UL, 0UL, 0UL);
}

ssize_t ukrun_xattr_size(const char *path, const char *name)
{
    return getxattr(path, name, NULL, 0);
}
