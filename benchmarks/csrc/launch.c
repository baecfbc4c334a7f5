/* launch ARGV...: read CLOCK_MONOTONIC, fork, exec ARGV; then print
 * "T0_NS MAXRSS_KB STATUS CPU_US", CPU_US being the child's user + system time.
 *
 * The bench starts this small process instead of spawning the variant itself: a child forked
 * from the bench's Python would start with Python's resident set as its ru_maxrss (vfork and
 * fork both count the parent's pages), hiding the variant's own peak. The CPU time is what a
 * shared, loaded machine disturbs least: it leaves out the time the variant waited to run. */
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
    printf("%lld %ld %d %lld\n", t0, ru.ru_maxrss, status,
           (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL
           + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return 0;
}
