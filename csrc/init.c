/* ukrun-init: what stays of ukrun when ukrun is PID 1 of its PID namespace.
 *
 *     ukrun-init CHILD_PID
 *
 * The kernel drops a signal sent to a namespace's init that has no handler for
 * it, so a unikernel or tender exec'd as PID 1 ignores `docker stop`, and the
 * namespace's orphans are reparented to PID 1, which must reap them.  So ukrun
 * forks the program, drops every capability and execs this, which still owns
 * the fork: every signal but SIGCHLD is forwarded to CHILD_PID, SIGCHLD reaps
 * every zombie, and when CHILD_PID is reaped this exits with its status (its
 * exit code, or 128 + the signal that killed it, as a shell reports it).
 *
 * The caller execs this with every signal blocked and fds 0-2 only.  Blocked,
 * no signal is lost on the way: a blocked signal is queued even for an init
 * with no handler, and pending signals survive execve.  sigwaitinfo then takes
 * them one by one, so this needs no handler, no allocation and no privilege.
 *
 * Exit statuses of its own: 2 for a bad command line; 1 when CHILD_PID is not
 * this process's child or a system call fails (one line on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "ukrun-init"

/* CHILD_PID: decimal digits only, 1 to INT_MAX (pid_t is an int); -1 for
 * anything else.  Not strtol, which takes blanks, signs and wraps silently. */
static pid_t parse_pid(const char *text)
{
    long long value = 0;

    if (*text == '\0')
        return -1;
    for (; *text != '\0'; text++) {
        if (*text < '0' || *text > '9')
            return -1;
        value = value * 10 + (*text - '0');
        if (value > INT_MAX)
            return -1;
    }
    return value == 0 ? -1 : (pid_t)value;
}

/* The status a shell reports for a child that ended with wait status STATUS. */
static int exit_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1; /* stopped or continued: not reported without WUNTRACED */
}

static int failed(const char *call)
{
    fprintf(stderr, PROG ": %s failed: %s\n", call, strerror(errno));
    return 1;
}

/* Reap every zombie there is, without blocking: the child's and the orphans'
 * that the kernel hands to PID 1.  Returns 1 with *status set when CHILD was
 * among them, 0 when it was not, -1 with errno on failure. */
static int reap_zombies(pid_t child, int *status)
{
    int found = 0, st;
    pid_t pid;

    for (;;) {
        pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            if (pid == child) {
                *status = st;
                found = 1;
            }
            continue;
        }
        if (pid == 0 || errno == ECHILD)
            return found;
        if (errno != EINTR)
            return -1;
    }
}

/* Pass SIG on.  Until this process reaps CHILD its pid cannot be reused, so
 * the signal cannot reach anyone else; a zombie takes it and ignores it. */
static void forward(pid_t child, int sig)
{
    if (kill(child, sig) == -1)
        fprintf(stderr, PROG ": forwarding signal %d to %d failed: %s\n", sig, (int)child,
                strerror(errno));
}

int main(int argc, char **argv)
{
    sigset_t all;
    siginfo_t info;
    pid_t child, pid;
    int status, sig, found;

    /* The caller blocked them already; blocking again makes sure sigwaitinfo
     * is the only way a signal gets in, whoever started this. */
    sigfillset(&all);
    if (sigprocmask(SIG_SETMASK, &all, NULL) == -1)
        return failed("sigprocmask");
    if (argc != 2 || (child = parse_pid(argv[1])) == -1) {
        fprintf(stderr, "usage: " PROG " CHILD_PID"
                " (ukrun starts it; CHILD_PID is a pid it forked)\n");
        return 2;
    }

    /* Whether CHILD is ours at all (ECHILD if not), and whether it ended
     * before this started: then it is a zombie, reaped here. */
    do
        pid = waitpid(child, &status, WNOHANG);
    while (pid == -1 && errno == EINTR);
    if (pid == -1 && errno == ECHILD) {
        fprintf(stderr, PROG ": process %d is not a child of this process (" PROG
                " must be exec'd by the process that forked it)\n", (int)child);
        return 1;
    }
    if (pid == -1)
        return failed("waitpid");
    if (pid == child)
        return exit_status(status);

    for (;;) {
        sig = sigwaitinfo(&all, &info);
        if (sig == -1) {
            if (errno == EINTR) /* a stop and continue from a tracer */
                continue;
            return failed("sigwaitinfo");
        }
        if (sig != SIGCHLD) {
            forward(child, sig);
            continue;
        }
        found = reap_zombies(child, &status);
        if (found == -1)
            return failed("waitpid");
        if (found)
            return exit_status(status);
    }
}
