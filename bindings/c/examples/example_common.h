/*
 * Shared by the two example servers: flags, a tiny JSON member scanner,
 * and the stop condition (SIGINT, SIGTERM or end of standard input).
 */
#ifndef SWITCHYARD_EXAMPLE_COMMON_H
#define SWITCHYARD_EXAMPLE_COMMON_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchyard.h"

struct example_opts {
  const char *addr;
  const char *path;
  unsigned threads;
  int ignore_stdin;
};

static void example_usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--addr HOST:PORT] [--path /PATH] [--threads N] [--ignore-stdin]\n",
          prog);
}

static int example_parse(int argc, char **argv, struct example_opts *o) {
  o->addr = "127.0.0.1:0";
  o->path = "/chat";
  o->threads = 1;
  o->ignore_stdin = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
      o->addr = argv[++i];
    } else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
      o->path = argv[++i];
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      o->threads = (unsigned)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--ignore-stdin") == 0) {
      o->ignore_stdin = 1;
    } else {
      example_usage(argv[0]);
      return -1;
    }
  }
  return 0;
}

/* Prints the failing call, its status and message; returns 1. */
static int example_fail(const char *what, switchyard_status s, const char *msg) {
  fprintf(stderr, "%s: %s (%s)\n", what, switchyard_strerror(s), msg ? msg : "");
  return 1;
}

/* ---- signals: a self-pipe, so the main loop can poll() for them ---- */

static int example_signal_pipe[2] = {-1, -1};

static void example_on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (write(example_signal_pipe[1], &b, 1) < 0) {
    /* nothing to do: the pipe is full, a stop is already pending */
  }
  errno = saved;
}

static int example_install_signals(void) {
  if (pipe(example_signal_pipe) != 0) return -1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = example_on_signal;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) return -1;
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

/*
 * Handles a readable stdin or signal pipe among `fds` (as set by
 * example_fill_pollfds); returns 1 when the server should stop.
 */
static int example_should_stop(const struct pollfd *fds, int ignore_stdin) {
  if (fds[0].revents) return 1; /* a signal */
  if (!ignore_stdin && fds[1].revents) {
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) return 1; /* end of file (or error) */
  }
  return 0;
}

static void example_fill_pollfds(struct pollfd *fds, int ignore_stdin) {
  fds[0].fd = example_signal_pipe[0];
  fds[0].events = POLLIN;
  fds[0].revents = 0;
  fds[1].fd = ignore_stdin ? -1 : STDIN_FILENO;
  fds[1].events = POLLIN;
  fds[1].revents = 0;
}

/* ---- a tiny JSON scanner: enough to pick top-level members ---- */

static size_t json_skip_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* Index just past the value starting at i, or len on malformed input. */
static size_t json_skip_value(const char *s, size_t len, size_t i) {
  if (i >= len) return len;
  if (s[i] == '"') {
    for (i++; i < len; i++) {
      if (s[i] == '\\') {
        i++;
      } else if (s[i] == '"') {
        return i + 1;
      }
    }
    return len;
  }
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < len; i++) {
      if (s[i] == '"') {
        i = json_skip_value(s, len, i) - 1;
      } else if (s[i] == '{' || s[i] == '[') {
        depth++;
      } else if (s[i] == '}' || s[i] == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return len;
  }
  while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
         s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
    i++;
  return i;
}

/*
 * Finds top-level member `name` of the object `s[0..len]` and sets its raw
 * value span; returns 0 when found.
 */
static int json_member(const char *s, size_t len, const char *name, const char **val,
                       size_t *val_len) {
  size_t nlen = strlen(name);
  size_t i = json_skip_ws(s, len, 0);
  if (i >= len || s[i] != '{') return -1;
  i++;
  for (;;) {
    i = json_skip_ws(s, len, i);
    if (i >= len || s[i] != '"') return -1;
    size_t kstart = i + 1;
    size_t kend = json_skip_value(s, len, i);
    if (kend > len || kend < kstart + 1) return -1;
    size_t klen = kend - 1 - kstart;
    i = json_skip_ws(s, len, kend);
    if (i >= len || s[i] != ':') return -1;
    i = json_skip_ws(s, len, i + 1);
    size_t vend = json_skip_value(s, len, i);
    if (klen == nlen && memcmp(s + kstart, name, nlen) == 0) {
      *val = s + i;
      *val_len = vend - i;
      return 0;
    }
    i = json_skip_ws(s, len, vend);
    if (i >= len || s[i] != ',') return -1;
    i++;
  }
}

/* A string member without escapes, as (pointer, length) inside s. */
static int json_string_member(const char *s, size_t len, const char *name, const char **out,
                              size_t *out_len) {
  const char *v;
  size_t vl;
  if (json_member(s, len, name, &v, &vl) != 0 || vl < 2 || v[0] != '"') return -1;
  if (memchr(v + 1, '\\', vl - 2) != NULL) return -1;
  *out = v + 1;
  *out_len = vl - 2;
  return 0;
}

#endif
