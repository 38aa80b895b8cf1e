// CSpawn: see include/lfp_spawn.h for why this is C.
#define _GNU_SOURCE
#include "lfp_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* The child signals go to (-1: none yet, or it has been waited for), and the first signal. */
static atomic_int forward_pidfd = -1;
static atomic_int first_signal = 0;

static void forward(int sig, siginfo_t *info, void *context)
{
	(void)context;
	int saved = errno;
	int expected = 0;
	atomic_compare_exchange_strong(&first_signal, &expected, sig);
	int fd = atomic_load(&forward_pidfd);
	if (fd >= 0 && info->si_code != SI_KERNEL)
		syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
	errno = saved;
}

void lfp_forward_signals(void)
{
	static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
	sigset_t set;
	sigemptyset(&set);
	for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = forward;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(signals[i], &sa, NULL);
		sigaddset(&set, signals[i]);
	}
	/* lfp may have been started with them blocked; a blocked signal is never forwarded. */
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int lfp_forwarded_signal(void)
{
	return atomic_load(&first_signal);
}

/* The child, between clone3 and execve: async-signal-safe calls only. */
static void child(int report_fd, const char *path, char *const argv[], char *const envp[])
{
	/* Ignored signals stay ignored across execve (lfp ignores SIGPIPE in places; a shell
	 * may have ignored SIGINT); caught ones become default there anyway. */
	/* The raw syscall: glibc's sigaction() refuses its own signals 32 and 33, which a
	 * parent may have set to ignored (seen: the test runner's). The kernel's struct with a
	 * NULL handler is SIG_DFL; SIGKILL and SIGSTOP fail with EINVAL, as they should. */
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		unsigned long mask;
	} dfl = { 0 };
	for (int sig = 1; sig < NSIG; sig++)
		syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
	int err = 0;
	/* After CLONE_INTO_CGROUP the child is in the workload's cgroup, so the namespace is
	 * rooted there (a CLONE_NEWCGROUP in clone3 itself would root it at lfp's cgroup). */
	if (unshare(CLONE_NEWCGROUP) < 0) {
		err = errno;
	} else {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(path, argv, envp);
		err = errno;
	}
	ssize_t n = write(report_fd, &err, sizeof err);
	(void)n;
	_exit(err == ENOENT ? 127 : 126);
}

int lfp_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[], int *pid_out)
{
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0)
		return -errno;
	int pidfd = -1;
	struct clone_args args;
	memset(&args, 0, sizeof args);
	args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = SIGCHLD;
	args.cgroup = (uint64_t)cgroup_fd;
	/* No handler of lfp's may run in the child before it resets them: block everything
	 * across the clone (the child inherits this thread's mask, and clears it before exec). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long pid = syscall(SYS_clone3, &args, sizeof args);
	if (pid == 0)
		child(report[1], path, argv, envp);
	int clone_errno = errno;
	if (pid > 0)
		atomic_store(&forward_pidfd, pidfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(report[1]);
	if (pid < 0) {
		close(report[0]);
		return -clone_errno;
	}
	int err = 0;
	ssize_t n;
	do {
		n = read(report[0], &err, sizeof err);
	} while (n < 0 && errno == EINTR);
	close(report[0]);
	*pid_out = (int)pid;
	if (n == (ssize_t)sizeof err) {
		lfp_spawn_wait(pidfd, (int)pid);
		return -err;
	}
	return pidfd;
}

int lfp_spawn_wait(int pidfd, int pid)
{
	siginfo_t info;
	int r;
	/* WNOWAIT: the child stays a zombie, holding its pid, until forwarding has stopped. */
	do {
		memset(&info, 0, sizeof info);
		r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT);
	} while (r < 0 && errno == EINTR);
	int wait_errno = errno;
	atomic_store(&forward_pidfd, -1);
	close(pidfd);
	if (r < 0)
		return -wait_errno;
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}
