"""Kernel constants and struct layouts only the tests use, taken from the system headers.

The product's cdef files (csrc/*.cdef) declare what ukrun itself uses. What a test needs beyond
that (CLONE_NEWNET to enter a namespace, TUNGETIFF to read a tap's flags, the struct layouts the
codec's formats are checked against, ...) is declared here and compiled by cffi the same way, so
no number is typed in. ``lib`` and ``ffi`` are built on first use and kept, keyed by their
source, under the user's cache directory; later sessions load them in a millisecond.
"""
import functools
import hashlib
import importlib.util
import os
import sys
import tempfile

SOURCE = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <linux/pkt_sched.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
"""

CDEF = """
/* setns(2) into a network namespace */
#define CLONE_NEWNET ...

/* prctl(2) queries, keepcaps and securebits, to check ukrun.kernel.caps against the kernel */
#define PR_CAPBSET_READ ...
#define PR_GET_NO_NEW_PRIVS ...
#define PR_SET_KEEPCAPS ...
#define PR_SET_SECUREBITS ...

/* A tap's flags as TUNGETIFF reports them, and offloads as a tender with vnet headers sets them */
#define IFF_TAP ...
#define IFF_NO_PI ...
#define TUNGETIFF ...
#define TUNSETOFFLOAD ...
#define TUN_F_CSUM ...
#define TUN_F_TSO4 ...
#define TUN_F_TSO6 ...
struct ifreq { short ifr_flags; ...; };

/* Netlink facts the tests check the codec against or build fixtures with */
#define NLMSG_HDRLEN ...
#define NLA_HDRLEN ...
#define NLM_F_MULTI ...
#define NLMSGERR_ATTR_OFFS ...
#define IFA_F_NODAD ...
#define IFA_F_PERMANENT ...
#define RT_TABLE_LOCAL ...
#define RTPROT_KERNEL ...
#define RTPROT_STATIC ...
#define RT_SCOPE_LINK ...
#define RT_SCOPE_HOST ...
#define RTN_LOCAL ...
#define RTN_BROADCAST ...
#define RTN_ANYCAST ...
#define RTN_MULTICAST ...

/* The layouts behind the struct formats of ukrun.kernel.netlink, ukrun.kernel.netlink_bodies and
   ukrun.kernel.rtnl_objects */
struct nlmsghdr { uint32_t nlmsg_len; uint16_t nlmsg_type; uint16_t nlmsg_flags;
                  uint32_t nlmsg_seq; uint32_t nlmsg_pid; ...; };
struct nlmsgerr { int error; struct nlmsghdr msg; ...; };
struct rtattr { unsigned short rta_len; unsigned short rta_type; ...; };
struct ifinfomsg { unsigned char ifi_family; unsigned char __ifi_pad; unsigned short ifi_type;
                   int ifi_index; unsigned int ifi_flags; unsigned int ifi_change; ...; };
struct ifaddrmsg { uint8_t ifa_family; uint8_t ifa_prefixlen; uint8_t ifa_flags;
                   uint8_t ifa_scope; uint32_t ifa_index; ...; };
struct rtmsg { unsigned char rtm_family; unsigned char rtm_dst_len; unsigned char rtm_src_len;
               unsigned char rtm_tos; unsigned char rtm_table; unsigned char rtm_protocol;
               unsigned char rtm_scope; unsigned char rtm_type; unsigned int rtm_flags; ...; };
struct tcmsg { unsigned char tcm_family; unsigned char tcm__pad1; unsigned short tcm__pad2;
               int tcm_ifindex; uint32_t tcm_handle; uint32_t tcm_parent; uint32_t tcm_info; ...; };
struct tc_u32_key { uint32_t mask; uint32_t val; int off; int offmask; ...; };
struct tc_u32_sel { unsigned char flags; unsigned char offshift; unsigned char nkeys;
                    uint16_t offmask; uint16_t off; short offoff; short hoff; uint32_t hmask; ...; };
struct tc_mirred { uint32_t index; uint32_t capab; int action; int refcnt; int bindcnt;
                   int eaction; uint32_t ifindex; ...; };

/* The namespace lock's NFQUEUE bind (ukrun.kernel.process) */
struct nfgenmsg { uint8_t nfgen_family; uint8_t version; uint16_t res_id; ...; };
struct nfqnl_msg_config_cmd { uint8_t command; uint8_t _pad; uint16_t pf; ...; };
"""


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "ukrun-tests")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@functools.lru_cache(maxsize=None)
def _module():
    import cffi

    key = hashlib.sha256("\0".join([SOURCE, CDEF, cffi.__version__, sys.version]).encode())
    name = "_ukrun_test_headers_" + key.hexdigest()[:16]
    cache = _cache_dir()
    found = [f for f in os.listdir(cache) if f.startswith(name + ".")]
    if found:
        path = os.path.join(cache, found[0])
    else:
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
        ffi.set_source(name, SOURCE)
        # Sessions run side by side: each builds apart, and the rename is atomic.
        with tempfile.TemporaryDirectory(dir=cache) as build:
            built = ffi.compile(tmpdir=build)
            path = os.path.join(cache, os.path.basename(built))
            os.replace(built, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def __getattr__(attr):
    if attr in ("ffi", "lib"):
        return getattr(_module(), attr)
    raise AttributeError("module %r has no attribute %r" % (__name__, attr))
