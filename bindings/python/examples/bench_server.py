"""The benchmark peer protocol (engine/examples/bench_server.rs) on the
Python host, for the load generator (engine/benches/loadgen.rs).

    python bindings/python/examples/bench_server.py [--addr 127.0.0.1:0] [--threads 1] [--ignore-stdin]

One channel at ``/bench``, every action public and not exclusive:

- ``echo``: the reply is the request, payload untouched;
- ``subscribe {topic}``: subscribes the connection, then acks;
- ``publish {topic, data}``: publishes ``data`` to ``topic``, then acks.

``--async`` registers ``echo`` as an ``async def`` (``--eager on|off``
chooses how it starts). Prints ``listening on ws://ADDR/bench`` first, then runs until its standard
input reaches end of file, or SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any, Optional

try:  # the installed package, else the source tree beside this example
    import switchyard  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from switchyard import Context, Engine, SwitchyardError

MAX_OUTBOX_BYTES = 8 << 20


def build(threads: int, async_echo: bool = False, eager: Optional[bool] = None) -> Engine:
    engine = Engine(threads=threads, max_outbox_bytes=MAX_OUTBOX_BYTES, eager_tasks=eager)
    bench = engine.channel("bench")

    if async_echo:

        @bench.action("echo", auth=False, exclusive=False)
        async def echo_async(ctx: Context, data: Any) -> Any:
            return data

    else:

        @bench.action("echo", auth=False, exclusive=False)
        def echo(ctx: Context, data: Any) -> Any:
            return data

    @bench.action("subscribe", auth=False, exclusive=False)
    def subscribe(ctx: Context, data: Any) -> None:
        topic = data.get("topic")
        if not isinstance(topic, str):
            raise SwitchyardError("invalid_input", "`topic` must be a string")
        ctx.subscribe(topic)

    @bench.action("publish", auth=False, exclusive=False)
    def publish(ctx: Context, data: Any) -> None:
        topic = data.get("topic")
        if not isinstance(topic, str) or "data" not in data:
            raise SwitchyardError("invalid_input", "publish needs `topic` and `data`")
        ctx.publish(topic, data["data"])

    return engine


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ignore-stdin", action="store_true")
    p.add_argument("--async", dest="async_echo", action="store_true", help="echo with an async def handler")
    p.add_argument("--eager", choices=["on", "off"], help="eager_tasks (default: the engine's)")
    args = p.parse_args()
    if args.threads < 1:
        p.error("--threads must be 1 or more")
    eager = None if args.eager is None else args.eager == "on"
    engine = build(args.threads, args.async_echo, eager)
    try:
        addr = await engine.listen(args.addr)
    except Exception as e:
        print(f"bench_server: cannot listen on {args.addr}: {e}", file=sys.stderr)
        return 1
    print(f"listening on ws://{addr}/bench", flush=True)
    from switchyard import engine as _engine_module

    print(f"bench_server: JSON through {_engine_module.JSON_BACKEND}", file=sys.stderr, flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not args.ignore_stdin:
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(fd)
                stop.set()

        os.set_blocking(fd, False)
        try:
            loop.add_reader(fd, on_stdin)
        except PermissionError:
            # A regular file or /dev/null cannot be polled; it ends at once.
            stop.set()
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    await engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
