/* The SigV4 hot path in C: the same check as sigv4.Verifier.verify_fast, in one call.
 *
 * Why: on a core shared with a model, the router's Python is cache-cold on every request,
 * and the header-signed check cost 14-24 us there against a budget of 8 (see
 * docs/benchmarks.md). This does the same work on bytes, hashing with OpenSSL's SHA-256
 * directly (no EVP dispatch), and costs about 1 us warm.
 *
 * Contract, identical to the Python fast path so either may run (tests compare them):
 *   verify(method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
 *          body: bytes, now: float, skew: float, signing_keys: dict[bytes, bytes])
 *       -> (key_id, signed) | bytes | None
 * It returns (access key id, SignedHeaders) when the request is header-signed in the shape
 * botocore writes and the signature matches. It returns None for anything else (another
 * shape, a date outside the skew window, a wrong signature), and the caller then runs the
 * general Python verifier, which decides and words the error. So this code only ever
 * accepts; it never rejects on its own. signing_keys maps the credential as sent
 * ("key/date/region/service/aws4_request") to its 32-byte signing key; for a credential it
 * does not hold, verify returns that credential (bytes) for the caller to look up and retry.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co: direct, without the EVP provider lookup */
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#define MAX_HEADERS 64
#define PREFIX "AWS4-HMAC-SHA256 Credential="
#define SIGNED_AT ", SignedHeaders="
#define SIGNATURE_AT ", Signature="

static const char HEX[] = "0123456789abcdef";
static const char EMPTY_SHA256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

static int is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int is_lower_alnum_dash(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int segment_char(char c) { return is_alnum(c) || c == '_' || c == '~' || c == '-' || c == '.'; }

static void to_hex(const unsigned char *digest, char *out) {
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

/* SHA-256 over many short pieces: gathered in a buffer, handed to OpenSSL in few calls
 * (each SHA256_Update costs more than copying a few bytes). */
typedef struct {
    SHA256_CTX ctx;
    size_t n;
    unsigned char buf[1024];
} hasher;

static void h_init(hasher *h) {
    SHA256_Init(&h->ctx);
    h->n = 0;
}

static void h_add(hasher *h, const void *p, size_t n) {
    if (h->n + n > sizeof h->buf) {
        SHA256_Update(&h->ctx, h->buf, h->n);
        h->n = 0;
        if (n > sizeof h->buf) {
            SHA256_Update(&h->ctx, p, n);
            return;
        }
    }
    memcpy(h->buf + h->n, p, n);
    h->n += n;
}

static void h_final(hasher *h, unsigned char out[SHA256_DIGEST_LENGTH]) {
    SHA256_Update(&h->ctx, h->buf, h->n);
    SHA256_Final(out, &h->ctx);
}

/* "/" or "/seg(/seg)*" with an optional trailing "/": segments [A-Za-z0-9_~-][A-Za-z0-9_.~-]*,
 * so no empty, "." or ".." segment and nothing to quote: the path is its own canonical URI. */
static int plain_path(const char *p, Py_ssize_t n) {
    if (n < 1 || p[0] != '/')
        return 0;
    Py_ssize_t i = 1;
    while (i < n) {
        if (p[i] == '.' || !segment_char(p[i]))
            return 0;
        for (i++; i < n && segment_char(p[i]); i++)
            ;
        if (i == n)
            return 1;
        if (p[i] != '/')
            return 0;
        i++; /* a trailing "/" ends the loop */
    }
    return 1;
}

/* Consumes `lit` at *pos, or fails. */
static int expect(span s, Py_ssize_t *pos, const char *lit) {
    size_t n = strlen(lit);
    if (s.n - *pos < (Py_ssize_t)n || memcmp(s.p + *pos, lit, n) != 0)
        return 0;
    *pos += n;
    return 1;
}

/* Consumes one or more characters accepted by `ok`, or fails. */
static int run_of(span s, Py_ssize_t *pos, int (*ok)(char), span *out) {
    Py_ssize_t start = *pos;
    while (*pos < s.n && ok(s.p[*pos]))
        (*pos)++;
    out->p = s.p + start;
    out->n = *pos - start;
    return out->n > 0;
}

static int key_char(char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; }
static int names_char(char c) { return is_lower_alnum_dash(c) || c == ';'; }
static int hex_char(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

/* Seconds since the epoch for "YYYYMMDDTHHMMSSZ", or -1 if it is not a valid UTC stamp. */
static double parse_stamp(span s) {
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s.n != 16 || s.p[8] != 'T' || s.p[15] != 'Z')
        return -1;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !is_digit(s.p[i]))
            return -1;
    long v[6];
    const int at[] = {0, 4, 6, 9, 11, 13}, len[] = {4, 2, 2, 2, 2, 2};
    for (int k = 0; k < 6; k++) {
        v[k] = 0;
        for (int i = 0; i < len[k]; i++)
            v[k] = v[k] * 10 + (s.p[at[k] + i] - '0');
    }
    long y = v[0], m = v[1], d = v[2];
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > month_days[m - 1] + (m == 2 && leap) || v[3] > 23 || v[4] > 59
        || v[5] > 59)
        return -1;
    /* days from civil (H. Hinnant's algorithm) */
    long yy = y - (m <= 2), era = yy / 400, yoe = yy - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = era * 146097 + doe - 719468;
    return (double)days * 86400.0 + v[3] * 3600.0 + v[4] * 60.0 + v[5];
}

/* Printable ASCII only; tabs, controls and other bytes go to the general path. */
static int plain_value(span v) {
    for (Py_ssize_t i = 0; i < v.n; i++)
        if ((unsigned char)v.p[i] < 0x20 || (unsigned char)v.p[i] > 0x7e)
            return 0;
    return 1;
}

/* Hashes a value the way botocore signs it: runs of spaces collapsed, ends trimmed. */
static void add_trimmed(hasher *h, span v) {
    Py_ssize_t i = 0;
    int first = 1;
    while (i < v.n) {
        while (i < v.n && v.p[i] == ' ')
            i++;
        Py_ssize_t start = i;
        while (i < v.n && v.p[i] != ' ')
            i++;
        if (i > start) {
            if (!first)
                h_add(h, " ", 1);
            h_add(h, v.p + start, i - start);
            first = 0;
        }
    }
}

static void hmac_sha256_hex(const unsigned char key[32], span parts[], int nparts, char out_hex[64]) {
    unsigned char pad[64], inner[SHA256_DIGEST_LENGTH], outer[SHA256_DIGEST_LENGTH];
    hasher h;
    memset(pad, 0x36, sizeof pad);
    for (int i = 0; i < 32; i++)
        pad[i] ^= key[i];
    h_init(&h);
    h_add(&h, pad, sizeof pad);
    for (int i = 0; i < nparts; i++)
        h_add(&h, parts[i].p, parts[i].n);
    h_final(&h, inner);
    memset(pad, 0x5c, sizeof pad);
    for (int i = 0; i < 32; i++)
        pad[i] ^= key[i];
    h_init(&h);
    h_add(&h, pad, sizeof pad);
    h_add(&h, inner, sizeof inner);
    h_final(&h, outer);
    OPENSSL_cleanse(pad, sizeof pad);
    to_hex(outer, out_hex);
}

/* The spans point into the bytes of `headers_o` (the ASGI list). No Python code can run until
 * the last span is read (nothing here allocates a GC-tracked object before that), so nothing
 * can change the list meanwhile. */
static PyObject *check(PyObject *method_o, PyObject *path_o, PyObject *query_o, PyObject *headers_o,
                       PyObject *body_o, double now, double skew, PyObject *signing_keys) {

    Py_ssize_t method_n;
    const char *method = PyUnicode_AsUTF8AndSize(method_o, &method_n);
    if (method == NULL)
        return NULL;
    if (method_n < 1 || method_n > 32 || PyBytes_GET_SIZE(query_o) != 0)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < method_n; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            Py_RETURN_NONE;
    span path = {PyBytes_AS_STRING(path_o), PyBytes_GET_SIZE(path_o)};
    if (!plain_path(path.p, path.n))
        Py_RETURN_NONE;

    /* headers: bytes pairs, no name twice (ASGI gives names lower-cased) */
    Py_ssize_t nh = PyList_GET_SIZE(headers_o);
    if (nh > MAX_HEADERS)
        Py_RETURN_NONE;
    span names[MAX_HEADERS], values[MAX_HEADERS];
    span auth = {NULL, 0}, stamp = {NULL, 0}, claimed = {NULL, 0};
    for (Py_ssize_t i = 0; i < nh; i++) {
        PyObject *pair = PyList_GET_ITEM(headers_o, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_NONE;
        PyObject *n = PyTuple_GET_ITEM(pair, 0), *v = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_Check(n) || !PyBytes_Check(v))
            Py_RETURN_NONE;
        names[i] = (span){PyBytes_AS_STRING(n), PyBytes_GET_SIZE(n)};
        values[i] = (span){PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v)};
        for (Py_ssize_t j = 0; j < i; j++)
            if (names[j].n == names[i].n && memcmp(names[j].p, names[i].p, names[i].n) == 0)
                Py_RETURN_NONE;
        if (names[i].n == 13 && memcmp(names[i].p, "authorization", 13) == 0)
            auth = values[i];
        else if (names[i].n == 10 && memcmp(names[i].p, "x-amz-date", 10) == 0)
            stamp = values[i];
        else if (names[i].n == 20 && memcmp(names[i].p, "x-amz-content-sha256", 20) == 0)
            claimed = values[i];
    }
    if (auth.p == NULL || stamp.p == NULL)
        Py_RETURN_NONE;

    /* AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
     *   SignedHeaders=<names>, Signature=<64 hex> -- exactly as botocore writes it */
    Py_ssize_t pos = 0;
    span key_id, date, region, service, scope, signed_names, signature;
    if (!expect(auth, &pos, PREFIX) || !run_of(auth, &pos, key_char, &key_id) || !expect(auth, &pos, "/"))
        Py_RETURN_NONE;
    scope.p = auth.p + pos;
    if (!run_of(auth, &pos, is_digit, &date) || date.n != 8 || !expect(auth, &pos, "/")
        || !run_of(auth, &pos, is_lower_alnum_dash, &region) || !expect(auth, &pos, "/")
        || !run_of(auth, &pos, is_lower_alnum_dash, &service) || !expect(auth, &pos, "/aws4_request"))
        Py_RETURN_NONE;
    scope.n = auth.p + pos - scope.p;
    Py_ssize_t pos_scope_end = pos;
    if (!expect(auth, &pos, SIGNED_AT) || !run_of(auth, &pos, names_char, &signed_names)
        || !expect(auth, &pos, SIGNATURE_AT) || !run_of(auth, &pos, hex_char, &signature) || signature.n != 64
        || pos != auth.n)
        Py_RETURN_NONE;
    if (stamp.n < 8 || memcmp(date.p, stamp.p, 8) != 0)
        Py_RETURN_NONE;
    double signed_at = parse_stamp(stamp);
    if (signed_at < 0 || !(now - signed_at >= -skew && now - signed_at <= skew))
        Py_RETURN_NONE;

    /* canonical headers, in SignedHeaders order; "host" must be one of them */
    int canon[MAX_HEADERS]; /* indexes into names/values */
    int ncanon = 0, has_host = 0;
    for (Py_ssize_t start = 0; start <= signed_names.n;) {
        const char *semi = memchr(signed_names.p + start, ';', signed_names.n - start);
        Py_ssize_t end = semi ? semi - signed_names.p : signed_names.n;
        span name = {signed_names.p + start, end - start};
        int found = -1;
        for (Py_ssize_t i = 0; i < nh && found < 0; i++)
            if (names[i].n == name.n && name.n > 0 && memcmp(names[i].p, name.p, name.n) == 0)
                found = (int)i;
        if (found < 0 || ncanon == MAX_HEADERS || !plain_value(values[found]))
            Py_RETURN_NONE;
        has_host |= name.n == 4 && memcmp(name.p, "host", 4) == 0;
        canon[ncanon++] = found;
        start = end + 1;
    }
    if (!has_host)
        Py_RETURN_NONE;

    /* payload hash: x-amz-content-sha256 if sent (it must match the body), else the body's */
    char payload_hex[64];
    Py_ssize_t body_n = PyBytes_GET_SIZE(body_o);
    if (body_n == 0) {
        memcpy(payload_hex, EMPTY_SHA256, 64);
    } else {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        const unsigned char *body = (const unsigned char *)PyBytes_AS_STRING(body_o);
        hasher h; /* not SHA256(): OpenSSL 3 routes the one-shot through EVP (300 ns for 8 bytes) */
        h_init(&h);
        h_add(&h, body, body_n);
        h_final(&h, digest);
        to_hex(digest, payload_hex);
    }
    span payload = {payload_hex, 64};
    if (claimed.p != NULL) {
        if (claimed.n != 64)
            Py_RETURN_NONE;
        for (int i = 0; i < 64; i++) {
            char c = claimed.p[i];
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            if (c != payload_hex[i])
                Py_RETURN_NONE;
        }
        payload = claimed;
    }

    /* the signing key, from the caller's cache: unknown credentials go back to the caller */
    PyObject *credential = PyBytes_FromStringAndSize(key_id.p, auth.p + pos_scope_end - key_id.p);
    if (credential == NULL)
        return NULL;
    PyObject *key_o = PyDict_GetItemWithError(signing_keys, credential); /* borrowed */
    if (key_o == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(credential);
            return NULL;
        }
        return credential;
    }
    Py_DECREF(credential);
    if (!PyBytes_Check(key_o) || PyBytes_GET_SIZE(key_o) != 32) {
        PyErr_SetString(PyExc_TypeError, "signing keys must be 32 bytes");
        return NULL;
    }
    unsigned char key[32];
    memcpy(key, PyBytes_AS_STRING(key_o), 32);

    /* canonical request: METHOD \n path \n (empty query) \n headers \n signed \n payload */
    unsigned char creq_digest[SHA256_DIGEST_LENGTH];
    hasher h;
    h_init(&h);
    h_add(&h, method, method_n);
    h_add(&h, "\n", 1);
    h_add(&h, path.p, path.n);
    h_add(&h, "\n\n", 2);
    for (int i = 0; i < ncanon; i++) {
        int at = canon[i];
        h_add(&h, names[at].p, names[at].n);
        h_add(&h, ":", 1);
        add_trimmed(&h, values[at]);
        h_add(&h, "\n", 1);
    }
    h_add(&h, "\n", 1);
    h_add(&h, signed_names.p, signed_names.n);
    h_add(&h, "\n", 1);
    h_add(&h, payload.p, payload.n);
    h_final(&h, creq_digest);
    char creq_hex[64];
    to_hex(creq_digest, creq_hex);

    /* string to sign, and its HMAC under the signing key */
    span sts[] = {{"AWS4-HMAC-SHA256\n", 17}, stamp, {"\n", 1}, scope, {"\n", 1}, {creq_hex, 64}};
    char mac_hex[64];
    hmac_sha256_hex(key, sts, 6, mac_hex);
    OPENSSL_cleanse(key, sizeof key);
    if (CRYPTO_memcmp(mac_hex, signature.p, 64) != 0)
        Py_RETURN_NONE;
    /* the strings first (not GC-tracked): the tuple's allocation may run a collection */
    PyObject *key_s = PyUnicode_FromStringAndSize(key_id.p, key_id.n);
    PyObject *signed_s = key_s ? PyUnicode_FromStringAndSize(signed_names.p, signed_names.n) : NULL;
    PyObject *result = signed_s ? PyTuple_Pack(2, key_s, signed_s) : NULL;
    Py_XDECREF(key_s);
    Py_XDECREF(signed_s);
    return result;
}

static PyObject *verify(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "verify() takes 8 arguments");
        return NULL;
    }
    if (!PyUnicode_Check(args[0]) || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) || !PyList_Check(args[3])
        || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "verify(method: str, raw_path: bytes, query: bytes, headers: list, body: bytes, ...)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[5]), skew = PyFloat_AsDouble(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "signing_keys must be a dict");
        return NULL;
    }
    return check(args[0], args[1], args[2], args[3], args[4], now, skew, args[7]);
}

static PyMethodDef methods[] = {
    {"verify", (PyCFunction)(void (*)(void))verify, METH_FASTCALL,
     "verify(method, raw_path, query, headers, body, now, skew, signing_keys) -> (key_id, signed) | bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_sigv4c", .m_doc = "SigV4 hot path (see sigv4.py)", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__sigv4c(void) { return PyModule_Create(&module); }
