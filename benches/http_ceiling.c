/* The ceiling of net.py's http_* workloads: the same HTTP/1.1 keep-alive "Hello, World!"
 * server as net.py's _HttpProtocol, in C (one thread, epoll), so that the load client can be
 * checked against a server that costs next to nothing.  `python benches/net.py --http-ceiling`
 * compiles and runs it; by hand: cc -O2 -o /tmp/http_ceiling benches/http_ceiling.c.
 *
 * Usage: http_ceiling SECONDS -- listens on 127.0.0.1 (a free port, printed on stdout) and
 * exits by itself after SECONDS.  Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

int main(int argc, char **argv) {
    int one = 1;
    alarm(argc > 1 ? (unsigned)atoi(argv[1]) : 30);  /* never outlive the benchmark */
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof addr;
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) ||
        listen(listener, 1024) || getsockname(listener, (struct sockaddr *)&addr, &len)) {
        perror("http_ceiling: listen");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    static char in[65536], out[65536];
    const size_t rlen = sizeof RESPONSE - 1;
    static int tail[65536]; /* per fd: how many bytes of "\r\n\r\n" the last read ended with */
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int conn;
                while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (conn >= 65536) { close(conn); continue; }
                    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = conn};
                    epoll_ctl(ep, EPOLL_CTL_ADD, conn, &cev);
                    tail[conn] = 0;
                }
                continue;
            }
            ssize_t got = read(fd, in, sizeof in);
            if (got <= 0) {
                close(fd);
                continue;
            }
            /* Count request ends ("\r\n\r\n"), also across reads. */
            size_t count = 0, out_len = 0;
            int state = tail[fd];
            for (ssize_t j = 0; j < got; j++) {
                char c = in[j];
                if (c == (state & 1 ? '\n' : '\r')) {
                    if (++state == 4) { count++; state = 0; }
                } else {
                    state = c == '\r';
                }
            }
            tail[fd] = state;
            while (count-- && out_len + rlen <= sizeof out) {
                memcpy(out + out_len, RESPONSE, rlen);
                out_len += rlen;
            }
            if (out_len && write(fd, out, out_len) < 0) close(fd);
        }
    }
}
