# The C twins of sock_syscalls.py's functions, for compiled modules that cimport this module
# (endpoint_link.pxd): the same calls, made directly, with no socket object, argument parsing or interpreter
# lock released around calls that never block (every descriptor here is non-blocking). sock_syscalls.py
# itself is not compiled; see its docstring for what each function returns. Keep the two in step: same
# results, OSError with errno on failure (PyErr_SetFromErrno picks the subclass by errno, as Python's own
# socket calls do).
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from cpython.exc cimport PyErr_SetFromErrno
from libc.string cimport memset, strerror, strlen


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EINPROGRESS
        EINTR


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        int fd
    cdef struct epoll_event:
        unsigned int events
        epoll_data_t data
    enum:
        EPOLL_CLOEXEC
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLET
        EPOLLRDHUP
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    cdef struct sockaddr:
        pass
    cdef struct sockaddr_storage:
        unsigned short ss_family
    enum:
        AF_INET
        AF_INET6
        SOCK_STREAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_ERROR
        MSG_NOSIGNAL
        SHUT_WR
    int socket(int domain, int type, int protocol)
    int accept4(int fd, sockaddr* addr, socklen_t* length, int flags)
    int connect(int fd, const sockaddr* addr, socklen_t length)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t length)
    int getsockopt(int fd, int level, int name, void* value, socklen_t* length)
    ssize_t recv(int fd, void* buf, size_t length, int flags)
    ssize_t send(int fd, const void* buf, size_t length, int flags)
    int shutdown(int fd, int how)


cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        pass
    cdef struct in6_addr:
        pass
    cdef struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    cdef struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    enum:
        IPPROTO_TCP
        INET6_ADDRSTRLEN
    unsigned short htons(unsigned short value)
    unsigned short ntohs(unsigned short value)
    unsigned int ntohl(unsigned int value)


cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int family, const char* text, void* out)
    const char* inet_ntop(int family, const void* address, char* text, socklen_t size)


cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLOUT
        POLLERR
        POLLHUP
    int poll(pollfd* fds, unsigned long count, int timeout)


cdef extern from "<unistd.h>" nogil:
    int _close "close" (int fd)


cdef enum:
    MAX_EVENTS = 64
    _RECV_SIZE = 65536

# C statics, not `cdef` globals (which a .pxd would declare as the module's own, exported variables): the
# events of the last poll, and the buffer a read lands in before it is copied into a bytes object of its
# size. The loop's thread holds the GIL throughout: one of each serves.
cdef extern from *:
    """
    #include <sys/epoll.h>
    static struct epoll_event shiftroute_sock_ready[64];
    static char shiftroute_sock_recv_buffer[65536];
    """
    epoll_event _ready "shiftroute_sock_ready" [64]
    char _recv_buffer "shiftroute_sock_recv_buffer" [65536]


cdef inline int _fail() except -1:
    PyErr_SetFromErrno(OSError)
    return -1


cdef inline int epoll_open() except -1:
    cdef int epfd = epoll_create1(EPOLL_CLOEXEC)
    if epfd < 0:
        return _fail()
    return epfd


cdef inline int epoll_close(int epfd) except -1:
    _close(epfd)
    return 0


cdef inline int _epoll_ctl(int epfd, int op, int fd, unsigned int events) except -1:
    cdef epoll_event event
    memset(&event, 0, sizeof(event))
    event.events = events
    event.data.fd = fd
    if epoll_ctl(epfd, op, fd, &event) < 0:
        return _fail()
    return 0


cdef inline int epoll_add(int epfd, int fd, unsigned int events) except -1:
    return _epoll_ctl(epfd, EPOLL_CTL_ADD, fd, events)


cdef inline int epoll_modify(int epfd, int fd, unsigned int events) except -1:
    return _epoll_ctl(epfd, EPOLL_CTL_MOD, fd, events)


cdef inline int epoll_remove(int epfd, int fd) except -1:
    return _epoll_ctl(epfd, EPOLL_CTL_DEL, fd, 0)


cdef inline int epoll_poll(int epfd) except -1:
    cdef int count = epoll_wait(epfd, _ready, MAX_EVENTS, 0)
    if count < 0:
        return _fail()
    return count


cdef inline int ready_fd(int i) noexcept:
    return _ready[i].data.fd


cdef inline unsigned int ready_events(int i) noexcept:
    return _ready[i].events


cdef inline int tcp_connect(str address, int port) except -2:
    cdef sockaddr_in v4
    cdef sockaddr_in6 v6
    cdef const sockaddr* target
    cdef socklen_t length
    cdef int family, fd, saved
    cdef int one = 1
    if not address.isascii():
        return -1
    cdef bytes text = address.encode("ascii")
    memset(&v4, 0, sizeof(v4))
    memset(&v6, 0, sizeof(v6))
    if inet_pton(AF_INET, text, &v4.sin_addr) == 1:
        family = AF_INET
        v4.sin_family = AF_INET
        v4.sin_port = htons(<unsigned short>port)
        target = <const sockaddr*>&v4
        length = sizeof(v4)
    elif inet_pton(AF_INET6, text, &v6.sin6_addr) == 1:
        family = AF_INET6
        v6.sin6_family = AF_INET6
        v6.sin6_port = htons(<unsigned short>port)
        target = <const sockaddr*>&v6
        length = sizeof(v6)
    else:
        return -1
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        _fail()
        return -2
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
    if connect(fd, target, length) < 0 and errno != EINPROGRESS:
        saved = errno
        _close(fd)
        raise OSError(saved, strerror(saved).decode())  # OSError picks the subclass by errno
    return fd


cdef inline int connected_now(int fd) except -1:
    cdef pollfd one
    cdef int code
    one.fd = fd
    one.events = POLLOUT
    one.revents = 0
    if poll(&one, 1, 0) < 0:
        return _fail()
    if one.revents == POLLOUT:
        return 1
    if not one.revents & (POLLERR | POLLHUP):
        return 0
    code = socket_error(fd)
    if code == 0:
        return 1
    raise OSError(code, strerror(code).decode())  # OSError picks the subclass by errno


cdef inline int socket_error(int fd) except -1:
    cdef int code = 0
    cdef socklen_t length = sizeof(code)
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) < 0:
        return _fail()
    return code


cdef inline object recv_bytes(int fd, Py_ssize_t size):
    cdef ssize_t got = recv(fd, _recv_buffer, <size_t>min(size, _RECV_SIZE), 0)
    cdef int code
    if got < 0:
        code = errno
        if code == EAGAIN:  # EWOULDBLOCK is the same number on Linux
            return None
        raise OSError(code, strerror(code).decode())  # OSError picks the subclass by errno
    return PyBytes_FromStringAndSize(_recv_buffer, got)


cdef inline Py_ssize_t send_bytes(int fd, bytes data, Py_ssize_t offset) except -1:
    cdef ssize_t sent = send(fd, PyBytes_AS_STRING(data) + offset, <size_t>(PyBytes_GET_SIZE(data) - offset),
                             MSG_NOSIGNAL)
    if sent < 0:
        if errno == EAGAIN:
            return 0
        return _fail()
    return sent


cdef inline int shutdown_write(int fd) except -1:
    if shutdown(fd, SHUT_WR) < 0:
        return _fail()
    return 0


cdef inline int close_fd(int fd) except -1:
    _close(fd)
    return 0


cdef inline str _ipv4_text(const unsigned char* octets):
    # Dotted decimal written here: glibc's inet_ntop formats IPv4 through sprintf, about 1.7k instructions
    # per accepted connection (callgrind), this about a tenth.
    cdef char text[16]
    cdef int i, at = 0
    cdef unsigned int octet
    for i in range(4):
        octet = octets[i]
        if octet >= 100:
            text[at] = <char>(48 + octet // 100)
            at += 1
        if octet >= 10:
            text[at] = <char>(48 + (octet // 10) % 10)
            at += 1
        text[at] = <char>(48 + octet % 10)
        at += 1
        if i < 3:
            text[at] = 46  # "."
            at += 1
    return PyUnicode_DecodeASCII(text, at, NULL)


cdef inline object accept_peer(int fd):
    cdef sockaddr_storage peer
    cdef socklen_t length = sizeof(peer)
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    cdef char text[INET6_ADDRSTRLEN + 1]
    cdef int conn, code
    while True:
        conn = accept4(fd, <sockaddr*>&peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC)
        if conn >= 0:
            break
        code = errno
        if code == EINTR:
            continue
        if code == EAGAIN:
            return None
        raise OSError(code, strerror(code).decode())  # OSError picks the subclass by errno
    # TCP_NODELAY comes from the listening socket (sock_syscalls.py says why)
    if peer.ss_family == AF_INET:
        v4 = <sockaddr_in*>&peer
        return conn, (_ipv4_text(<const unsigned char*>&v4.sin_addr), ntohs(v4.sin_port))
    if peer.ss_family == AF_INET6:
        v6 = <sockaddr_in6*>&peer
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return conn, (
            PyUnicode_DecodeASCII(text, strlen(text), NULL), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo),
            v6.sin6_scope_id,
        )
    return conn, ("", 0)
