/* loadgen: P processes each doing N socket()+connect()+close() to a closed loopback port (TCP:
 * refused, the full ALE lifetime without TIME_WAIT or an acceptor) or N connect() of one UDP
 * socket; or, with `cycle`, one process doing N whole loopback TCP connections (connect, accept,
 * close both with an RST so no TIME_WAIT piles up) and printing the ns per connection; or, with
 * `bind`, N UDP sockets each bound to 127.0.0.1:0 and closed (post_bind's own cost). Optionally moves itself into a cgroup first. Used by `make bench`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: loadgen tcp|udp|cycle|bind PORT PROCS N [CGROUP]\n");
		return 2;
	}
	int udp = !strcmp(argv[1], "udp"), cycle = !strcmp(argv[1], "cycle"), bindonly = !strcmp(argv[1], "bind");
	int port = atoi(argv[2]), procs = atoi(argv[3]);
	long n = atol(argv[4]);
	if (argc > 5) {
		char path[512];
		snprintf(path, sizeof(path), "%s/cgroup.procs", argv[5]);
		FILE *f = fopen(path, "w");
		if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f)) {
			perror(path);
			return 1;
		}
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bindonly) { /* N explicit binds (post_bind's own cost): a UDP socket bound to 127.0.0.1:0 */
		struct sockaddr_in ba = { .sin_family = AF_INET };
		ba.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		long total = n * procs;
		double t0 = now();
		for (long i = 0; i < total; i++) {
			int s = socket(AF_INET, SOCK_DGRAM, 0);
			if (s < 0 || bind(s, (struct sockaddr *)&ba, sizeof(ba))) {
				perror("bind");
				return 1;
			}
			close(s);
		}
		printf("%.0f\n", (now() - t0) * 1e9 / total);
		return 0;
	}
	if (cycle) {
		int ls = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in la = { .sin_family = AF_INET };
		la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(la);
		if (ls < 0 || bind(ls, (struct sockaddr *)&la, sizeof(la)) || listen(ls, 128) ||
		    getsockname(ls, (struct sockaddr *)&la, &len)) {
			perror("listener");
			return 1;
		}
		struct linger rst = { .l_onoff = 1, .l_linger = 0 };
		long total = n * procs;
		double t0 = now();
		for (long i = 0; i < total; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&la, sizeof(la))) {
				perror("connect");
				return 1;
			}
			int s = accept(ls, 0, 0);
			if (s < 0) {
				perror("accept");
				return 1;
			}
			setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
			setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
			close(c);
			close(s);
		}
		printf("%.0f\n", (now() - t0) * 1e9 / total);
		return 0;
	}
	double t0 = now();
	for (int p = 0; p < procs; p++) {
		if (fork() == 0) {
			long bad = 0;
			int us = udp ? socket(AF_INET, SOCK_DGRAM, 0) : -1;
			for (long i = 0; i < n; i++) {
				if (udp) {
					if (connect(us, (struct sockaddr *)&a, sizeof(a)))
						bad++;
					continue;
				}
				int s = socket(AF_INET, SOCK_STREAM, 0);
				if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 || errno != ECONNREFUSED)
					bad++;
				close(s);
			}
			_exit(bad ? 1 : 0);
		}
	}
	int failed = 0, st;
	while (wait(&st) > 0)
		failed |= !WIFEXITED(st) || WEXITSTATUS(st);
	double dt = now() - t0;
	printf("%s %ld connects in %.3f s: %.0f connects/s%s\n", argv[1], n * procs, dt, n * procs / dt,
	       failed ? " (some connects did not behave as expected)" : "");
	return failed;
}
