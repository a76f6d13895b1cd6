/*
 * net.c
 *    Socket helpers; see net.h.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* TCP_NODELAY and SO_KEEPALIVE; Linux copies both from a listening socket to those it
 * accepts, so they are set once on the listener. */
static int tune_tcp(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
        return -1;
    return 0;
}

int net_listen(const char *addr, int port, int defer_accept_s, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (strcmp(addr, "*") == 0)
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "listen_addr \"%s\" is not an IPv4 address", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 || tune_tcp(fd) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0)
        goto fail;
    if (defer_accept_s > 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept_s, sizeof(defer_accept_s)) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

int net_accept(int lfd, struct sockaddr_storage *addr, char *peer, size_t peerlen)
{
    socklen_t len = sizeof(*addr);
    memset(addr, 0, sizeof(*addr));
    int fd = accept4(lfd, (struct sockaddr *)addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -1;
    const struct sockaddr_in *sa = (const struct sockaddr_in *)addr;
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(peer, peerlen, "%s:%d", ip, ntohs(sa->sin_port));
    return fd;
}

static int connect_unix(const char *dir, int port, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", dir, port) >=
        sizeof(sa.sun_path)) {
        snprintf(err, errlen, "Unix socket directory \"%s\" is too long", dir);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
                   errno != EAGAIN)) {
        snprintf(err, errlen, "cannot connect to %s: %s", sa.sun_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int net_connect(const char *host, int port, char *err, size_t errlen)
{
    if (host[0] == '/')
        return connect_unix(host, port, err, errlen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS)) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    } else {
        (void)tune_tcp(fd); /* best effort: the connection works without either option */
    }
    freeaddrinfo(res);
    return fd;
}

int net_socket_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

ssize_t net_read(int fd, void *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? NET_AGAIN : NET_ERROR;
    }
}

ssize_t net_write(int fd, const void *p, size_t n)
{
    for (;;) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? NET_AGAIN : NET_ERROR;
    }
}
