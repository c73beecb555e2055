/*
 * The same echo/chat server in completion-queue mode, as a Node or Python
 * host would run it: the loop threads never call this program. It polls
 * the queue's notification fd, drains a batch of events with one call, and
 * answers them with one switchyard_reply_batch call. Session changes and
 * subscriptions go through switchyard_engine_* before the reply; `login`
 * changes the session, so it is registered EXCLUSIVE.
 *
 *   chat_queue [--addr 127.0.0.1:0] [--path /chat] [--threads 1]
 *
 * Routes and output: as chat_callback.c (`later` is answered on the next
 * wake-up rather than at once). Prints the count of open/close events
 * seen at exit.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>

#include "example_common.h"

#define BATCH 256
#define REPLY_BYTES 1024

static switchyard_engine *g_engine;
static uint64_t g_pending_later[BATCH];
static size_t g_pending_later_len;

struct out_batch {
  switchyard_reply replies[BATCH];
  char text[BATCH][REPLY_BYTES];
  size_t n;
};

static void reply_json(struct out_batch *b, uint64_t id, const char *json, size_t len) {
  switchyard_reply *r = &b->replies[b->n++];
  memset(r, 0, sizeof *r);
  r->request_id = id;
  r->json = json;
  r->json_len = len;
}

static void reply_error(struct out_batch *b, uint64_t id, const char *code, const char *msg) {
  switchyard_reply *r = &b->replies[b->n++];
  memset(r, 0, sizeof *r);
  r->request_id = id;
  r->error_code = code;
  r->error_message = msg;
}

static int is(const switchyard_event *e, const char *action) {
  size_t n = strlen(action);
  return e->action_len == n && memcmp(e->action, action, n) == 0;
}

static void handle_request(struct out_batch *b, const switchyard_event *e) {
  char *buf = b->text[b->n];
  const char *topic, *data;
  size_t topic_len, data_len;
  int n;
  if (is(e, "echo")) {
    reply_json(b, e->request_id, e->payload, e->payload_len);
  } else if (is(e, "subscribe")) {
    if (json_string_member(e->payload, e->payload_len, "topic", &topic, &topic_len) != 0 ||
        switchyard_engine_subscribe(g_engine, e->conn_id, topic, topic_len) != SWITCHYARD_OK) {
      reply_error(b, e->request_id, "invalid_input", "topic must be a string");
    } else {
      reply_json(b, e->request_id, NULL, 0);
    }
  } else if (is(e, "publish")) {
    if (json_string_member(e->payload, e->payload_len, "topic", &topic, &topic_len) != 0 ||
        json_member(e->payload, e->payload_len, "data", &data, &data_len) != 0 ||
        switchyard_engine_publish_json(g_engine, topic, topic_len, data, data_len) !=
            SWITCHYARD_OK) {
      reply_error(b, e->request_id, "invalid_input", "publish needs topic and data");
    } else {
      reply_json(b, e->request_id, NULL, 0);
    }
  } else if (is(e, "login")) {
    const char *name;
    size_t name_len;
    if (json_string_member(e->payload, e->payload_len, "name", &name, &name_len) != 0 ||
        name_len == 0 || name_len > 64) {
      reply_error(b, e->request_id, "invalid_input", "name must be a short string");
      return;
    }
    n = snprintf(buf, REPLY_BYTES, "{\"user\":\"%.*s\"}", (int)name_len, name);
    switchyard_engine_set_session_json(g_engine, e->conn_id, buf, (size_t)n);
    switchyard_engine_subscribe(g_engine, e->conn_id, "room", 4);
    n = snprintf(buf, REPLY_BYTES, "{\"ok\":true,\"user\":\"%.*s\"}", (int)name_len, name);
    reply_json(b, e->request_id, buf, (size_t)n);
  } else if (is(e, "whoami")) {
    n = snprintf(buf, REPLY_BYTES, "{\"session\":%.*s}", (int)e->session_len, e->session);
    reply_json(b, e->request_id, buf, (size_t)n);
  } else if (is(e, "say")) {
    const char *text;
    size_t text_len;
    if (json_member(e->payload, e->payload_len, "text", &text, &text_len) != 0) {
      reply_error(b, e->request_id, "invalid_input", "say needs text");
      return;
    }
    n = snprintf(buf, REPLY_BYTES, "{\"from\":%.*s,\"text\":%.*s}", (int)e->session_len,
                 e->session, (int)text_len, text);
    if (n < 0 || n >= REPLY_BYTES ||
        switchyard_engine_publish_except(g_engine, "room", 4, buf, (size_t)n, e->conn_id) !=
            SWITCHYARD_OK) {
      reply_error(b, e->request_id, "invalid_input", "bad text");
    } else {
      reply_json(b, e->request_id, NULL, 0);
    }
  } else if (is(e, "fail")) {
    reply_error(b, e->request_id, "not_found", "nothing here");
  } else if (is(e, "later")) {
    if (g_pending_later_len < BATCH / 2) {
      g_pending_later[g_pending_later_len++] = e->request_id;
    } else {
      reply_error(b, e->request_id, "busy", "too many");
    }
  } else {
    reply_error(b, e->request_id, "unknown_action", "no such route");
  }
}

int main(int argc, char **argv) {
  struct example_opts o;
  if (example_parse(argc, argv, &o) != 0) return 2;
  if (example_install_signals() != 0) return 1;

  char err[256] = "";
  switchyard_config *cfg = NULL;
  switchyard_status s = switchyard_config_new(&cfg);
  if (s != SWITCHYARD_OK) return example_fail("config_new", s, NULL);
  s = switchyard_config_set_threads(cfg, o.threads, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("threads", s, err);

  switchyard_cq *cq = NULL;
  s = switchyard_cq_new(4096, 1024, &cq, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("cq_new", s, err);

  switchyard_channel *ch = NULL;
  s = switchyard_channel_new("chat", &ch, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("channel_new", s, err);
  s = switchyard_channel_set_path(ch, o.path, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("set_path", s, err);
  const uint32_t pub = SWITCHYARD_ROUTE_PUBLIC;
  static const struct {
    const char *name;
    uint32_t flags;
  } routes[] = {{"echo", SWITCHYARD_ROUTE_PUBLIC},
                {"subscribe", SWITCHYARD_ROUTE_PUBLIC},
                {"publish", SWITCHYARD_ROUTE_PUBLIC},
                {"login", SWITCHYARD_ROUTE_PUBLIC | SWITCHYARD_ROUTE_EXCLUSIVE},
                {"whoami", 0},
                {"say", 0},
                {"fail", SWITCHYARD_ROUTE_PUBLIC},
                {"later", SWITCHYARD_ROUTE_PUBLIC}};
  (void)pub;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    s = switchyard_channel_add_queued_route(ch, routes[i].name, routes[i].flags, cq, err,
                                            sizeof err);
    if (s != SWITCHYARD_OK) return example_fail("add_queued_route", s, err);
  }
  s = switchyard_channel_queue_events(
      ch, cq, SWITCHYARD_QUEUE_OPEN | SWITCHYARD_QUEUE_CLOSE | SWITCHYARD_QUEUE_CANCEL);
  if (s != SWITCHYARD_OK) return example_fail("queue_events", s, NULL);

  switchyard_channel *channels[1] = {ch};
  s = switchyard_engine_new(cfg, channels, 1, o.addr, &g_engine, err, sizeof err);
  switchyard_config_free(cfg);
  if (s != SWITCHYARD_OK) return example_fail("engine_new", s, err);

  int cq_fd = -1;
  switchyard_cq_fd(cq, &cq_fd);
  char addr[128];
  switchyard_engine_local_addr(g_engine, addr, sizeof addr);
  printf("listening on ws://%s%s\n", addr, o.path);
  fflush(stdout);

  static switchyard_event events[BATCH];
  static struct out_batch out;
  static switchyard_status statuses[BATCH];
  unsigned long opens = 0, closes = 0, cancels = 0, drains = 0, requests = 0;
  struct pollfd fds[3];
  int busy = 0; /* the last drain found events: try again before sleeping */
  for (;;) {
    example_fill_pollfds(fds, o.ignore_stdin);
    fds[2].fd = cq_fd;
    fds[2].events = POLLIN;
    fds[2].revents = 0;
    /* Deferred `later` requests are answered on the next turn. */
    if (poll(fds, 3, busy ? 0 : g_pending_later_len ? 1 : -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (example_should_stop(fds, o.ignore_stdin)) break;
    if (busy) fds[2].revents = POLLIN;
    out.n = 0;
    for (size_t i = 0; i < g_pending_later_len; i++) {
      static const char later[] = "{\"later\":true}";
      reply_json(&out, g_pending_later[i], later, sizeof later - 1);
    }
    g_pending_later_len = 0;
    if (fds[2].revents) {
      size_t n = 0;
      s = switchyard_cq_drain(cq, events, BATCH - out.n, &n);
      if (s != SWITCHYARD_OK) return example_fail("cq_drain", s, NULL);
      busy = n > 0;
      drains += n > 0;
      for (size_t i = 0; i < n; i++) {
        switch (events[i].kind) {
          case SWITCHYARD_EVENT_REQUEST:
            requests++;
            handle_request(&out, &events[i]);
            break;
          case SWITCHYARD_EVENT_OPEN: opens++; break;
          case SWITCHYARD_EVENT_CLOSE: closes++; break;
          case SWITCHYARD_EVENT_CANCEL: cancels++; break;
          default: break;
        }
      }
    }
    if (out.n > 0) {
      s = switchyard_reply_batch(g_engine, out.replies, out.n, statuses);
      if (s != SWITCHYARD_OK) return example_fail("reply_batch", s, NULL);
    }
  }

  switchyard_engine_stop(g_engine);
  switchyard_engine_free(g_engine);
  switchyard_cq_free(cq);
  printf("events: open %lu, close %lu, cancel %lu, requests %lu in %lu batches\n", opens, closes,
         cancels, requests, drains);
  close(example_signal_pipe[0]);
  close(example_signal_pipe[1]);
  return 0;
}
