/* A packet reflector standing in for a unikernel on the data path.
 *
 *   reflector --interface=TAP --mac=MAC --ipv4=IP/N [ignored...]   a tap, as `ukrun unix` runs it
 *   reflector --packet=IFACE  --mac=MAC --ipv4=IP/N                AF_PACKET on a veth (ceiling)
 *
 * Answers ARP requests for IP, ICMP echo, and echoes every UDP datagram to IP back to its
 * sender (addresses and ports swapped, so the IP checksum stays valid; no UDP checksum).
 * Runs until killed.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char mymac[6];
static uint32_t myip; /* network order */

static int open_tap(const char *name)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_packet(const char *name)
{
    struct sockaddr_ll sll;
    int one = 1, fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

    if (fd < 0)
        return -1;
    /* Without this every answer comes back to the socket as a copy to skip (Linux >= 4.20). */
    (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)if_nametoindex(name);
    if (sll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static uint16_t csum(const unsigned char *p, size_t n)
{
    uint32_t sum = 0;

    for (; n > 1; p += 2, n -= 2)
        sum += (uint32_t)(p[0] << 8 | p[1]);
    if (n)
        sum += (uint32_t)(p[0] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Turns the frame in F (N bytes) into its answer; returns 1 when there is one to send. */
static int reflect(unsigned char *f, size_t n)
{
    uint16_t type;

    if (n < 14)
        return 0;
    type = (uint16_t)(f[12] << 8 | f[13]);
    if (type == ETH_P_ARP && n >= 42 && f[20] == 0 && f[21] == 1 && !memcmp(f + 38, &myip, 4)) {
        memcpy(f, f + 6, 6);
        memcpy(f + 6, mymac, 6);
        f[21] = 2;                       /* reply */
        memcpy(f + 32, f + 22, 10);      /* target = asker */
        memcpy(f + 22, mymac, 6);
        memcpy(f + 28, &myip, 4);
        return 1;
    }
    if (type == ETH_P_IP && n >= 34 && !memcmp(f + 30, &myip, 4)) {
        unsigned char *ip = f + 14, tmp[4];
        size_t ihl = (size_t)(ip[0] & 15) * 4, total = (size_t)(ip[2] << 8 | ip[3]);
        unsigned char *l4 = ip + ihl;

        if (ihl < 20 || total > n - 14 || total < ihl + 8)
            return 0;
        memcpy(f, f + 6, 6);
        memcpy(f + 6, mymac, 6);
        memcpy(tmp, ip + 12, 4);
        memcpy(ip + 12, ip + 16, 4);
        memcpy(ip + 16, tmp, 4);
        if (ip[9] == IPPROTO_ICMP && l4[0] == 8) {
            uint16_t c;

            l4[0] = 0;
            l4[2] = l4[3] = 0;
            c = csum(l4, total - ihl);
            l4[2] = (unsigned char)(c >> 8);
            l4[3] = (unsigned char)c;
            return 1;
        }
        if (ip[9] == IPPROTO_UDP) {
            memcpy(tmp, l4, 2);
            memcpy(l4, l4 + 2, 2);
            memcpy(l4 + 2, tmp, 2);
            /* Over a veth the checksum may still be a partial one (offload): send none,
             * which IPv4 allows, on every path alike. */
            l4[6] = l4[7] = 0;
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *tap = NULL, *packet = NULL;
    unsigned char frame[65536];
    int fd, i;

    for (i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--interface=", 12))
            tap = argv[i] + 12;
        else if (!strncmp(argv[i], "--packet=", 9))
            packet = argv[i] + 9;
        else if (!strncmp(argv[i], "--mac=", 6)) {
            unsigned int m[6];
            int k;

            if (sscanf(argv[i] + 6, "%x:%x:%x:%x:%x:%x",
                       &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
                return 2;
            for (k = 0; k < 6; k++)
                mymac[k] = (unsigned char)m[k];
        } else if (!strncmp(argv[i], "--ipv4=", 7)) {
            char addr[32];

            snprintf(addr, sizeof(addr), "%s", argv[i] + 7);
            addr[strcspn(addr, "/")] = 0;
            if (inet_pton(AF_INET, addr, &myip) != 1)
                return 2;
        }
    }
    if ((!tap == !packet) || !myip) {
        fprintf(stderr, "usage: reflector --interface=TAP|--packet=IFACE --mac=MAC --ipv4=IP/N\n");
        return 2;
    }
    fd = tap ? open_tap(tap) : open_packet(packet);
    if (fd < 0) {
        perror(tap ? tap : packet);
        return 1;
    }
    fprintf(stderr, "reflector: ready on %s\n", tap ? tap : packet);
    for (;;) {
        struct sockaddr_ll from;
        socklen_t fromlen = sizeof(from);
        ssize_t n;

        if (tap)
            n = read(fd, frame, sizeof(frame));
        else
            n = recvfrom(fd, frame, sizeof(frame), 0, (struct sockaddr *)&from, &fromlen);
        if (n < 0)
            return 1;
        if (packet && from.sll_pkttype == PACKET_OUTGOING)
            continue;
        if (reflect(frame, (size_t)n) && write(fd, frame, (size_t)n) < 0)
            perror("write");
    }
}
