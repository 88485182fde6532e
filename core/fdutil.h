/*
 * fdutil.h - small file-descriptor helpers shared by the code that starts
 * processes (bash apps, isolated workers).  Header-only and private.
 */
#ifndef CPARSL_CORE_FDUTIL_H
#define CPARSL_CORE_FDUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Close *fd if open and mark it closed. */
static inline void cparsl__close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Keep our descriptors off 0-2: if the host closed its stdin, a descriptor
 * we open could land on 0 and a child's own stdio setup would clobber it.
 * Returns the (possibly moved, close-on-exec) descriptor. */
static inline int cparsl__above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return nfd;
}

/* A pidfd for 'pid' (above stdio), or -1 where the kernel has none. */
static inline int cparsl__open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? cparsl__above_stdio(fd) : -1;
#else
    (void)pid;
    return -1;
#endif
}

#endif
