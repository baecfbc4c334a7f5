/* launch ARGV...: read CLOCK_MONOTONIC, fork, exec ARGV; then print "T0_NS MAXRSS_KB STATUS".
 *
 * The bench starts this small process instead of spawning the variant itself: a child forked
 * from the bench's Python would start with Python's resident set as its ru_maxrss (vfork and
 * fork both count the parent's pages), hiding the variant's own peak. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    struct rusage ru;
    long long t0;
    int status;
    pid_t pid;

    if (argc < 2)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0)
        return 1;
    fflush(stdout);
    printf("%lld %ld %d\n", t0, ru.ru_maxrss, status);
    return 0;
}
