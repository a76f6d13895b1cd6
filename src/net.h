/*
 * net.h
 *    Sockets: listening (one SO_REUSEPORT socket per worker), accepting, connecting, and
 *    non-blocking reads and writes that report "would block" apart from real errors.
 */
#ifndef PGTURBO_NET_H
#define PGTURBO_NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define NET_ADDR_LEN 64 /* "address:port" of a peer, for logs and the console */

/*
 * Opens a non-blocking listening socket on addr:port with SO_REUSEPORT, so that every worker
 * has its own and the kernel spreads new connections among them. addr "*" means all IPv4
 * addresses. defer_accept_s > 0 sets TCP_DEFER_ACCEPT: a connection is reported only once
 * its first bytes have come (or after about that many seconds), which saves a wakeup per
 * connection, since a PostgreSQL client always speaks first. Returns the fd, or -1 with a
 * message in err.
 */
int net_listen(const char *addr, int port, int defer_accept_s, char *err, size_t errlen);

/* Accepts one connection as a non-blocking, TCP_NODELAY socket; -1 when none (or error).
 * The peer's address goes into addr, and as "address:port" text into peer. */
int net_accept(int lfd, struct sockaddr_storage *addr, char *peer, size_t peerlen);

/*
 * Starts a non-blocking connect to host:port, or to the Unix socket in directory host when
 * host starts with '/'. Returns the fd (the connect may still be in progress) or -1 with a
 * message in err.
 */
int net_connect(const char *host, int port, char *err, size_t errlen);

/* The pending error of a socket whose connect finished (0 when it succeeded). */
int net_socket_error(int fd);

/* Reads/writes what it can: bytes moved, 0 on EOF (read only), NET_AGAIN, or NET_ERROR. */
#define NET_AGAIN (-1)
#define NET_ERROR (-2)
ssize_t net_read(int fd, void *p, size_t n);
ssize_t net_write(int fd, const void *p, size_t n);

#endif /* PGTURBO_NET_H */
