/*
 * exec_loop N PATH [ARG...]: N times fork, execve(PATH, {PATH, ARG..., NULL}, {}), waitpid.
 * Prints "wall_ns cpu_ns failures"; cpu = user + system time of the loop and its children.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpu_ns.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s N PATH [ARG...]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    char *path = argv[2];
    char **cargv = &argv[2]; /* PATH, ARG..., NULL */
    char *cenv[] = {NULL};
    long failures = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            execve(path, cargv, cenv);
            _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR) {
                perror("waitpid");
                return 2;
            }
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failures++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    printf("%lld %lld %ld\n", ns, cpu_ns(RUSAGE_SELF) + cpu_ns(RUSAGE_CHILDREN), failures);
    return 0;
}
