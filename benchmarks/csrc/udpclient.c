/* UDP echo client for the data-path bench.
 *
 *   udpclient IP PORT rtt   COUNT           one datagram at a time: RTT percentiles
 *   udpclient IP PORT flood COUNT WINDOW    WINDOW datagrams in flight: packets/s
 *
 * Prints one JSON line. Every wait is bounded: 100 ms per answer, 15 s in all.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 64

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    struct sockaddr_in to;
    unsigned char buf[PAYLOAD];
    long count, window = 1, sent = 0, got = 0, lost = 0;
    int64_t start, deadline, *rtt;
    int fd, flood;

    if (argc < 5)
        return 2;
    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1)
        return 2;
    flood = !strcmp(argv[3], "flood");
    count = atol(argv[4]);
    if (flood && argc > 5)
        window = atol(argv[5]);
    if (count <= 0 || window <= 0 || !(rtt = calloc((size_t)count, sizeof(*rtt))))
        return 2;
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
        perror("socket");
        return 1;
    }
    memset(buf, 0x5a, sizeof(buf));
    start = now_ns();
    deadline = start + 15000000000LL;
    while (got + lost < count && now_ns() < deadline) {
        struct pollfd p = { fd, POLLIN, 0 };
        int64_t t;

        while (sent < count && sent - got - lost < window) {
            t = now_ns();
            memcpy(buf, &t, sizeof(t));
            if (send(fd, buf, sizeof(buf), 0) < 0) {
                perror("send");
                return 1;
            }
            sent++;
        }
        if (poll(&p, 1, 100) <= 0) {
            lost += sent - got - lost;   /* nothing for 100 ms: count what is in flight as lost */
            continue;
        }
        if (recv(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
            continue;
        memcpy(&t, buf, sizeof(t));
        rtt[got++] = now_ns() - t;
    }
    {
        double secs = (double)(now_ns() - start) / 1e9;

        qsort(rtt, (size_t)got, sizeof(*rtt), cmp);
        printf("{\"sent\": %ld, \"received\": %ld, \"seconds\": %.6f, \"pps\": %.0f", sent, got,
               secs, (double)got / secs);
        if (got)
            printf(", \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f",
                   rtt[got * 50 / 100] / 1e3, rtt[got * 90 / 100] / 1e3, rtt[got * 99 / 100] / 1e3);
        printf("}\n");
    }
    return got ? 0 : 1;
}
