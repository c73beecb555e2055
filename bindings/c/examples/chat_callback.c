/*
 * An echo/chat server in callback mode: handlers are C functions that run
 * on the engine's loop threads and reply inline, except `later`, which
 * defers and is answered from a worker thread.
 *
 *   chat_callback [--addr 127.0.0.1:0] [--path /chat] [--threads 1]
 *
 * Routes (the bench protocol plus a chat):
 *   echo {..}            public: the payload back
 *   subscribe {topic}    public: subscribe, ack
 *   publish {topic,data} public: publish data to topic, ack
 *   login {name}         public: session {"user":name}, joins "room"
 *   whoami               session: {"session": <session>}
 *   say {text}           session: {"from":<session>,"text":..} to the rest of "room"
 *   fail                 public: error not_found
 *   later                public: deferred, {"later":true} from another thread
 *
 * Prints `listening on ws://ADDR/PATH` first; stops on SIGINT, SIGTERM or
 * end of standard input, then prints how many user_data were freed.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "example_common.h"

static switchyard_engine *g_engine;
static atomic_int g_freed;
static atomic_int g_registered;

/* ---- the worker that answers deferred requests from another thread ---- */

#define LATER_QUEUE 1024
static pthread_mutex_t later_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t later_cv = PTHREAD_COND_INITIALIZER;
static uint64_t later_ids[LATER_QUEUE];
static size_t later_head, later_len;
static int later_quit;

static void *later_worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&later_mu);
    while (later_len == 0 && !later_quit) pthread_cond_wait(&later_cv, &later_mu);
    if (later_len == 0 && later_quit) {
      pthread_mutex_unlock(&later_mu);
      return NULL;
    }
    uint64_t id = later_ids[later_head];
    later_head = (later_head + 1) % LATER_QUEUE;
    later_len--;
    pthread_mutex_unlock(&later_mu);
    static const char reply[] = "{\"later\":true}";
    switchyard_status s = switchyard_engine_reply(g_engine, id, reply, sizeof reply - 1);
    if (s != SWITCHYARD_OK && s != SWITCHYARD_STALE) {
      fprintf(stderr, "later reply: %s\n", switchyard_strerror(s));
    }
  }
}

/* ---- handlers ---- */

struct route_data {
  const char *name;
};

static void free_route_data(void *p) {
  free(p);
  atomic_fetch_add(&g_freed, 1);
}

static int32_t on_echo(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  return switchyard_ctx_reply_json(ctx, req->payload, req->payload_len);
}

static int32_t on_subscribe(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  const char *topic;
  size_t topic_len;
  if (json_string_member(req->payload, req->payload_len, "topic", &topic, &topic_len) != 0) {
    return switchyard_ctx_error(ctx, "invalid_input", "topic must be a string");
  }
  if (switchyard_ctx_subscribe(ctx, topic, topic_len) != SWITCHYARD_OK) {
    return switchyard_ctx_error(ctx, "invalid_input", "bad topic");
  }
  return 0;
}

static int32_t on_publish(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  const char *topic, *data;
  size_t topic_len, data_len;
  if (json_string_member(req->payload, req->payload_len, "topic", &topic, &topic_len) != 0 ||
      json_member(req->payload, req->payload_len, "data", &data, &data_len) != 0) {
    return switchyard_ctx_error(ctx, "invalid_input", "publish needs topic and data");
  }
  if (switchyard_ctx_publish_json(ctx, topic, topic_len, data, data_len) != SWITCHYARD_OK) {
    return switchyard_ctx_error(ctx, "invalid_input", "bad topic or data");
  }
  return 0;
}

static int32_t on_login(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  const char *name;
  size_t name_len;
  if (json_string_member(req->payload, req->payload_len, "name", &name, &name_len) != 0 ||
      name_len == 0 || name_len > 64) {
    return switchyard_ctx_error(ctx, "invalid_input", "name must be a short string");
  }
  char session[128], reply[160];
  int n = snprintf(session, sizeof session, "{\"user\":\"%.*s\"}", (int)name_len, name);
  switchyard_ctx_set_session_json(ctx, session, (size_t)n);
  switchyard_ctx_subscribe(ctx, "room", 4);
  n = snprintf(reply, sizeof reply, "{\"ok\":true,\"user\":\"%.*s\"}", (int)name_len, name);
  return switchyard_ctx_reply_json(ctx, reply, (size_t)n);
}

static int32_t on_whoami(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  char reply[512];
  int n = snprintf(reply, sizeof reply, "{\"session\":%.*s}", (int)req->session_len,
                   req->session);
  if (n < 0 || (size_t)n >= sizeof reply) return switchyard_ctx_error(ctx, "too_big", NULL);
  return switchyard_ctx_reply_json(ctx, reply, (size_t)n);
}

static int32_t on_say(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  const char *text;
  size_t text_len;
  if (json_member(req->payload, req->payload_len, "text", &text, &text_len) != 0) {
    return switchyard_ctx_error(ctx, "invalid_input", "say needs text");
  }
  char event[1024];
  int n = snprintf(event, sizeof event, "{\"from\":%.*s,\"text\":%.*s}", (int)req->session_len,
                   req->session, (int)text_len, text);
  if (n < 0 || (size_t)n >= sizeof event) return switchyard_ctx_error(ctx, "too_big", NULL);
  switchyard_status s =
      switchyard_ctx_publish_except(ctx, "room", 4, event, (size_t)n, req->conn_id);
  if (s != SWITCHYARD_OK) return switchyard_ctx_error(ctx, "invalid_input", "bad text");
  return 0;
}

static int32_t on_fail(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  (void)req;
  return switchyard_ctx_error(ctx, "not_found", "nothing here");
}

static int32_t on_later(void *ud, switchyard_ctx *ctx, const switchyard_request *req) {
  (void)ud;
  (void)req;
  uint64_t id;
  switchyard_status s = switchyard_ctx_defer(ctx, &id);
  if (s != SWITCHYARD_OK) return s;
  pthread_mutex_lock(&later_mu);
  if (later_len == LATER_QUEUE) {
    pthread_mutex_unlock(&later_mu);
    switchyard_engine_reply_error(g_engine, id, "busy", "the worker queue is full");
    return 0;
  }
  later_ids[(later_head + later_len) % LATER_QUEUE] = id;
  later_len++;
  pthread_cond_signal(&later_cv);
  pthread_mutex_unlock(&later_mu);
  return 0;
}

static int add_route(switchyard_channel *ch, const char *name, uint32_t flags,
                     switchyard_handler_fn fn) {
  char err[256] = "";
  struct route_data *ud = malloc(sizeof *ud);
  if (!ud) return 1;
  ud->name = name;
  atomic_fetch_add(&g_registered, 1);
  switchyard_status s =
      switchyard_channel_add_route(ch, name, flags, fn, ud, free_route_data, err, sizeof err);
  return s == SWITCHYARD_OK ? 0 : example_fail("add_route", s, err);
}

int main(int argc, char **argv) {
  struct example_opts o;
  if (example_parse(argc, argv, &o) != 0) return 2;
  if (example_install_signals() != 0) return 1;
  if (SWITCHYARD_ABI_VERSION_MAJOR != switchyard_abi_version() >> 16) {
    fprintf(stderr, "ABI mismatch\n");
    return 1;
  }

  char err[256] = "";
  switchyard_config *cfg = NULL;
  switchyard_status s = switchyard_config_new(&cfg);
  if (s != SWITCHYARD_OK) return example_fail("config_new", s, NULL);
  s = switchyard_config_set_threads(cfg, o.threads, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("threads", s, err);

  switchyard_channel *ch = NULL;
  s = switchyard_channel_new("chat", &ch, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("channel_new", s, err);
  s = switchyard_channel_set_path(ch, o.path, err, sizeof err);
  if (s != SWITCHYARD_OK) return example_fail("set_path", s, err);
  const uint32_t pub = SWITCHYARD_ROUTE_PUBLIC;
  if (add_route(ch, "echo", pub, on_echo) || add_route(ch, "subscribe", pub, on_subscribe) ||
      add_route(ch, "publish", pub, on_publish) || add_route(ch, "login", pub, on_login) ||
      add_route(ch, "whoami", 0, on_whoami) || add_route(ch, "say", 0, on_say) ||
      add_route(ch, "fail", pub, on_fail) || add_route(ch, "later", pub, on_later)) {
    return 1;
  }

  switchyard_channel *channels[1] = {ch};
  s = switchyard_engine_new(cfg, channels, 1, o.addr, &g_engine, err, sizeof err);
  switchyard_config_free(cfg);
  if (s != SWITCHYARD_OK) return example_fail("engine_new", s, err);

  pthread_t worker;
  if (pthread_create(&worker, NULL, later_worker, NULL) != 0) return 1;

  char addr[128];
  switchyard_engine_local_addr(g_engine, addr, sizeof addr);
  printf("listening on ws://%s%s\n", addr, o.path);
  fflush(stdout);

  struct pollfd fds[2];
  for (;;) {
    example_fill_pollfds(fds, o.ignore_stdin);
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (example_should_stop(fds, o.ignore_stdin)) break;
  }

  /* Stop first (later replies are then STALE), then the worker, then free. */
  switchyard_engine_stop(g_engine);
  pthread_mutex_lock(&later_mu);
  later_quit = 1;
  pthread_cond_signal(&later_cv);
  pthread_mutex_unlock(&later_mu);
  pthread_join(worker, NULL);
  switchyard_stats stats;
  if (switchyard_engine_stats(g_engine, &stats) == SWITCHYARD_OK) {
    fprintf(stderr, "messages in %llu, out %llu\n", (unsigned long long)stats.messages_in,
            (unsigned long long)stats.messages_out);
  }
  switchyard_engine_free(g_engine);
  printf("user_data freed: %d of %d\n", atomic_load(&g_freed), atomic_load(&g_registered));
  close(example_signal_pipe[0]);
  close(example_signal_pipe[1]);
  return atomic_load(&g_freed) == atomic_load(&g_registered) ? 0 : 3;
}
