/* Compiled record writers for the connector's hot path (Avro binary, Connect JSON).
 *
 * Each writer walks a *plan*: nested tuples that connectors/speedups.py compiles once
 * per schema from the same schema the pure-Python writers (connectors/avrowriter.py,
 * connectors/jsonwriter.py) use. The rule that keeps the two byte-identical: the C
 * code handles only exact built-in types (dict, list, tuple, str, int, float, bool,
 * bytes, None) on the paths it implements, and for anything else -- a subclass, a
 * value out of range, an unencodable string, any error -- it returns None, and the
 * caller re-runs the record through the Python writer, which then writes it or raises
 * exactly as before. tests/unit/test_codec_speedups.py compares both on every type.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- a growing byte buffer ------------------------------------------------------ */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char small[2048];
} Buf;

static void buf_init(Buf *b) { b->data = b->small; b->len = 0; b->cap = sizeof(b->small); }

static void buf_free(Buf *b) { if (b->data != b->small) PyMem_Free(b->data); }

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + extra) cap *= 2;
    char *data;
    if (b->data == b->small) {
        data = PyMem_Malloc(cap);
        if (data) memcpy(data, b->small, b->len);
    } else {
        data = PyMem_Realloc(b->data, cap);
    }
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, char c) {
    if (b->len >= b->cap && buf_reserve(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

#define FAIL (-1)  /* not handled here: the caller falls back to the Python writer */

/* ---- Avro ------------------------------------------------------------------------ */

enum {
    A_NULL = 0, A_BOOLEAN = 1, A_INT = 2, A_LONG = 3, A_FLOAT = 4, A_DOUBLE = 5,
    A_BYTES = 6, A_STRING = 7, A_DECIMAL = 8, A_RECORD = 9, A_ARRAY = 10, A_UNION = 11,
};

static int put_varint(Buf *b, uint64_t z) {
    if (buf_reserve(b, 10) < 0) return -1;
    unsigned char *p = (unsigned char *)b->data + b->len;
    while (z >= 0x80) { *p++ = (unsigned char)((z & 0x7F) | 0x80); z >>= 7; }
    *p++ = (unsigned char)z;
    b->len = (char *)p - b->data;
    return 0;
}

static int put_long(Buf *b, int64_t v) {
    return put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static int exact_long(PyObject *v, long long lo_bits, int64_t *out) {
    /* an exact int inside [-2**lo_bits, 2**lo_bits) */
    if (!PyLong_CheckExact(v)) return FAIL;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); return FAIL; }
    if (lo_bits < 63 && (x < -(1LL << lo_bits) || x >= (1LL << lo_bits))) return FAIL;
    *out = x;
    return 0;
}

static int put_blob(Buf *b, const char *s, Py_ssize_t n) {
    if (put_long(b, n) < 0) return -1;
    return buf_put(b, s, n);
}

static int put_bytes_obj(Buf *b, PyObject *v) {
    if (PyBytes_CheckExact(v)) return put_blob(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (PyByteArray_CheckExact(v))
        return put_blob(b, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
    return FAIL;
}

static int avro_write(Buf *b, PyObject *plan, PyObject *v);

static int avro_record(Buf *b, PyObject *fields, PyObject *v) {
    /* fields: tuple of (name, plan, has_default, default, null_tag, value_tag);
       null_tag < 0: the field is not a nullable union */
    if (!PyDict_CheckExact(v)) return FAIL;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        PyObject *item = PyDict_GetItemWithError(v, PyTuple_GET_ITEM(f, 0));
        if (item == NULL) {
            if (PyErr_Occurred()) { PyErr_Clear(); return FAIL; }
            if (PyTuple_GET_ITEM(f, 2) != Py_True) return FAIL;  /* KeyError in Python */
            item = PyTuple_GET_ITEM(f, 3);
        }
        long null_tag = PyLong_AsLong(PyTuple_GET_ITEM(f, 4));
        if (null_tag >= 0) {
            if (item == Py_None) { if (buf_byte(b, (char)null_tag) < 0) return -1; continue; }
            if (buf_byte(b, (char)PyLong_AsLong(PyTuple_GET_ITEM(f, 5))) < 0) return -1;
        }
        if (avro_write(b, PyTuple_GET_ITEM(f, 1), item) < 0) return FAIL;
    }
    return 0;
}

static int avro_write(Buf *b, PyObject *plan, PyObject *v) {
    int64_t x;
    switch ((int)PyLong_AsLong(PyTuple_GET_ITEM(plan, 0))) {
    case A_NULL:
        return v == Py_None ? 0 : FAIL;
    case A_BOOLEAN:
        if (v == Py_True) return buf_byte(b, 1);
        if (v == Py_False) return buf_byte(b, 0);
        return FAIL;
    case A_INT:
        if (exact_long(v, 31, &x) < 0) return FAIL;
        return put_long(b, x);
    case A_LONG:
        if (exact_long(v, 63, &x) < 0) return FAIL;
        return put_long(b, x);
    case A_FLOAT: {
        if (!PyFloat_CheckExact(v)) return FAIL;
        if (buf_reserve(b, 4) < 0) return -1;
        if (PyFloat_Pack4(PyFloat_AS_DOUBLE(v), b->data + b->len, 1) < 0) {
            PyErr_Clear();
            return FAIL;
        }
        b->len += 4;
        return 0;
    }
    case A_DOUBLE:
        if (!PyFloat_CheckExact(v)) return FAIL;
        if (buf_reserve(b, 8) < 0) return -1;
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(v), b->data + b->len, 1) < 0) {
            PyErr_Clear();
            return FAIL;
        }
        b->len += 8;
        return 0;
    case A_BYTES:
        return put_bytes_obj(b, v);
    case A_STRING: {
        if (!PyUnicode_CheckExact(v)) return FAIL;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) { PyErr_Clear(); return FAIL; }
        return put_blob(b, s, n);
    }
    case A_DECIMAL: {  /* (A_DECIMAL, scale, unscaled_bytes, Decimal) */
        if (PyBytes_CheckExact(v) || PyByteArray_CheckExact(v)) return put_bytes_obj(b, v);
        if ((PyObject *)Py_TYPE(v) != PyTuple_GET_ITEM(plan, 3)) return FAIL;
        PyObject *raw = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(plan, 2), v,
                                                     PyTuple_GET_ITEM(plan, 1), NULL);
        if (raw == NULL) { PyErr_Clear(); return FAIL; }
        int rc = put_bytes_obj(b, raw);
        Py_DECREF(raw);
        return rc;
    }
    case A_RECORD:
        return avro_record(b, PyTuple_GET_ITEM(plan, 1), v);
    case A_ARRAY: {
        if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v)) return FAIL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        if (n > 0) {
            if (put_long(b, n) < 0) return -1;
            PyObject **items = PySequence_Fast_ITEMS(v);
            for (Py_ssize_t i = 0; i < n; i++)
                if (avro_write(b, PyTuple_GET_ITEM(plan, 1), items[i]) < 0) return FAIL;
        }
        return buf_byte(b, 0);
    }
    case A_UNION:  /* (A_UNION, null_tag, value_tag, plan) */
        if (v == Py_None) return buf_byte(b, (char)PyLong_AsLong(PyTuple_GET_ITEM(plan, 1)));
        if (buf_byte(b, (char)PyLong_AsLong(PyTuple_GET_ITEM(plan, 2))) < 0) return -1;
        return avro_write(b, PyTuple_GET_ITEM(plan, 3), v);
    }
    return FAIL;
}

static PyObject *finish(Buf *b, int rc) {
    PyObject *out = NULL;
    if (rc == 0) out = PyBytes_FromStringAndSize(b->data, b->len);
    buf_free(b);
    if (rc < 0) { PyErr_Clear(); Py_RETURN_NONE; }
    return out;
}

static PyObject *py_avro(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* avro(plan, header: bytes, datum) -> header + body, or None (use the Python writer) */
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "avro(plan, header, datum)");
        return NULL;
    }
    Buf b;
    buf_init(&b);
    int rc = buf_put(&b, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
    if (rc == 0) rc = avro_write(&b, args[0], args[2]);
    return finish(&b, rc);
}

/* ---- Connect JSON -------------------------------------------------------------- */

enum {
    J_PLAIN = 0, J_STRING = 1, J_INTEGER = 2, J_BOOLEAN = 3, J_DOUBLE = 4, J_PYFLOAT = 5,
    J_BYTES = 6, J_STRUCT = 7, J_ARRAY = 8,
};

static const char HEX[] = "0123456789ABCDEF";

/* json.encoder.encode_basestring (ensure_ascii=False) + Jackson's upper-case \u00XX */
static int json_string(Buf *b, PyObject *v) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) { PyErr_Clear(); return FAIL; }
    if (buf_reserve(b, n + 2) < 0) return -1;
    b->data[b->len++] = '"';
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (buf_put(b, s + start, i - start) < 0) return -1;
        start = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = HEX[c >> 4]; esc[5] = HEX[c & 0xF];
            len = 6;
        }
        if (buf_put(b, esc, len) < 0) return -1;
    }
    if (buf_put(b, s + start, n - start) < 0) return -1;
    return buf_byte(b, '"');
}

static int json_int(Buf *b, PyObject *v) {
    /* int.__repr__ of an exact int (bool is not exact) */
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow && !(x == -1 && PyErr_Occurred())) {
        char tmp[24];
        int len = snprintf(tmp, sizeof(tmp), "%lld", x);
        return buf_put(b, tmp, len);
    }
    PyErr_Clear();
    PyObject *text = PyObject_Repr(v);
    if (text == NULL) { PyErr_Clear(); return FAIL; }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = s ? buf_put(b, s, n) : FAIL;
    Py_DECREF(text);
    return rc;
}

static int json_float_repr(Buf *b, double x) {
    /* float.__repr__ ('r' format, '.0' added to integral values) */
    char *text = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) { PyErr_Clear(); return FAIL; }
    int rc = buf_put(b, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return rc;
}

/* the value as json.dumps(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
   writes it, escapes upper-cased; only exact JSON-native types, else FAIL */
static int json_plain(Buf *b, PyObject *v, int depth) {
    if (depth > 100) return FAIL;
    if (v == Py_None) return buf_put(b, "null", 4);
    if (v == Py_True) return buf_put(b, "true", 4);
    if (v == Py_False) return buf_put(b, "false", 5);
    if (PyUnicode_CheckExact(v)) return json_string(b, v);
    if (PyLong_CheckExact(v)) return json_int(b, v);
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!isfinite(x)) return FAIL;  /* allow_nan=False raises: let Python say so */
        return json_float_repr(b, x);
    }
    if (PyDict_CheckExact(v)) {
        if (buf_byte(b, '{') < 0) return -1;
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        int first = 1;
        while (PyDict_Next(v, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) return FAIL;  /* json converts other keys */
            if (!first && buf_byte(b, ',') < 0) return -1;
            first = 0;
            if (json_string(b, key) < 0 || buf_byte(b, ':') < 0) return FAIL;
            if (json_plain(b, item, depth + 1) < 0) return FAIL;
        }
        return buf_byte(b, '}');
    }
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        if (buf_byte(b, '[') < 0) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && buf_byte(b, ',') < 0) return -1;
            if (json_plain(b, items[i], depth + 1) < 0) return FAIL;
        }
        return buf_byte(b, ']');
    }
    return FAIL;
}

static int json_write(Buf *b, PyObject *plan, PyObject *v);

static int json_call(Buf *b, PyObject *fn, PyObject *v) {
    /* a Python formatter returning str (Java's text of a double outside the plain range) */
    PyObject *text = PyObject_CallOneArg(fn, v);
    if (text == NULL) { PyErr_Clear(); return FAIL; }
    int rc = FAIL;
    if (PyUnicode_CheckExact(text)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(text, &n);
        if (s) rc = buf_put(b, s, n); else PyErr_Clear();
    }
    Py_DECREF(text);
    return rc;
}

static int json_write(Buf *b, PyObject *plan, PyObject *v) {
    int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(plan, 0));
    if (v == Py_None) return buf_put(b, "null", 4);
    switch (kind) {
    case J_PLAIN:
        return json_plain(b, v, 0);
    case J_STRING:
        return PyUnicode_CheckExact(v) ? json_string(b, v) : json_plain(b, v, 0);
    case J_INTEGER:
        return PyLong_CheckExact(v) ? json_int(b, v) : json_plain(b, v, 0);
    case J_BOOLEAN:
        if (v == Py_True) return buf_put(b, "true", 4);
        if (v == Py_False) return buf_put(b, "false", 5);
        return json_plain(b, v, 0);
    case J_DOUBLE: {  /* (J_DOUBLE, java_double): repr is Java's text in [1e-3, 1e7) */
        if (!PyFloat_CheckExact(v)) return FAIL;
        double x = PyFloat_AS_DOUBLE(v);
        if (isnan(x)) return buf_put(b, "\"NaN\"", 5);
        if (isinf(x)) return x > 0 ? buf_put(b, "\"Infinity\"", 10)
                                   : buf_put(b, "\"-Infinity\"", 11);
        double m = fabs(x);
        if (m >= 1e-3 && m < 1e7) return json_float_repr(b, x);
        return json_call(b, PyTuple_GET_ITEM(plan, 1), v);
    }
    case J_PYFLOAT: {  /* (J_PYFLOAT, formatter): float32 etc., text from Python */
        if (!PyFloat_CheckExact(v)) return FAIL;
        double x = PyFloat_AS_DOUBLE(v);
        if (isnan(x)) return buf_put(b, "\"NaN\"", 5);
        if (isinf(x)) return x > 0 ? buf_put(b, "\"Infinity\"", 10)
                                   : buf_put(b, "\"-Infinity\"", 11);
        return json_call(b, PyTuple_GET_ITEM(plan, 1), v);
    }
    case J_BYTES: {
        Py_buffer view;
        if (!PyBytes_CheckExact(v) && !PyByteArray_CheckExact(v)) return FAIL;
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) { PyErr_Clear(); return FAIL; }
        static const char B64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *s = view.buf;
        Py_ssize_t n = view.len;
        int rc = buf_reserve(b, (n + 2) / 3 * 4 + 2);
        if (rc == 0) {
            char *p = b->data + b->len;
            *p++ = '"';
            Py_ssize_t i = 0;
            for (; i + 2 < n; i += 3) {
                uint32_t t = (s[i] << 16) | (s[i + 1] << 8) | s[i + 2];
                *p++ = B64[t >> 18]; *p++ = B64[(t >> 12) & 63];
                *p++ = B64[(t >> 6) & 63]; *p++ = B64[t & 63];
            }
            if (n - i == 1) {
                uint32_t t = s[i] << 16;
                *p++ = B64[t >> 18]; *p++ = B64[(t >> 12) & 63]; *p++ = '='; *p++ = '=';
            } else if (n - i == 2) {
                uint32_t t = (s[i] << 16) | (s[i + 1] << 8);
                *p++ = B64[t >> 18]; *p++ = B64[(t >> 12) & 63];
                *p++ = B64[(t >> 6) & 63]; *p++ = '=';
            }
            *p++ = '"';
            b->len = p - b->data;
        }
        PyBuffer_Release(&view);
        return rc;
    }
    case J_STRUCT: {  /* (J_STRUCT, ((prefix bytes '"name":', name, plan), ...)) */
        if (!PyDict_CheckExact(v)) return FAIL;  /* Python calls value.get */
        PyObject *fields = PyTuple_GET_ITEM(plan, 1);
        Py_ssize_t n = PyTuple_GET_SIZE(fields);
        if (buf_byte(b, '{') < 0) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *f = PyTuple_GET_ITEM(fields, i);
            PyObject *prefix = PyTuple_GET_ITEM(f, 0);
            if (i && buf_byte(b, ',') < 0) return -1;
            if (buf_put(b, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix)) < 0) return -1;
            PyObject *item = PyDict_GetItemWithError(v, PyTuple_GET_ITEM(f, 1));
            if (item == NULL) {
                if (PyErr_Occurred()) { PyErr_Clear(); return FAIL; }
                item = Py_None;
            }
            if (json_write(b, PyTuple_GET_ITEM(f, 2), item) < 0) return FAIL;
        }
        return buf_byte(b, '}');
    }
    case J_ARRAY: {
        if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v)) return FAIL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        if (buf_byte(b, '[') < 0) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && buf_byte(b, ',') < 0) return -1;
            if (json_write(b, PyTuple_GET_ITEM(plan, 1), items[i]) < 0) return FAIL;
        }
        return buf_byte(b, ']');
    }
    }
    return FAIL;
}

static PyObject *py_json(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* json(plan, head: bytes, payload) -> head + payload text + b"}", or None */
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "json(plan, head, payload)");
        return NULL;
    }
    Buf b;
    buf_init(&b);
    int rc = buf_put(&b, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
    if (rc == 0) rc = json_write(&b, args[0], args[2]);
    if (rc == 0) rc = buf_byte(&b, '}');
    return finish(&b, rc);
}


/* ---- pgoutput tuples and row values ------------------------------------------------ */

static PyObject *py_pg_tuple(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* pg_tuple(buf: bytes, pos, unchanged) -> (values tuple, next pos), or None when the
       data is anything but well-formed 't'/'n'/'u'/'b' columns (Python then decodes it
       and names the fault): connectors/pgoutput.py _tuple */
    if (nargs != 3 || !PyBytes_CheckExact(args[0])) Py_RETURN_NONE;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos < 0 || pos + 2 > size) { PyErr_Clear(); Py_RETURN_NONE; }
    Py_ssize_t count = (buf[pos] << 8) | buf[pos + 1];
    pos += 2;
    PyObject *values = PyTuple_New(count);
    if (values == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (pos >= size) goto decline;
        unsigned char kind = buf[pos++];
        PyObject *item;
        if (kind == 't' || kind == 'b') {
            if (pos + 4 > size) goto decline;
            uint32_t len = ((uint32_t)buf[pos] << 24) | ((uint32_t)buf[pos + 1] << 16)
                         | ((uint32_t)buf[pos + 2] << 8) | buf[pos + 3];
            pos += 4;
            if ((Py_ssize_t)len > size - pos) goto decline;
            item = kind == 't'
                ? PyUnicode_DecodeUTF8((const char *)buf + pos, len, "surrogateescape")
                : PyBytes_FromStringAndSize((const char *)buf + pos, len);
            if (item == NULL) { PyErr_Clear(); goto decline; }
            pos += len;
        } else if (kind == 'n') {
            item = Py_NewRef(Py_None);
        } else if (kind == 'u') {
            item = Py_NewRef(args[2]);
        } else {
            goto decline;
        }
        PyTuple_SET_ITEM(values, i, item);
    }
    PyObject *next = PyLong_FromSsize_t(pos);
    if (next == NULL) { Py_DECREF(values); return NULL; }
    PyObject *out = PyTuple_Pack(2, values, next);
    Py_DECREF(values);
    Py_DECREF(next);
    return out;
decline:
    Py_DECREF(values);
    Py_RETURN_NONE;
}

static PyObject *py_row_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* row_values(converters, tuple_data, unchanged) -> {field: value}, or None (a
       converter raised, or the shapes differ: Python re-runs it and reports the column):
       TableSchema.row_to_values. converters: (field, convert, optional, fallback,
       placeholder, ...) per column */
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1]))
        Py_RETURN_NONE;
    PyObject *converters = args[0], *data = args[1], *unchanged = args[2];
    Py_ssize_t n = PyTuple_GET_SIZE(converters);
    if (PyTuple_GET_SIZE(data) != n) Py_RETURN_NONE;
    PyObject *values = PyDict_New();
    if (values == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *conv = PyTuple_GET_ITEM(converters, i);
        PyObject *text = PyTuple_GET_ITEM(data, i);
        PyObject *value;
        if (text == Py_None) {
            value = Py_NewRef(Py_None);
        } else if (text == unchanged) {
            value = Py_NewRef(PyTuple_GET_ITEM(conv, 4));
        } else {
            value = PyObject_CallOneArg(PyTuple_GET_ITEM(conv, 1), text);
            if (value == NULL) { PyErr_Clear(); Py_DECREF(values); Py_RETURN_NONE; }
        }
        if (value == Py_None && PyTuple_GET_ITEM(conv, 2) != Py_True) {
            int truth = PyObject_IsTrue(PyTuple_GET_ITEM(conv, 2));
            if (truth < 0) { PyErr_Clear(); Py_DECREF(value); Py_DECREF(values); Py_RETURN_NONE; }
            if (!truth) { Py_DECREF(value); value = Py_NewRef(PyTuple_GET_ITEM(conv, 3)); }
        }
        int rc = PyDict_SetItem(values, PyTuple_GET_ITEM(conv, 0), value);
        Py_DECREF(value);
        if (rc < 0) { Py_DECREF(values); return NULL; }
    }
    return values;
}

static PyMethodDef methods[] = {
    {"avro", (PyCFunction)(void (*)(void))py_avro, METH_FASTCALL,
     "avro(plan, header, datum) -> bytes | None"},
    {"json", (PyCFunction)(void (*)(void))py_json, METH_FASTCALL,
     "json(plan, head, payload) -> bytes | None"},
    {"pg_tuple", (PyCFunction)(void (*)(void))py_pg_tuple, METH_FASTCALL,
     "pg_tuple(buf, pos, unchanged) -> (values, pos) | None"},
    {"row_values", (PyCFunction)(void (*)(void))py_row_values, METH_FASTCALL,
     "row_values(converters, tuple_data, unchanged) -> dict | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "connectors._speedups",
    "Compiled Avro / Connect JSON record writers (see connectors/speedups.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
