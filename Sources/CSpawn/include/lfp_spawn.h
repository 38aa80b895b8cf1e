/*
 * CSpawn: how `lfp run` starts its command and passes signals on to it. C because the child
 * side of clone3() may only make async-signal-safe calls until it execs (the parent has many
 * threads; the child has a copy of their memory, locks included), and because a signal
 * handler that forwards must be async-signal-safe too. Swift can do neither: it cannot call
 * the variadic syscall(2), and its runtime may allocate anywhere.
 */
#ifndef LFP_SPAWN_H
#define LFP_SPAWN_H

/*
 * Start `path` (an absolute path; no PATH search) with `argv` and `envp` inside the cgroup
 * open at `cgroup_fd`, from its very first instruction (clone3 with CLONE_INTO_CGROUP: no
 * window in which the command runs elsewhere), in a new cgroup namespace rooted there, with
 * every signal at its default disposition and an empty signal mask. Same process group and
 * session as lfp, so the terminal's Ctrl-C reaches it directly.
 *
 * Returns a pidfd of the child (>= 0) and sets *pid_out, or -errno: of clone3, or of the
 * child's unshare/execve (reported through a close-on-exec pipe; the child is reaped).
 * The pidfd becomes the target of the signal forwarder until lfp_spawn_wait returns.
 */
int lfp_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[],
                        int *pid_out);

/*
 * Wait for the child (EINTR retried) and return its status as a shell reports it: the exit
 * code, or 128 + the signal that killed it; -errno if waiting failed. Stops forwarding to it
 * before it is reaped, so a late signal never reaches a recycled pid, and closes the pidfd.
 */
int lfp_spawn_wait(int pidfd, int pid);

/*
 * Catch SIGINT, SIGTERM and SIGHUP (and unblock them in the calling thread) and forward each
 * to the spawned child, through its pidfd. A signal that the kernel sent to the whole
 * foreground process group (the terminal's Ctrl-C and hangup: si_code SI_KERNEL) already
 * reached the child, which shares lfp's process group, and is not sent a second time.
 */
void lfp_forward_signals(void);

/* The first of those signals lfp received (0 if none): `lfp run` interrupted before its
 * command started does not start it, and cleans up. */
int lfp_forwarded_signal(void);

#endif
