/* The system headers every constant and struct layout in the csrc cdef files comes from.
 * Included by the generated extension before our own prototypes. */
#ifndef UKRUN_KERNEL_H
#define UKRUN_KERNEL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <net/if.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/pkt_sched.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <elf.h>
#include <limits.h>
#include <linux/binfmts.h>

/* linux/binfmts.h defines MAX_ARG_STRLEN as (PAGE_SIZE * 32), and userspace has no fixed
 * PAGE_SIZE (musl defines one on some machines): evaluated with a page of one byte it is the
 * number of pages, which ukrun.programs multiplies by the running kernel's page size. */
#pragma push_macro("PAGE_SIZE")
#undef PAGE_SIZE
#define PAGE_SIZE 1
enum { UKRUN_ARG_STRLEN_PAGES = MAX_ARG_STRLEN };
#undef PAGE_SIZE
#pragma pop_macro("PAGE_SIZE")

#endif
