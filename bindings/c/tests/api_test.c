/*
 * The C ABI from C: every export with NULL and invalid arguments, statuses
 * and messages, configuration limits, channel errors, free_user_data exactly
 * once on every path, stale and invalid ids (also from 8 threads at once
 * after stop), the completion queue's fd and drain, and the ABI version.
 * Built with -std=c11 -pedantic and ASAN/UBSAN, linked against the cdylib and
 * the staticlib by ffi/tests/c_programs.rs. Prints "N passed, 0 failed".
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "switchyard.h"

static int passed, failed;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (cond) {                                                       \
      passed++;                                                       \
    } else {                                                          \
      failed++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                 \
  } while (0)

#define EXPECT(call, status) CHECK((call) == (status))

static atomic_int freed;
static void count_free(void *p) {
  (void)p;
  atomic_fetch_add(&freed, 1);
}
static int32_t handler(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  (void)ctx;
  (void)req;
  return 0;
}
static int32_t message(void *ud, switchyard_ctx *ctx, const char *data, size_t len) {
  (void)ud;
  (void)ctx;
  (void)data;
  (void)len;
  return 0;
}
/* Accepts when the request carries a `cookie` header, else 401. */
static void upgrade(void *ud, switchyard_upgrade *up) {
  (void)ud;
  const char *v = NULL;
  size_t n = 0;
  if (switchyard_upgrade_header(up, "cookie", &v, &n) != SWITCHYARD_OK || v == NULL)
    switchyard_upgrade_reject(up, 401, "no cookie");
}

static void hook(void *ud, switchyard_ctx *ctx, uint64_t conn) {
  (void)ud;
  (void)ctx;
  (void)conn;
}
static void cancel(void *ud, uint64_t conn, uint64_t req) {
  (void)ud;
  (void)conn;
  (void)req;
}

static void test_version_and_strerror(void) {
  CHECK(switchyard_abi_version() == SWITCHYARD_ABI_VERSION);
  CHECK((switchyard_abi_version() >> 16) == SWITCHYARD_ABI_VERSION_MAJOR);
  CHECK(strncmp(switchyard_strerror(SWITCHYARD_STALE), "SWITCHYARD_STALE", 16) == 0);
  CHECK(strncmp(switchyard_strerror(SWITCHYARD_OK), "SWITCHYARD_OK", 13) == 0);
  CHECK(strcmp(switchyard_strerror(-12345), "SWITCHYARD_UNKNOWN") == 0);
}

static void test_config(void) {
  char err[128];
  switchyard_config *cfg = NULL;
  EXPECT(switchyard_config_new(NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_config_new(&cfg), SWITCHYARD_OK);
  CHECK(cfg != NULL);
  EXPECT(switchyard_config_set_threads(NULL, 1, err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  CHECK(strstr(err, "config") != NULL);
  EXPECT(switchyard_config_set_threads(cfg, 100000, err, sizeof err), SWITCHYARD_CONFIG_INVALID);
  CHECK(strstr(err, "threads") != NULL);
  EXPECT(switchyard_config_set_max_message_bytes(cfg, 1, err, sizeof err),
         SWITCHYARD_CONFIG_INVALID);
  CHECK(strstr(err, "max_message_bytes") != NULL);
  EXPECT(switchyard_config_set_max_message_bytes(cfg, 4096, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_max_inflight_per_connection(cfg, 0, NULL, 0),
         SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_max_inflight_per_connection(cfg, 8, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_max_outbox_bytes(cfg, 10, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_max_outbox_bytes(cfg, 1 << 16, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_max_handshake_bytes(cfg, 1, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_max_connections(cfg, 0, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_idle_timeout_ms(cfg, 0, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_handshake_timeout_ms(cfg, 1, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_reply_timeout_ms(cfg, UINT64_MAX, NULL, 0),
         SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_reply_timeout_ms(cfg, 5000, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_close_timeout_ms(cfg, 5, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_backlog(cfg, 0, NULL, 0), SWITCHYARD_CONFIG_INVALID);
  EXPECT(switchyard_config_set_metrics(cfg, true, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_debug(cfg, true, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_config_set_slow_consumer_policy(cfg, 7, err, sizeof err),
         SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_config_set_slow_consumer_policy(cfg, SWITCHYARD_SLOW_CONSUMER_DROP, NULL, 0),
         SWITCHYARD_OK);
  /* A tiny buffer gets a truncated, NUL-terminated message. */
  char tiny[4] = {'x', 'x', 'x', 'x'};
  EXPECT(switchyard_config_set_threads(cfg, 100000, tiny, sizeof tiny), SWITCHYARD_CONFIG_INVALID);
  CHECK(tiny[3] == '\0');
  switchyard_config_free(cfg);
  switchyard_config_free(NULL);
}

static void test_channel_and_user_data(void) {
  char err[128];
  switchyard_channel *ch = NULL;
  EXPECT(switchyard_channel_new(NULL, &ch, err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_new("x", NULL, err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_new("", &ch, err, sizeof err), SWITCHYARD_CHANNEL_INVALID);
  EXPECT(switchyard_channel_new("\xff", &ch, err, sizeof err), SWITCHYARD_INVALID_UTF8);
  CHECK(ch == NULL); /* out-params only on success */
  EXPECT(switchyard_channel_new("c", &ch, err, sizeof err), SWITCHYARD_OK);
  EXPECT(switchyard_channel_set_path(ch, "nope", err, sizeof err), SWITCHYARD_CHANNEL_INVALID);
  EXPECT(switchyard_channel_set_path(ch, NULL, err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_set_path(NULL, "/x", err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_set_path(ch, "/c2", err, sizeof err), SWITCHYARD_OK);
  const char *bad_keys[] = {"type", "rid"};
  EXPECT(switchyard_channel_set_routing_keys(ch, bad_keys, 2, err, sizeof err),
         SWITCHYARD_CHANNEL_INVALID);
  EXPECT(switchyard_channel_set_routing_keys(ch, NULL, 1, err, sizeof err),
         SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_set_routing_keys(ch, bad_keys, 0, err, sizeof err),
         SWITCHYARD_CHANNEL_INVALID);
  const char *keys[] = {"type", "action"};
  EXPECT(switchyard_channel_set_routing_keys(ch, keys, 2, err, sizeof err), SWITCHYARD_OK);
  EXPECT(switchyard_channel_set_close_on_error(NULL, true), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_set_close_on_error(ch, false), SWITCHYARD_OK);

  /* free_user_data runs on every error path, once. */
  atomic_store(&freed, 0);
  EXPECT(switchyard_channel_add_route(NULL, "a", 0, handler, NULL, count_free, NULL, 0),
         SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_add_route(ch, "a", 0, NULL, NULL, count_free, NULL, 0),
         SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_add_route(ch, "a", 0x80, handler, NULL, count_free, NULL, 0),
         SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_channel_add_route(ch, NULL, 0, handler, NULL, count_free, NULL, 0),
         SWITCHYARD_NULL_ARGUMENT);
  CHECK(atomic_load(&freed) == 4);
  EXPECT(switchyard_channel_add_route(ch, "a", SWITCHYARD_ROUTE_PUBLIC, handler, NULL, count_free,
                                      NULL, 0),
         SWITCHYARD_OK);
  EXPECT(switchyard_channel_add_route(ch, "a", 0, handler, NULL, count_free, err, sizeof err),
         SWITCHYARD_CHANNEL_INVALID);
  CHECK(strstr(err, "twice") != NULL);
  CHECK(atomic_load(&freed) == 5);
  EXPECT(switchyard_channel_set_default_handler(ch, message, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_set_default_handler(ch, message, NULL, count_free), SWITCHYARD_OK);
  CHECK(atomic_load(&freed) == 6); /* the replaced one */
  EXPECT(switchyard_channel_set_binary_handler(ch, message, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_on_connect(ch, hook, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_on_disconnect(ch, hook, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_on_cancel(ch, cancel, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_on_cancel(NULL, cancel, NULL, count_free), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_on_connect(ch, NULL, NULL, count_free), SWITCHYARD_NULL_ARGUMENT);
  CHECK(atomic_load(&freed) == 8);
  EXPECT(switchyard_channel_on_upgrade(ch, upgrade, NULL, count_free), SWITCHYARD_OK);
  EXPECT(switchyard_channel_on_upgrade(ch, upgrade, NULL, count_free), SWITCHYARD_OK);
  CHECK(atomic_load(&freed) == 9); /* the replaced one */
  EXPECT(switchyard_channel_on_upgrade(ch, NULL, NULL, count_free), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_on_upgrade(NULL, upgrade, NULL, count_free), SWITCHYARD_NULL_ARGUMENT);
  CHECK(atomic_load(&freed) == 11);
  {
    const char *s = NULL;
    size_t n = 0;
    EXPECT(switchyard_upgrade_path(NULL, &s, &n), SWITCHYARD_NULL_ARGUMENT);
    EXPECT(switchyard_upgrade_header(NULL, "cookie", &s, &n), SWITCHYARD_NULL_ARGUMENT);
    EXPECT(switchyard_upgrade_reject(NULL, 401, NULL), SWITCHYARD_NULL_ARGUMENT);
  }
  switchyard_channel_free(ch);
  /* route a, default, binary, connect, disconnect, cancel, upgrade */
  CHECK(atomic_load(&freed) == 18);
  switchyard_channel_free(NULL);
}

struct stale_arg {
  switchyard_engine *engine;
  uint64_t id;
  int stale;
};

static void *reply_thread(void *p) {
  struct stale_arg *a = p;
  a->stale = switchyard_engine_reply(a->engine, a->id, "{}", 2) == SWITCHYARD_STALE;
  return NULL;
}

static void test_engine(void) {
  char err[256];
  switchyard_engine *engine = NULL;
  atomic_store(&freed, 0);

  /* engine_new consumes its channels even when it fails. */
  switchyard_channel *bad = NULL;
  switchyard_channel_new("bad", &bad, NULL, 0);
  switchyard_channel_add_route(bad, "x", 0, handler, NULL, count_free, NULL, 0);
  switchyard_channel *list[1] = {bad};
  EXPECT(switchyard_engine_new(NULL, list, 1, "not an address", &engine, err, sizeof err),
         SWITCHYARD_IO);
  CHECK(engine == NULL);
  CHECK(atomic_load(&freed) == 1);
  EXPECT(switchyard_engine_new(NULL, NULL, 0, "127.0.0.1:0", &engine, err, sizeof err),
         SWITCHYARD_CHANNEL_INVALID);
  EXPECT(switchyard_engine_new(NULL, NULL, 1, "127.0.0.1:0", &engine, err, sizeof err),
         SWITCHYARD_NULL_ARGUMENT);
  /* The same channel twice is taken once (no double free) and refused. */
  switchyard_channel *twice = NULL;
  switchyard_channel_new("twice", &twice, NULL, 0);
  switchyard_channel_add_route(twice, "x", 0, handler, NULL, count_free, NULL, 0);
  switchyard_channel *pair[2] = {twice, twice};
  EXPECT(switchyard_engine_new(NULL, pair, 2, "127.0.0.1:0", &engine, err, sizeof err),
         SWITCHYARD_INVALID_ARGUMENT);
  CHECK(atomic_load(&freed) == 2);
  atomic_store(&freed, 1);

  switchyard_cq *cq = NULL;
  EXPECT(switchyard_cq_new(0, 0, &cq, err, sizeof err), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_cq_new(8, 8, &cq, err, sizeof err), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_cq_new(8, 2, NULL, err, sizeof err), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_new(8, 2, &cq, err, sizeof err), SWITCHYARD_OK);

  switchyard_channel *ch = NULL;
  switchyard_channel_new("ok", &ch, NULL, 0);
  switchyard_channel_add_route(ch, "x", SWITCHYARD_ROUTE_PUBLIC, handler, NULL, count_free, NULL,
                               0);
  EXPECT(switchyard_channel_add_queued_route(ch, "q", 0, NULL, NULL, 0), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_add_queued_route(ch, "q", 0, cq, NULL, 0), SWITCHYARD_OK);
  EXPECT(switchyard_channel_add_queued_route(ch, "x", 0, cq, NULL, 0),
         SWITCHYARD_CHANNEL_INVALID);
  EXPECT(switchyard_channel_queue_events(ch, cq, 0), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_channel_queue_events(ch, cq, 1u << 20), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_channel_queue_events(NULL, cq, SWITCHYARD_QUEUE_OPEN),
         SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_channel_queue_events(ch, cq, SWITCHYARD_QUEUE_OPEN | SWITCHYARD_QUEUE_CLOSE),
         SWITCHYARD_OK);
  list[0] = ch;
  EXPECT(switchyard_engine_new(NULL, list, 1, "127.0.0.1:0", NULL, err, sizeof err),
         SWITCHYARD_NULL_ARGUMENT); /* consumed all the same */
  CHECK(atomic_load(&freed) == 2);
  switchyard_channel_new("ok", &ch, NULL, 0);
  switchyard_channel_add_route(ch, "x", SWITCHYARD_ROUTE_PUBLIC, handler, NULL, count_free, NULL,
                               0);
  EXPECT(switchyard_channel_add_queued_route(ch, "q", 0, cq, NULL, 0), SWITCHYARD_OK);
  list[0] = ch;
  EXPECT(switchyard_engine_new(NULL, list, 1, "127.0.0.1:0", &engine, err, sizeof err),
         SWITCHYARD_OK);
  CHECK(engine != NULL);

  uint16_t port = 0;
  EXPECT(switchyard_engine_local_port(engine, &port), SWITCHYARD_OK);
  CHECK(port != 0);
  EXPECT(switchyard_engine_local_port(NULL, &port), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_local_port(engine, NULL), SWITCHYARD_NULL_ARGUMENT);
  char addr[64], small[4];
  EXPECT(switchyard_engine_local_addr(engine, addr, sizeof addr), SWITCHYARD_OK);
  CHECK(strncmp(addr, "127.0.0.1:", 10) == 0);
  EXPECT(switchyard_engine_local_addr(engine, small, sizeof small), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_engine_local_addr(engine, NULL, 8), SWITCHYARD_NULL_ARGUMENT);

  /* Ids: invalid (>= 2^53) and stale (never issued). */
  const uint64_t big = (uint64_t)1 << 53;
  EXPECT(switchyard_engine_reply(engine, big, NULL, 0), SWITCHYARD_INVALID_ID);
  EXPECT(switchyard_engine_reply(engine, 12345, NULL, 0), SWITCHYARD_STALE);
  EXPECT(switchyard_engine_reply(engine, 12345, "{", 1), SWITCHYARD_INVALID_JSON);
  EXPECT(switchyard_engine_reply(engine, 12345, NULL, 3), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_reply(NULL, 12345, NULL, 0), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_reply_error(engine, 12345, "Not Snake", NULL),
         SWITCHYARD_INVALID_ERROR_CODE);
  EXPECT(switchyard_engine_reply_error(engine, 12345, NULL, NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_reply_error(engine, 12345, "gone", "m"), SWITCHYARD_STALE);
  switchyard_reply batch[3];
  memset(batch, 0, sizeof batch);
  batch[0].request_id = 1;
  batch[1].request_id = big;
  batch[2].request_id = 2;
  batch[2].error_code = "bad code";
  switchyard_status statuses[3];
  EXPECT(switchyard_reply_batch(engine, batch, 3, statuses), SWITCHYARD_OK);
  CHECK(statuses[0] == SWITCHYARD_STALE);
  CHECK(statuses[1] == SWITCHYARD_INVALID_ID);
  CHECK(statuses[2] == SWITCHYARD_INVALID_ERROR_CODE);
  EXPECT(switchyard_reply_batch(engine, NULL, 1, statuses), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_reply_batch(engine, NULL, 0, NULL), SWITCHYARD_OK);

  /* Host-thread calls: argument errors. */
  EXPECT(switchyard_engine_send_json(engine, 1, "[1]", 3), SWITCHYARD_NOT_AN_OBJECT);
  EXPECT(switchyard_engine_send_json(engine, big, "{}", 2), SWITCHYARD_INVALID_ID);
  /* Id 1 was never handed out (no client connected): no such connection. */
  EXPECT(switchyard_engine_send_json(engine, 1, "{}", 2), SWITCHYARD_STALE);
  EXPECT(switchyard_engine_close(engine, big, 1000, NULL), SWITCHYARD_INVALID_ID);
  EXPECT(switchyard_engine_close(engine, 1, 1000, "bye"), SWITCHYARD_STALE);
  char topic[300];
  memset(topic, 't', sizeof topic);
  EXPECT(switchyard_engine_publish_json(engine, topic, sizeof topic, "1", 1),
         SWITCHYARD_TOPIC_TOO_LONG);
  EXPECT(switchyard_engine_publish_json(engine, "t", 1, "{", 1), SWITCHYARD_INVALID_JSON);
  EXPECT(switchyard_engine_publish_json(engine, "t", 1, "1", 1), SWITCHYARD_OK);
  EXPECT(switchyard_engine_publish_json(engine, "\xff", 1, "1", 1), SWITCHYARD_INVALID_UTF8);
  EXPECT(switchyard_engine_publish_except(engine, "t", 1, "1", 1, big), SWITCHYARD_INVALID_ID);
  EXPECT(switchyard_engine_publish_except(engine, "t", 1, "1", 1, 1), SWITCHYARD_OK);
  EXPECT(switchyard_engine_subscribe(engine, 1, topic, sizeof topic), SWITCHYARD_TOPIC_TOO_LONG);
  EXPECT(switchyard_engine_unsubscribe(engine, 1, topic, sizeof topic),
         SWITCHYARD_TOPIC_TOO_LONG);
  EXPECT(switchyard_engine_subscribe(NULL, 1, "t", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_set_session_json(engine, 1, "{nope", 5), SWITCHYARD_INVALID_JSON);
  EXPECT(switchyard_engine_set_session_json(engine, big, "{}", 2), SWITCHYARD_INVALID_ID);
  EXPECT(switchyard_engine_clear_session(engine, big), SWITCHYARD_INVALID_ID);
  EXPECT(switchyard_engine_pause_reading(NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_pause_reading(engine), SWITCHYARD_OK);
  EXPECT(switchyard_engine_resume_reading(engine), SWITCHYARD_OK);
  switchyard_stats st;
  EXPECT(switchyard_engine_stats(engine, NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_stats(engine, &st), SWITCHYARD_OK);
  CHECK(st.connections_open == 0);

  /* The queue: fd, len, drain arguments. */
  int fd = -1;
  EXPECT(switchyard_cq_fd(cq, NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_fd(NULL, &fd), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_fd(cq, &fd), SWITCHYARD_OK);
  CHECK(fd >= 0);
  struct pollfd pfd = {fd, POLLIN, 0};
  CHECK(poll(&pfd, 1, 0) == 0); /* nothing queued, nothing to read */
  size_t len = 99, n = 99;
  EXPECT(switchyard_cq_len(cq, &len), SWITCHYARD_OK);
  CHECK(len == 0);
  switchyard_event ev[4];
  EXPECT(switchyard_cq_drain(cq, ev, 0, &n), SWITCHYARD_INVALID_ARGUMENT);
  EXPECT(switchyard_cq_drain(cq, NULL, 4, &n), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_drain(cq, ev, 4, NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_drain(NULL, ev, 4, &n), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_cq_drain(cq, ev, 4, &n), SWITCHYARD_OK);
  CHECK(n == 0);

  /* A second engine cannot take a queue the first one serves. */
  switchyard_channel *ch2 = NULL;
  switchyard_engine *engine2 = NULL;
  switchyard_channel_new("two", &ch2, NULL, 0);
  switchyard_channel_add_queued_route(ch2, "q", 0, cq, NULL, 0);
  list[0] = ch2;
  EXPECT(switchyard_engine_new(NULL, list, 1, "127.0.0.1:0", &engine2, err, sizeof err),
         SWITCHYARD_INVALID_STATE);
  CHECK(engine2 == NULL);

  /* After stop every id is stale, from 8 threads at once. */
  EXPECT(switchyard_engine_stop(NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_engine_stop(engine), SWITCHYARD_OK);
  EXPECT(switchyard_engine_stop(engine), SWITCHYARD_OK);
  pthread_t threads[8];
  struct stale_arg args[8];
  for (int i = 0; i < 8; i++) {
    args[i].engine = engine;
    args[i].id = (uint64_t)i + 1;
    args[i].stale = 0;
    pthread_create(&threads[i], NULL, reply_thread, &args[i]);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(threads[i], NULL);
    CHECK(args[i].stale);
  }
  EXPECT(switchyard_engine_send_json(engine, 1, "{}", 2), SWITCHYARD_STALE);
  EXPECT(switchyard_engine_subscribe(engine, 1, "t", 1), SWITCHYARD_STALE);
  EXPECT(switchyard_engine_publish_json(engine, "t", 1, "1", 1), SWITCHYARD_STOPPED);
  CHECK(atomic_load(&freed) == 2);
  switchyard_engine_free(engine);
  CHECK(atomic_load(&freed) == 3); /* the running engine's route */
  switchyard_engine_free(NULL);
  switchyard_cq_free(cq);
  switchyard_cq_free(NULL);
}

static void test_ctx_null(void) {
  uint64_t id;
  EXPECT(switchyard_ctx_reply_json(NULL, "{}", 2), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_error(NULL, "x", NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_defer(NULL, &id), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_conn_id(NULL, &id), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_set_session_json(NULL, "{}", 2), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_clear_session(NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_send_json(NULL, "{}", 2), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_send_text(NULL, "x", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_send_binary(NULL, (const uint8_t *)"x", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_close(NULL, 1000, NULL), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_subscribe(NULL, "t", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_unsubscribe(NULL, "t", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_publish_json(NULL, "t", 1, "1", 1), SWITCHYARD_NULL_ARGUMENT);
  EXPECT(switchyard_ctx_publish_except(NULL, "t", 1, "1", 1, 1), SWITCHYARD_NULL_ARGUMENT);
}

int main(void) {
  test_version_and_strerror();
  test_config();
  test_channel_and_user_data();
  test_engine();
  test_ctx_null();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
