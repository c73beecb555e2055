"""The C ABI of libswitchyard, loaded with cffi in ABI mode (no compiler).

In: ``include/switchyard.h`` (the declarations below are copied from it, and
``tests/test_native.py`` checks them against the header), and the shared
library found by :func:`library_path`. Out: ``ffi`` and ``lib``, plus the
status and event constants. Nothing here calls into the engine; the engine
module does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from cffi import FFI

#: The ABI major version this package speaks.
ABI_MAJOR = 0

CDEF = """
typedef int32_t switchyard_status;
typedef struct switchyard_channel switchyard_channel;
typedef struct switchyard_config switchyard_config;
typedef struct switchyard_cq switchyard_cq;
typedef struct switchyard_engine switchyard_engine;

typedef struct switchyard_event {
  uint32_t kind;
  uint32_t reserved;
  uint64_t conn_id;
  uint64_t request_id;
  const char *channel;
  size_t channel_len;
  const char *action;
  size_t action_len;
  const char *payload;
  size_t payload_len;
  const char *session;
  size_t session_len;
} switchyard_event;

typedef struct switchyard_reply {
  uint64_t request_id;
  const char *json;
  size_t json_len;
  const char *error_code;
  const char *error_message;
} switchyard_reply;

typedef struct switchyard_stats {
  uint64_t connections_open;
  uint64_t connections_total;
  uint64_t messages_in;
  uint64_t messages_out;
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t events_published;
  uint64_t events_delivered;
  uint64_t events_dropped;
  uint64_t slow_consumer_closes;
  uint64_t topics;
  uint64_t subscriptions;
  uint64_t errors_bad_json;
  uint64_t errors_not_object;
  uint64_t errors_missing_action;
  uint64_t errors_unknown_action;
  uint64_t errors_unauthorized;
  uint64_t errors_forbidden;
  uint64_t errors_invalid_input;
  uint64_t errors_rate_limited;
  uint64_t errors_timeout;
  uint64_t errors_binary_not_supported;
  uint64_t errors_internal;
  uint64_t errors_other;
  uint64_t closes_1000;
  uint64_t closes_1001;
  uint64_t closes_1002;
  uint64_t closes_1003;
  uint64_t closes_1006;
  uint64_t closes_1007;
  uint64_t closes_1009;
  uint64_t closes_1011;
  uint64_t closes_1013;
  uint64_t closes_other;
} switchyard_stats;

uint32_t switchyard_abi_version(void);
const char *switchyard_strerror(switchyard_status status);

switchyard_status switchyard_config_new(struct switchyard_config **out);
void switchyard_config_free(struct switchyard_config *config);
switchyard_status switchyard_config_set_threads(struct switchyard_config *config, uint32_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_max_message_bytes(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_max_inflight_per_connection(struct switchyard_config *config, uint32_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_max_outbox_bytes(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_max_handshake_bytes(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_max_connections(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_idle_timeout_ms(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_handshake_timeout_ms(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_reply_timeout_ms(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_close_timeout_ms(struct switchyard_config *config, uint64_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_backlog(struct switchyard_config *config, uint32_t value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_metrics(struct switchyard_config *config, bool value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_debug(struct switchyard_config *config, bool value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_serve_manifest(struct switchyard_config *config, bool value, char *err_buf, size_t err_len);
switchyard_status switchyard_config_set_slow_consumer_policy(struct switchyard_config *config, uint32_t policy, char *err_buf, size_t err_len);

switchyard_status switchyard_channel_new(const char *name, struct switchyard_channel **out, char *err_buf, size_t err_len);
void switchyard_channel_free(struct switchyard_channel *channel);
switchyard_status switchyard_channel_set_path(struct switchyard_channel *channel, const char *path, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_set_routing_keys(struct switchyard_channel *channel, const char *const *keys, size_t n, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_set_close_on_error(struct switchyard_channel *channel, bool yes);
switchyard_status switchyard_channel_add_queued_route(struct switchyard_channel *channel, const char *name, uint32_t flags, const struct switchyard_cq *cq, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_queue_events(struct switchyard_channel *channel, const struct switchyard_cq *cq, uint32_t mask);
switchyard_status switchyard_channel_add_rate_limit(struct switchyard_channel *channel, const char *route, double per_second, uint32_t burst, uint32_t scope, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_add_audit_log(struct switchyard_channel *channel, const char *route);
switchyard_status switchyard_channel_set_input_schema(struct switchyard_channel *channel, const char *route, const char *schema, size_t schema_len, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_set_output_schema(struct switchyard_channel *channel, const char *route, const char *schema, size_t schema_len, char *err_buf, size_t err_len);
switchyard_status switchyard_channel_add_topic(struct switchyard_channel *channel, const char *topic, const char *schema, size_t schema_len, char *err_buf, size_t err_len);

switchyard_status switchyard_cq_new(size_t capacity, size_t low_watermark, struct switchyard_cq **out, char *err_buf, size_t err_len);
void switchyard_cq_free(struct switchyard_cq *cq);
switchyard_status switchyard_cq_fd(const struct switchyard_cq *cq, int *fd);
switchyard_status switchyard_cq_len(const struct switchyard_cq *cq, size_t *len);
switchyard_status switchyard_cq_drain(struct switchyard_cq *cq, struct switchyard_event *out, size_t max, size_t *n);

switchyard_status switchyard_engine_new(const struct switchyard_config *config, struct switchyard_channel *const *channels, size_t n, const char *addr, struct switchyard_engine **out, char *err_buf, size_t err_len);
switchyard_status switchyard_engine_stop(struct switchyard_engine *engine);
void switchyard_engine_free(struct switchyard_engine *engine);
switchyard_status switchyard_engine_local_port(const struct switchyard_engine *engine, uint16_t *port);
switchyard_status switchyard_engine_local_addr(const struct switchyard_engine *engine, char *buf, size_t len);
switchyard_status switchyard_engine_reply(const struct switchyard_engine *engine, uint64_t request_id, const char *json, size_t len);
switchyard_status switchyard_engine_reply_error(const struct switchyard_engine *engine, uint64_t request_id, const char *code, const char *message);
switchyard_status switchyard_reply_batch(const struct switchyard_engine *engine, const struct switchyard_reply *replies, size_t n, switchyard_status *statuses);
switchyard_status switchyard_engine_send_json(const struct switchyard_engine *engine, uint64_t conn_id, const char *json, size_t len);
switchyard_status switchyard_engine_answer_upgrade(const struct switchyard_engine *engine, uint64_t conn_id, uint16_t status, const char *session_json, size_t session_len, const char *body);
switchyard_status switchyard_engine_close(const struct switchyard_engine *engine, uint64_t conn_id, uint16_t code, const char *reason);
switchyard_status switchyard_engine_publish_json(const struct switchyard_engine *engine, const char *topic, size_t topic_len, const char *json, size_t json_len);
switchyard_status switchyard_engine_publish_except(const struct switchyard_engine *engine, const char *topic, size_t topic_len, const char *json, size_t json_len, uint64_t except_conn);
switchyard_status switchyard_engine_subscribe(const struct switchyard_engine *engine, uint64_t conn_id, const char *topic, size_t topic_len);
switchyard_status switchyard_engine_unsubscribe(const struct switchyard_engine *engine, uint64_t conn_id, const char *topic, size_t topic_len);
switchyard_status switchyard_engine_set_session_json(const struct switchyard_engine *engine, uint64_t conn_id, const char *json, size_t len);
switchyard_status switchyard_engine_clear_session(const struct switchyard_engine *engine, uint64_t conn_id);
switchyard_status switchyard_engine_stats(const struct switchyard_engine *engine, struct switchyard_stats *out);
"""

# Status codes (switchyard.h, numbered blocks).
OK = 0
NULL_ARGUMENT = -1
INVALID_ARGUMENT = -2
INVALID_UTF8 = -3
PANIC = -4
INVALID_STATE = -5
CONFIG_INVALID = -100
CHANNEL_INVALID = -200
IO = -201
STOPPED = -202
STALE = -300
INVALID_ID = -301
CANNOT_DEFER = -302
INVALID_JSON = -400
NOT_AN_OBJECT = -401
TOPIC_TOO_LONG = -402
INVALID_ERROR_CODE = -403
CQ_SETUP = -500
MIDDLEWARE_INVALID = -600

# Route flags.
ROUTE_PUBLIC = 1
ROUTE_EXCLUSIVE = 2

# Slow-consumer policies.
SLOW_CONSUMER_CLOSE = 0
SLOW_CONSUMER_DROP = 1

# Event kinds.
EVENT_OPEN = 1
EVENT_REQUEST = 2
EVENT_MESSAGE = 3
EVENT_CLOSE = 4
EVENT_CANCEL = 5
EVENT_BINARY = 6
EVENT_UPGRADE = 7

# switchyard_channel_queue_events mask bits.
QUEUE_OPEN = 1
QUEUE_CLOSE = 2
QUEUE_MESSAGE = 4
QUEUE_CANCEL = 8
QUEUE_BINARY = 16
QUEUE_UPGRADE = 32

# Rate-limit scopes.
RATE_PER_CONNECTION = 0
RATE_PER_CONNECTION_ROUTE = 1
RATE_SHARED = 2

LIBRARY_NAME = "libswitchyard.so"


def library_path() -> str:
    """Where libswitchyard is: ``$SWITCHYARD_LIB``, else the first
    ``target/release/libswitchyard.so`` above this file or above the working
    directory, else the bare name for the dynamic loader's search path."""
    env = os.environ.get("SWITCHYARD_LIB")
    if env:
        return env
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for d in (start, *start.parents):
            candidate = d / "target" / "release" / LIBRARY_NAME
            if candidate.is_file():
                return str(candidate)
    return LIBRARY_NAME


ffi = FFI()
ffi.cdef(CDEF)

_lib: Optional[Any] = None


def load() -> Any:
    """Opens the library once and checks its ABI major version."""
    global _lib
    if _lib is None:
        path = library_path()
        try:
            lib: Any = ffi.dlopen(path)
        except OSError as e:
            raise OSError(
                f"switchyard: cannot load {path!r} ({e}); build it with "
                "`cargo build --release -p switchyard-ffi` or set SWITCHYARD_LIB "
                "to the path of libswitchyard.so"
            ) from e
        version = int(lib.switchyard_abi_version())
        if version >> 16 != ABI_MAJOR:
            raise OSError(
                f"switchyard: {path} has ABI {version >> 16}.{(version >> 8) & 0xFF}."
                f"{version & 0xFF}, this package speaks {ABI_MAJOR}.x"
            )
        _lib = lib
    return _lib


def cstring(ptr: Any) -> str:
    """A NUL-terminated C string as ``str``."""
    value = ffi.string(ptr)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def strerror(status: int) -> str:
    """The status's name and description, as the library gives it."""
    return cstring(load().switchyard_strerror(status))
