/* Compiled Avro reader: bytes -> the Python values fastavro gives (streams/avrodecode.py).
 *
 * `Reader(plan)` compiles a *plan* (nested tuples made by streams/avrodecode.py from
 * the writer schema, by the same rules as its generated Python reader) into a tree of
 * C nodes once per schema; `reader(data, pos) -> (value, next pos)` then walks it. The
 * values are built exactly as the Python reader builds them (dicts in field order,
 * str decoded strictly as UTF-8, bytes, bool, int, float, Decimals made by the same
 * Python function): tests/unit/test_streams_avrodecode.py compares both, and fastavro.
 *
 * Every read is bounds-checked: truncated bytes raise EOFError, a bad varint, length,
 * enum index or union branch ValueError, bad UTF-8 UnicodeDecodeError; the caller turns
 * them into one SerializationError naming the schema id. Skipped fields (a projection)
 * are walked without building anything, but their text is still checked as UTF-8, as
 * the Python reader does, so a projection fails exactly where a full decode fails.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* node kinds: keep in step with streams/avrodecode.py (_P_*) */
enum {
    K_NULL = 0, K_BOOLEAN = 1, K_LONG = 2, K_FLOAT = 3, K_DOUBLE = 4, K_BYTES = 5,
    K_STRING = 6, K_FIXED = 7, K_ENUM = 8, K_RECORD = 9, K_ARRAY = 10, K_MAP = 11,
    K_UNION = 12, K_DECIMAL = 13,
};

#define MAX_DEPTH 64  /* plan nesting; deeper schemas stay with the Python reader */

typedef struct Node {
    int kind;
    Py_ssize_t size;          /* fixed: byte size; record/union: number of children */
    Py_ssize_t nchildren;
    struct Node **children;   /* record fields, union branches, [item] / [value], [raw] */
    PyObject **names;         /* record: field names (borrowed from the plan) */
    char *skip;               /* record: 1 = walk this field without building it */
    PyObject *symbols;        /* enum: tuple of str (borrowed) */
    PyObject *convert;        /* decimal: convert(raw, precision, scale) (borrowed) */
    PyObject *precision, *scale;
    int min_width;            /* array/map: 1 when every item takes at least a byte */
} Node;

static void node_free(Node *node) {
    if (node == NULL) return;
    if (node->children != NULL) {
        for (Py_ssize_t i = 0; i < node->nchildren; i++) node_free(node->children[i]);
        PyMem_Free(node->children);
    }
    PyMem_Free(node->names);
    PyMem_Free(node->skip);
    PyMem_Free(node);
}

static PyObject *plan_error(const char *what) {
    PyErr_Format(PyExc_ValueError, "bad Avro read plan: %s", what);
    return NULL;
}

static long plan_int(PyObject *plan, Py_ssize_t i) {
    if (PyTuple_GET_SIZE(plan) <= i || !PyLong_Check(PyTuple_GET_ITEM(plan, i))) return -1;
    return PyLong_AsLong(PyTuple_GET_ITEM(plan, i));
}

static int width_of(Node *node) {
    /* a lower bound of the bytes one datum of `node` takes (0 or 1 is all that matters) */
    switch (node->kind) {
    case K_NULL: return 0;
    case K_FIXED: return node->size > 0;
    case K_RECORD:
        for (Py_ssize_t i = 0; i < node->nchildren; i++)
            if (width_of(node->children[i]) > 0) return 1;
        return 0;
    case K_DECIMAL: return width_of(node->children[0]);
    default: return 1;  /* varints, lengths, union branches, floats take a byte at least */
    }
}

static Node *compile_node(PyObject *plan, int depth) {
    if (depth > MAX_DEPTH) { plan_error("nested too deeply"); return NULL; }
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) < 1) { plan_error("not a tuple"); return NULL; }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) { PyErr_NoMemory(); return NULL; }
    node->kind = (int)plan_int(plan, 0);
    Py_ssize_t n = PyTuple_GET_SIZE(plan);
    switch (node->kind) {
    case K_NULL: case K_BOOLEAN: case K_LONG: case K_FLOAT: case K_DOUBLE: case K_BYTES:
    case K_STRING:
        return node;
    case K_FIXED:
        node->size = plan_int(plan, 1);
        if (node->size < 0) goto bad;
        return node;
    case K_ENUM:
        if (n != 2 || !PyTuple_Check(PyTuple_GET_ITEM(plan, 1))) goto bad;
        node->symbols = PyTuple_GET_ITEM(plan, 1);
        return node;
    case K_ARRAY: case K_MAP: case K_DECIMAL: {
        /* (ARRAY, item) (MAP, value) (DECIMAL, raw, convert, precision, scale) */
        if (n < 2 || (node->kind == K_DECIMAL && n != 5)) goto bad;
        node->children = PyMem_Calloc(1, sizeof(Node *));
        if (node->children == NULL) { PyErr_NoMemory(); goto fail; }
        node->nchildren = 1;
        node->children[0] = compile_node(PyTuple_GET_ITEM(plan, 1), depth + 1);
        if (node->children[0] == NULL) goto fail;
        node->min_width = node->kind == K_MAP || width_of(node->children[0]) > 0;
        if (node->kind == K_DECIMAL) {
            node->convert = PyTuple_GET_ITEM(plan, 2);
            node->precision = PyTuple_GET_ITEM(plan, 3);
            node->scale = PyTuple_GET_ITEM(plan, 4);
            int raw = node->children[0]->kind;
            if (!PyCallable_Check(node->convert) || (raw != K_BYTES && raw != K_FIXED)) goto bad;
        }
        return node;
    }
    case K_RECORD: case K_UNION: {
        /* (RECORD, ((name, plan, skip), ...)) (UNION, (plan, ...)) */
        if (n != 2 || !PyTuple_Check(PyTuple_GET_ITEM(plan, 1))) goto bad;
        PyObject *items = PyTuple_GET_ITEM(plan, 1);
        node->size = PyTuple_GET_SIZE(items);
        node->children = PyMem_Calloc(node->size + 1, sizeof(Node *));
        node->nchildren = node->size;
        if (node->kind == K_RECORD) {
            node->names = PyMem_Calloc(node->size + 1, sizeof(PyObject *));
            node->skip = PyMem_Calloc(node->size + 1, 1);
        }
        if (node->children == NULL || (node->kind == K_RECORD && (!node->names || !node->skip))) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < node->size; i++) {
            PyObject *item = PyTuple_GET_ITEM(items, i);
            if (node->kind == K_RECORD) {
                if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3
                        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(item, 0))) goto bad;
                node->names[i] = PyTuple_GET_ITEM(item, 0);
                node->skip[i] = (char)PyObject_IsTrue(PyTuple_GET_ITEM(item, 2));
                item = PyTuple_GET_ITEM(item, 1);
            }
            node->children[i] = compile_node(item, depth + 1);
            if (node->children[i] == NULL) goto fail;
        }
        return node;
    }
    default:
        goto bad;
    }
bad:
    plan_error("unknown node");
fail:
    node_free(node);
    return NULL;
}

/* ---- reading ---------------------------------------------------------------------- */

/* Short ASCII text repeats from record to record (table and schema names, ops,
   statuses, kinds): each Reader keeps the last str it made per hash slot and hands
   out the same (immutable) object again when the bytes are equal, instead of
   decoding and allocating a new one. Equal values either way; a dry run holding
   every record also holds one copy of each instead of thousands. */
#define TEXT_CACHE_SLOTS 512  /* a power of two */
#define TEXT_CACHE_MAX_LEN 32

typedef struct {
    const unsigned char *data;
    Py_ssize_t pos, end;
    PyObject **texts;  /* the Reader's TEXT_CACHE_SLOTS slots */
} Cursor;

static PyObject *make_text(Cursor *c, const unsigned char *p, Py_ssize_t n) {
    if (n > TEXT_CACHE_MAX_LEN)
        return PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    uint32_t hash = 2166136261u;  /* FNV-1a */
    unsigned char high = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        high |= p[i];
        hash = (hash ^ p[i]) * 16777619u;
    }
    if (high & 0x80)  /* not ASCII: decoded (and checked) every time */
        return PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    PyObject **slot = &c->texts[(hash ^ (uint32_t)n) & (TEXT_CACHE_SLOTS - 1)];
    PyObject *known = *slot;
    if (known != NULL && PyUnicode_GET_LENGTH(known) == n
            && memcmp(PyUnicode_1BYTE_DATA(known), p, (size_t)n) == 0) {
        Py_INCREF(known);
        return known;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (text == NULL) return NULL;
    Py_INCREF(text);
    Py_XSETREF(*slot, text);
    return text;
}

static int truncated(Cursor *c) {
    PyErr_Format(PyExc_EOFError, "truncated: needs more than the %zd bytes there are", c->end);
    return -1;
}

static inline int read_varint(Cursor *c, int64_t *out) {
    /* zigzag varint of at most 10 bytes, inside 64 bits */
    uint64_t r = 0;
    int shift = 0;
    for (;;) {
        if (c->pos >= c->end) return truncated(c);
        unsigned char b = c->data[c->pos++];
        if (shift == 63 && b > 1) {
            PyErr_SetString(PyExc_ValueError, "varint does not fit in 64 bits");
            return -1;
        }
        r |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) break;
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes");
            return -1;
        }
    }
    *out = (int64_t)(r >> 1) ^ -(int64_t)(r & 1);
    return 0;
}

/* a length or an enum index (never negative); the caller checks it against the data */
static inline int read_length(Cursor *c, Py_ssize_t *out) {
    int64_t n;
    if (c->pos < c->end && !(c->data[c->pos] & 0x81)) {  /* one byte, even: 0..63 */
        n = c->data[c->pos++] >> 1;
    } else {
        if (read_varint(c, &n) < 0) return -1;
        if (n < 0) {
            PyErr_Format(PyExc_ValueError, "negative length %lld", (long long)n);
            return -1;
        }
    }
    *out = (Py_ssize_t)n;
    return 0;
}

static int utf8_check(const unsigned char *s, Py_ssize_t n) {
    /* skipped text: ASCII passes at once; anything else is decoded and dropped so that
       a projection rejects exactly the bytes a full decode rejects */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] & 0x80) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
            if (text == NULL) return -1;
            Py_DECREF(text);
            return 0;
        }
    }
    return 0;
}

/* Reads one datum of `node`; returns a new reference, or (build == 0) Py_None borrowed
   as a "walked" marker that must not be DECREF'd; NULL with an exception on error. */
static PyObject *read_node(Node *node, Cursor *c, int build);

static PyObject *read_record(Node *node, Cursor *c, int build) {
    PyObject *out = NULL;
    if (build) {
        out = _PyDict_NewPresized(node->size);
        if (out == NULL) return NULL;
    }
    for (Py_ssize_t i = 0; i < node->size; i++) {
        int keep = build && !node->skip[i];
        PyObject *value = read_node(node->children[i], c, keep);
        if (value == NULL) { Py_XDECREF(out); return NULL; }
        if (keep) {
            int rc = PyDict_SetItem(out, node->names[i], value);
            Py_DECREF(value);
            if (rc < 0) { Py_DECREF(out); return NULL; }
        }
    }
    return build ? out : Py_None;
}

static int read_block_count(Cursor *c, int64_t *count) {
    if (read_varint(c, count) < 0) return -1;
    if (*count < 0) {  /* a negative count is followed by the block's byte size */
        int64_t ignored;
        if (*count == INT64_MIN) { PyErr_SetString(PyExc_ValueError, "bad block count"); return -1; }
        *count = -*count;
        if (read_varint(c, &ignored) < 0) return -1;
    }
    return 0;
}

static PyObject *read_sequence(Node *node, Cursor *c, int build) {
    int is_map = node->kind == K_MAP;
    PyObject *out = NULL;
    if (build) {
        out = is_map ? PyDict_New() : PyList_New(0);
        if (out == NULL) return NULL;
    }
    for (;;) {
        int64_t count;
        if (read_block_count(c, &count) < 0) goto fail;
        if (count == 0) break;
        /* every item takes a byte at least, except zero-width ones (null, an empty
           record, fixed of size 0): a count beyond what is left is corrupt data, not
           a loop of 2**62 turns */
        if (count > (c->end - c->pos) * (int64_t)(node->min_width ? 1 : 4096) + 4096) {
            PyErr_Format(PyExc_ValueError, "block of %lld items in %zd bytes", (long long)count,
                         c->end - c->pos);
            goto fail;
        }
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = NULL;
            if (is_map) {
                Py_ssize_t n;
                if (read_length(c, &n) < 0) goto fail;
                if (n > c->end - c->pos) { truncated(c); goto fail; }
                if (build) {
                    key = make_text(c, c->data + c->pos, n);
                    if (key == NULL) goto fail;
                } else if (utf8_check(c->data + c->pos, n) < 0) {
                    goto fail;
                }
                c->pos += n;
            }
            PyObject *item = read_node(node->children[0], c, build);
            if (item == NULL) { Py_XDECREF(key); goto fail; }
            if (build) {
                int rc = is_map ? PyDict_SetItem(out, key, item) : PyList_Append(out, item);
                Py_XDECREF(key);
                Py_DECREF(item);
                if (rc < 0) goto fail;
            }
        }
    }
    return build ? out : Py_None;
fail:
    Py_XDECREF(out);
    return NULL;
}

static PyObject *read_node(Node *node, Cursor *c, int build) {
    switch (node->kind) {
    case K_NULL:
        if (build) Py_INCREF(Py_None);
        return Py_None;
    case K_BOOLEAN: {
        if (c->pos >= c->end) { truncated(c); return NULL; }
        int truth = c->data[c->pos++] != 0;  /* as the Python reader: any non-zero byte */
        if (!build) return Py_None;
        return PyBool_FromLong(truth);
    }
    case K_LONG: {
        int64_t v;
        if (c->pos < c->end && c->data[c->pos] < 0x80) {  /* one byte: -64..63 */
            unsigned char b = c->data[c->pos++];
            v = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
        } else if (read_varint(c, &v) < 0) {
            return NULL;
        }
        return build ? PyLong_FromLongLong(v) : Py_None;
    }
    case K_FLOAT: case K_DOUBLE: {
        Py_ssize_t width = node->kind == K_FLOAT ? 4 : 8;
        if (c->end - c->pos < width) { truncated(c); return NULL; }
        const char *p = (const char *)c->data + c->pos;
        c->pos += width;
        if (!build) return Py_None;
        double v = width == 4 ? PyFloat_Unpack4(p, 1) : PyFloat_Unpack8(p, 1);
        if (v == -1.0 && PyErr_Occurred()) return NULL;
        return PyFloat_FromDouble(v);
    }
    case K_BYTES: case K_STRING: {
        Py_ssize_t n;
        if (read_length(c, &n) < 0) return NULL;
        if (n > c->end - c->pos) { truncated(c); return NULL; }
        const unsigned char *p = c->data + c->pos;
        c->pos += n;
        if (node->kind == K_BYTES)
            return build ? PyBytes_FromStringAndSize((const char *)p, n) : Py_None;
        if (!build) return utf8_check(p, n) < 0 ? NULL : Py_None;
        return make_text(c, p, n);
    }
    case K_FIXED: {
        if (c->end - c->pos < node->size) { truncated(c); return NULL; }
        const char *p = (const char *)c->data + c->pos;
        c->pos += node->size;
        return build ? PyBytes_FromStringAndSize(p, node->size) : Py_None;
    }
    case K_ENUM: {
        Py_ssize_t index;
        if (read_length(c, &index) < 0) return NULL;  /* an index is never negative */
        if (index >= PyTuple_GET_SIZE(node->symbols)) {
            PyErr_Format(PyExc_ValueError, "enum index %zd out of range (%zd symbols)", index,
                         PyTuple_GET_SIZE(node->symbols));
            return NULL;
        }
        if (!build) return Py_None;
        PyObject *symbol = PyTuple_GET_ITEM(node->symbols, index);
        Py_INCREF(symbol);
        return symbol;
    }
    case K_RECORD:
        return read_record(node, c, build);
    case K_ARRAY: case K_MAP:
        return read_sequence(node, c, build);
    case K_UNION: {
        int64_t branch;
        if (c->pos < c->end && c->data[c->pos] < 0x80) {
            unsigned char b = c->data[c->pos++];
            branch = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
        } else if (read_varint(c, &branch) < 0) {
            return NULL;
        }
        if (branch < 0 || branch >= node->size) {
            PyErr_Format(PyExc_ValueError, "union branch %lld not in the schema (%zd branches)",
                         (long long)branch, node->size);
            return NULL;
        }
        return read_node(node->children[branch], c, build);
    }
    case K_DECIMAL: {
        PyObject *raw = read_node(node->children[0], c, build);
        if (raw == NULL || !build) return raw;
        PyObject *args[3] = {raw, node->precision, node->scale};
        PyObject *value = PyObject_Vectorcall(node->convert, args, 3, NULL);
        Py_DECREF(raw);
        return value;
    }
    }
    PyErr_SetString(PyExc_SystemError, "unknown Avro read node");
    return NULL;
}

/* ---- the Reader type ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Node *root;
    PyObject *plan;  /* keeps the borrowed names, symbols and callables alive */
    PyObject *texts[TEXT_CACHE_SLOTS];  /* see make_text */
    vectorcallfunc vectorcall;
} Reader;

static PyObject *reader_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Reader(data, pos) takes two positional arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    int own = 0;
    Cursor c;
    if (PyBytes_CheckExact(args[0])) {
        c.data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
        c.end = PyBytes_GET_SIZE(args[0]);
    } else {
        if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
        own = 1;
        c.data = view.buf;
        c.end = view.len;
    }
    PyObject *result = NULL;
    if (pos < 0 || pos > c.end) {
        PyErr_SetString(PyExc_EOFError, "truncated: start position past the end");
    } else {
        c.pos = pos;
        c.texts = ((Reader *)self)->texts;
        PyObject *value = read_node(((Reader *)self)->root, &c, 1);
        if (value != NULL) {
            PyObject *next = PyLong_FromSsize_t(c.pos);
            if (next != NULL) {
                result = PyTuple_Pack(2, value, next);
                Py_DECREF(next);
            }
            Py_DECREF(value);
        }
    }
    if (own) PyBuffer_Release(&view);
    return result;
}

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *plan;
    if (!PyArg_ParseTuple(args, "O!:Reader", &PyTuple_Type, &plan)) return NULL;
    Node *root = compile_node(plan, 0);
    if (root == NULL) return NULL;
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL) { node_free(root); return NULL; }
    self->root = root;
    self->plan = Py_NewRef(plan);
    self->vectorcall = reader_vectorcall;
    return (PyObject *)self;
}

static void reader_dealloc(Reader *self) {
    node_free(self->root);
    for (int i = 0; i < TEXT_CACHE_SLOTS; i++) Py_CLEAR(self->texts[i]);
    Py_XDECREF(self->plan);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._avrodecode.Reader",
    .tp_doc = "Reader(plan): reader(data, pos) -> (value, next pos) (streams/avrodecode.py)",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = reader_new,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Reader, vectorcall),
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streams._avrodecode",
    "Compiled Avro readers (see streams/avrodecode.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__avrodecode(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
