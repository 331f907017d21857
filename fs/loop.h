/* fs/ private: the mount's FUSE request loop (fs/loop.c). */
#ifndef CAIRN_FS_LOOP_H
#define CAIRN_FS_LOOP_H

struct fuse_session;

/* Answers the session's requests with up to max_threads threads until it is unmounted or
 * exited (a signal, fuse_session_exit). Returns 0, or -errno if reading requests failed. */
int cn_loop_run(struct fuse_session *se, int max_threads);

/* Called by a request handler that is about to wait for something slow (a commit, the
 * network): another thread takes over reading requests meanwhile. No-op elsewhere. */
void cn_loop_yield(void);

/* Whether the write this thread is answering must clear the file's set-user-ID and
 * set-group-ID bits: the kernel asks so (FUSE_WRITE_KILL_SUIDGID) when the writer lacks
 * CAP_FSETID and it does not clear them itself, as for a file opened with direct_io.
 * libfuse 3.14 does not pass that flag on. 0 outside a write. */
int cn_loop_write_kills_suidgid(void);

#endif
