# The compiled twin of tls_direct.py: tls.pxd cimports this module under the same name as tls.py imports the
# Python one (the pattern of protocol/head_bytes.pxd). Compiled, an established TLS connection's records are
# decrypted and encrypted by calling OpenSSL from C on the very `SSL` object that Python's `ssl` module made
# for it; as Python sources, `handle_of` answers 0 and TlsLayer goes through `ssl.SSLObject` as before.
#
# Why: every record crossed four Python method calls (MemoryBIO.write, SSLObject.read, MemoryBIO.read and
# `pending`), each with a method lookup, argument parsing, a new bytes object sized 64 KiB then shrunk, and
# the GIL released and taken back around the SSL call (pointless here: memory BIOs never block). That was
# about 5 000 of the 120 000 instructions of a keep-alive reencrypt request (`python -m bench.instructions`).
#
# What stays with `ssl`: the context (certificates, verification, SNI, ALPN, session tickets), the handshake
# and its errors (certificate verify failures keep their `verify_message`), close_notify. Only records after
# the handshake come here.
#
# How the `SSL *` is found, and why that is safe:
# - CPython's `_ssl._SSLSocket` (what `SSLContext.wrap_bio` wraps as `SSLObject._sslobj`) starts with
#   `PyObject_HEAD; PyObject *Socket; SSL *ssl;` and `_ssl.MemoryBIO` with `PyObject_HEAD; BIO *bio;`
#   (Modules/_ssl.c; that prefix has not changed from 3.7 to 3.14). They are read only when the type names
#   match and the interpreter is one of those versions, and then only trusted when OpenSSL itself confirms
#   them: `SSL_get_rbio(ssl)` and `SSL_get_wbio(ssl)` must be the two MemoryBIOs' own BIO pointers.
# - The OpenSSL functions are looked up with dlsym through the `_ssl` extension's own handle, so they are
#   those of the very libssl that `ssl` uses (no second copy of OpenSSL, no headers or link flags needed).
# - Anything missing or different: handle 0, and the connection uses `ssl` exactly as before.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append


cdef extern from *:
    """
    #include <dlfcn.h>
    #include <limits.h>
    #include <string.h>

    /* The prefixes of CPython's _ssl objects (Modules/_ssl.c, 3.7 to 3.14): see tls_direct.pxd. */
    typedef struct { PyObject_HEAD PyObject *socket; void *ssl; } shiftroute_ssl_socket_prefix;
    typedef struct { PyObject_HEAD void *bio; } shiftroute_memory_bio_prefix;

    #define SHIFTROUTE_SSL_ERROR_SSL 1
    #define SHIFTROUTE_SSL_ERROR_WANT_READ 2
    #define SHIFTROUTE_SSL_ERROR_WANT_WRITE 3
    #define SHIFTROUTE_SSL_ERROR_SYSCALL 5
    #define SHIFTROUTE_SSL_ERROR_ZERO_RETURN 6

    static int shiftroute_tls_loaded = 0;  /* 0: not tried yet, 1: ready, -1: unavailable */
    /* Plaintext of one feed is gathered here, then copied once into a bytes object (rather than a 64 KiB
       bytes object per record, shrunk afterwards). The loop's thread holds the GIL throughout: one serves. */
    #define SHIFTROUTE_TLS_PLAIN_SIZE 65536
    static char shiftroute_tls_plain[SHIFTROUTE_TLS_PLAIN_SIZE];
    static int (*shiftroute_SSL_read_ex)(void *, void *, size_t, size_t *);
    static int (*shiftroute_SSL_write_ex)(void *, const void *, size_t, size_t *);
    static int (*shiftroute_SSL_get_error)(const void *, int);
    static int (*shiftroute_SSL_pending)(const void *);
    static void *(*shiftroute_SSL_get_rbio)(const void *);
    static void *(*shiftroute_SSL_get_wbio)(const void *);
    static int (*shiftroute_BIO_write_ex)(void *, const void *, size_t, size_t *);
    static int (*shiftroute_BIO_read_ex)(void *, void *, size_t, size_t *);
    static size_t (*shiftroute_BIO_ctrl_pending)(void *);
    static void (*shiftroute_ERR_clear_error)(void);
    static unsigned long (*shiftroute_ERR_peek_last_error)(void);
    static const char *(*shiftroute_ERR_reason_error_string)(unsigned long);
    static unsigned long (*shiftroute_OpenSSL_version_num)(void);

    /* Resolve the functions through the _ssl extension's handle (its libssl and libcrypto); 1 when all are
       there and OpenSSL's version is `expected_version` (ssl.OPENSSL_VERSION_NUMBER). */
    static int shiftroute_tls_resolve(const char *ssl_extension_path, unsigned long expected_version) {
    #if PY_VERSION_HEX < 0x03070000 || PY_VERSION_HEX >= 0x030F0000 || defined(Py_GIL_DISABLED)
        /* Other layouts; or no GIL, which the shared buffer and the bypassed _ssl object locks rely on. */
        return 0;
    #else
        void *lib;
        if (ssl_extension_path == NULL) return 0;
        lib = dlopen(ssl_extension_path, RTLD_NOW | RTLD_NOLOAD);
        if (lib == NULL) return 0;
        #define SHIFTROUTE_RESOLVE(name) \
            if ((*(void **)&shiftroute_##name = dlsym(lib, #name)) == NULL) return 0;
        SHIFTROUTE_RESOLVE(SSL_read_ex)
        SHIFTROUTE_RESOLVE(SSL_write_ex)
        SHIFTROUTE_RESOLVE(SSL_get_error)
        SHIFTROUTE_RESOLVE(SSL_pending)
        SHIFTROUTE_RESOLVE(SSL_get_rbio)
        SHIFTROUTE_RESOLVE(SSL_get_wbio)
        SHIFTROUTE_RESOLVE(BIO_write_ex)
        SHIFTROUTE_RESOLVE(BIO_read_ex)
        SHIFTROUTE_RESOLVE(BIO_ctrl_pending)
        SHIFTROUTE_RESOLVE(ERR_clear_error)
        SHIFTROUTE_RESOLVE(ERR_peek_last_error)
        SHIFTROUTE_RESOLVE(ERR_reason_error_string)
        SHIFTROUTE_RESOLVE(OpenSSL_version_num)
        #undef SHIFTROUTE_RESOLVE
        /* The handle stays open on purpose: the functions must outlive this call (_ssl is never unloaded). */
        return shiftroute_OpenSSL_version_num() == expected_version;
    #endif
    }

    static void shiftroute_tls_load(const char *ssl_extension_path, unsigned long expected_version) {
        shiftroute_tls_loaded = shiftroute_tls_resolve(ssl_extension_path, expected_version) ? 1 : -1;
    }

    /* The SSL * behind an _ssl._SSLSocket, as an integer; 0 unless it provably uses these two MemoryBIOs. */
    static size_t shiftroute_tls_handle(PyObject *sslobj, PyObject *incoming, PyObject *outgoing) {
        void *ssl, *rbio, *wbio;
        if (shiftroute_tls_loaded != 1) return 0;
        if (strcmp(Py_TYPE(sslobj)->tp_name, "_ssl._SSLSocket") != 0
            || strcmp(Py_TYPE(incoming)->tp_name, "_ssl.MemoryBIO") != 0
            || Py_TYPE(outgoing) != Py_TYPE(incoming)
            || (size_t)Py_TYPE(sslobj)->tp_basicsize < sizeof(shiftroute_ssl_socket_prefix)
            || (size_t)Py_TYPE(incoming)->tp_basicsize < sizeof(shiftroute_memory_bio_prefix))
            return 0;
        ssl = ((shiftroute_ssl_socket_prefix *)sslobj)->ssl;
        rbio = ((shiftroute_memory_bio_prefix *)incoming)->bio;
        wbio = ((shiftroute_memory_bio_prefix *)outgoing)->bio;
        if (ssl == NULL || rbio == NULL || wbio == NULL || rbio == wbio) return 0;
        if (shiftroute_SSL_get_rbio(ssl) != rbio || shiftroute_SSL_get_wbio(ssl) != wbio) return 0;
        return (size_t)ssl;
    }

    /* Network bytes into the connection's read BIO (a memory BIO grows: it takes everything). */
    static int shiftroute_tls_put(size_t handle, const char *data, size_t size) {
        size_t written = 0;
        if (size == 0) return 1;
        if (shiftroute_BIO_write_ex(shiftroute_SSL_get_rbio((void *)handle), data, size, &written)
            && written == size)
            return 1;
        shiftroute_ERR_clear_error();  /* out of memory: leave nothing queued for the next SSL call */
        return 0;
    }

    /* One SSL_read_ex: 1 and *got on data, else the SSL_get_error code (and the error queue's reason). */
    static int shiftroute_tls_read(size_t handle, char *buf, size_t size, size_t *got, unsigned long *code) {
        /* The error queue is emptied after a failure, not before each call (it costs about 400 instructions
           in OpenSSL 3): what Python's _ssl does too, so the queue is empty whenever a call starts. */
        int ret = shiftroute_SSL_read_ex((void *)handle, buf, size, got);
        if (ret == 1) return 1;
        ret = shiftroute_SSL_get_error((void *)handle, ret);
        if (ret != SHIFTROUTE_SSL_ERROR_WANT_READ && ret != SHIFTROUTE_SSL_ERROR_ZERO_RETURN) {
            /* Neither leaves anything queued (a record not yet whole; close_notify). The last error is the
               one reported, as _ssl does. */
            *code = shiftroute_ERR_peek_last_error();
            shiftroute_ERR_clear_error();
        }
        return -ret;
    }

    static int shiftroute_tls_more(size_t handle) {
        return shiftroute_BIO_ctrl_pending(shiftroute_SSL_get_rbio((void *)handle)) > 0
            || shiftroute_SSL_pending((void *)handle) > 0;
    }

    /* Plaintext out as records: 1, or minus the SSL_get_error code (and the error queue's reason). */
    static int shiftroute_tls_write(size_t handle, const char *data, size_t size, unsigned long *code) {
        size_t written = 0;
        int ret;
        if (size == 0) return 1;  /* nothing to send makes no record */
        ret = shiftroute_SSL_write_ex((void *)handle, data, size, &written);
        if (ret == 1 && written == size) return 1;
        ret = shiftroute_SSL_get_error((void *)handle, ret);
        *code = shiftroute_ERR_peek_last_error();
        shiftroute_ERR_clear_error();
        return -(ret ? ret : SHIFTROUTE_SSL_ERROR_SSL);
    }

    static size_t shiftroute_tls_output_size(size_t handle) {
        return shiftroute_BIO_ctrl_pending(shiftroute_SSL_get_wbio((void *)handle));
    }

    static int shiftroute_tls_take(size_t handle, char *buf, size_t size) {
        size_t got = 0;
        if (shiftroute_BIO_read_ex(shiftroute_SSL_get_wbio((void *)handle), buf, size, &got) && got == size)
            return 1;
        shiftroute_ERR_clear_error();
        return 0;
    }

    static const char *shiftroute_tls_reason(unsigned long code) {
        const char *reason = code ? shiftroute_ERR_reason_error_string(code) : NULL;
        return reason ? reason : "unknown error";
    }
    """
    int tls_loaded "shiftroute_tls_loaded"
    int ERROR_SSL "SHIFTROUTE_SSL_ERROR_SSL"
    int ERROR_WANT_READ "SHIFTROUTE_SSL_ERROR_WANT_READ"
    int ERROR_WANT_WRITE "SHIFTROUTE_SSL_ERROR_WANT_WRITE"
    int ERROR_SYSCALL "SHIFTROUTE_SSL_ERROR_SYSCALL"
    int ERROR_ZERO_RETURN "SHIFTROUTE_SSL_ERROR_ZERO_RETURN"
    char tls_plain "shiftroute_tls_plain"[65536]
    size_t TLS_PLAIN_SIZE "SHIFTROUTE_TLS_PLAIN_SIZE"
    void tls_load "shiftroute_tls_load"(const char* ssl_extension_path, unsigned long expected_version)
    size_t tls_handle "shiftroute_tls_handle"(object sslobj, object incoming, object outgoing)
    bint tls_put "shiftroute_tls_put"(size_t handle, const char* data, size_t size)
    int tls_read "shiftroute_tls_read"(size_t handle, char* buf, size_t size, size_t* got, unsigned long* code)
    bint tls_more "shiftroute_tls_more"(size_t handle)
    int tls_write "shiftroute_tls_write"(size_t handle, const char* data, size_t size, unsigned long* code)
    size_t tls_output_size "shiftroute_tls_output_size"(size_t handle)
    bint tls_take "shiftroute_tls_take"(size_t handle, char* buf, size_t size)
    const char* tls_reason "shiftroute_tls_reason"(unsigned long code)


cdef inline int _load() except -1:
    import ssl

    import _ssl

    import os

    path = getattr(_ssl, "__file__", None)  # None: _ssl built into the interpreter, left alone
    if path is None:
        tls_load(NULL, 0)
    else:
        tls_load(os.fsencode(path), ssl.OPENSSL_VERSION_NUMBER)
    return 0


cdef inline size_t handle_of(object sslobj, object incoming, object outgoing) except? 0:
    if tls_loaded == 0:
        _load()
    return tls_handle(sslobj, incoming, outgoing)


cdef inline object _error(int code, unsigned long reason_code):
    # What ssl.SSLObject raises in the same cases: ZeroReturn never gets here (feed reports it as `closed`),
    # SSL_ERROR_SYSCALL on memory BIOs is an EOF in violation of the protocol, the rest an SSLError whose
    # `reason` is OpenSSL's text for the first queued error (upstream.describe_connect_error shows it).
    import ssl

    reason = tls_reason(reason_code).decode("ascii", "replace")
    if code == ERROR_WANT_READ:  # encrypt during a renegotiation: as SSLObject.write
        return ssl.SSLWantReadError(2, "The operation did not complete (read)")
    if code == ERROR_WANT_WRITE:
        return ssl.SSLWantWriteError(3, "The operation did not complete (write)")
    if code == ERROR_SYSCALL and reason_code == 0:
        exc = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    else:
        exc = ssl.SSLError(1, f"[SSL] {reason}")
        exc.reason = reason
    exc.library = "SSL"
    return exc


cdef inline bytes _output(size_t handle):
    cdef size_t size = tls_output_size(handle)
    if size == 0:
        return b""
    result = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>size)
    if not tls_take(handle, PyBytes_AS_STRING(result), size):
        raise MemoryError("TLS output could not be taken from its memory BIO")
    return result


cdef inline tuple feed(size_t handle, bytes data):
    """TlsLayer.feed after the handshake: (plaintext pieces, bytes to send back, peer closed)."""
    cdef size_t used = 0, got = 0
    cdef unsigned long code = 0
    cdef int ret
    cdef bint closed = False
    cdef list pieces = []
    if data is None:  # typed `bytes` lets None through: it has no buffer
        raise TypeError("TLS input must be bytes, not None")
    if not tls_put(handle, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data)):
        raise MemoryError("TLS input could not be written to its memory BIO")
    while True:
        ret = tls_read(handle, tls_plain + used, TLS_PLAIN_SIZE - used, &got, &code)
        if ret == 1:
            used += got
            if used == TLS_PLAIN_SIZE:
                PyList_Append(pieces, PyBytes_FromStringAndSize(tls_plain, <Py_ssize_t>used))
                used = 0
            if not tls_more(handle):
                # Everything received is decrypted: stop rather than be told SSL_ERROR_WANT_READ.
                break
            continue
        if ret == -ERROR_WANT_READ:
            break
        if ret == -ERROR_ZERO_RETURN:
            closed = True  # close_notify: what came before it is still delivered
            break
        raise _error(-ret, code)
    if used:
        PyList_Append(pieces, PyBytes_FromStringAndSize(tls_plain, <Py_ssize_t>used))
    # Reading application data rarely produces anything to send back (a key update, an alert).
    return pieces, _output(handle), closed


cdef inline bytes encrypt(size_t handle, bytes data):
    """TlsLayer.encrypt after the handshake: `data` as TLS records."""
    cdef unsigned long code = 0
    cdef int ret
    if data is None:
        raise TypeError("TLS output must be bytes, not None")
    ret = tls_write(handle, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), &code)
    if ret != 1:
        raise _error(-ret, code)
    return _output(handle)
