/* cpu_ns(who): user + system CPU time of getrusage(who), in nanoseconds. */
#ifndef EDRBENCH_CPU_NS_H
#define EDRBENCH_CPU_NS_H
#include <sys/resource.h>

static long long cpu_ns(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}
#endif
