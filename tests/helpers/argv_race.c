// SPDX-License-Identifier: GPL-2.0
/*
 * argv_race.c - flip an argv byte while another thread execs (tests/vm/test_lsm_race.py,
 *                tests/kernel/test_argv_race.py).
 *
 * Built static on the host (the guest has no compiler) and run in the guest in two roles,
 * chosen by argv[0]:
 *
 *   racer STANDIN ITERATIONS ARG FLIP_INDEX BENIGN_CHAR
 *       ITERATIONS times: fork; in the child thread B flips ARG[FLIP_INDEX] between its own
 *       (blocked) byte and BENIGN_CHAR as fast as it can while the main thread execve()s
 *       STANDIN with argv {"rm", "-rf", ARG}.  The kernel copies argv into the new mm
 *       (copy_strings) BEFORE security_bprm_check, where the LSM program reads it again from
 *       the caller's memory, so the two reads can see different bytes.  One flip is a one-byte
 *       store, so either read sees one of the two whole strings.
 *       Prints one JSON line: how each child ended (ran, eperm, killed, other).
 *
 *   rm ARGS...  (the stand-in: a copy of this file named rm)
 *       appends "pid<TAB>arg1 arg2...\n" to $EDR_RACE_MARKER with one write() and exits 0:
 *       the proof of which argv a program that ran really received.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_EPERM 126
#define EXIT_OTHER 127

static char arg[256];
static size_t flip_at;
static char flip_blocked, flip_benign;
static atomic_int flipping;

static int standin(int argc, char **argv)
{
	const char *marker = getenv("EDR_RACE_MARKER");
	char line[1024];
	int n = snprintf(line, sizeof(line), "%d\t", (int)getpid());
	for (int i = 1; i < argc && n < (int)sizeof(line) - 2; i++)
		n += snprintf(line + n, sizeof(line) - n, "%s%s", i > 1 ? " " : "", argv[i]);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	int fd = marker ? open(marker, O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
	if (fd < 0 || write(fd, line, n) != n)
		return 2;
	return 0;
}

static void *flipper(void *unused)
{
	volatile char *p = &arg[flip_at];
	(void)unused;
	atomic_store(&flipping, 1);
	for (;;) {
		*p = flip_benign;
		*p = flip_blocked;
	}
	return NULL;
}

static void child(const char *path)
{
	pthread_t t;
	char *argv[] = {"rm", "-rf", arg, NULL};
	static char env[512];
	char *envp[] = {env, NULL};

	snprintf(env, sizeof(env), "EDR_RACE_MARKER=%s", getenv("EDR_RACE_MARKER"));

	if (pthread_create(&t, NULL, flipper, NULL))
		_exit(EXIT_OTHER);
	while (!atomic_load(&flipping))
		;
	execve(path, argv, envp);
	_exit(errno == EPERM ? EXIT_EPERM : EXIT_OTHER);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int racer(int argc, char **argv)
{
	if (argc != 6 || !getenv("EDR_RACE_MARKER")) {
		fprintf(stderr, "usage: EDR_RACE_MARKER=FILE %s STANDIN ITERATIONS ARG FLIP_INDEX "
				"BENIGN_CHAR\n", argv[0]);
		return 2;
	}
	long iterations = atol(argv[2]);
	snprintf(arg, sizeof(arg), "%s", argv[3]);
	flip_at = (size_t)atol(argv[4]);
	if (flip_at >= strlen(arg))
		return 2;
	flip_blocked = arg[flip_at];
	flip_benign = argv[5][0];
	long ran = 0, eperm = 0, killed = 0, other = 0;
	double t0 = now();
	for (long i = 0; i < iterations; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 3;
		if (pid == 0)
			child(argv[1]);
		int st;
		if (waitpid(pid, &st, 0) < 0)
			return 3;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ran++;
		else if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_EPERM)
			eperm++;
		else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			killed++;
		else
			other++;
	}
	printf("{\"iterations\": %ld, \"ran\": %ld, \"eperm\": %ld, \"killed\": %ld, "
	       "\"other\": %ld, \"seconds\": %.3f}\n",
	       iterations, ran, eperm, killed, other, now() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "rm") == 0)
		return standin(argc, argv);
	return racer(argc, argv);
}
