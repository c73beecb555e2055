"""Switchyard for Python: an asyncio host over libswitchyard's completion
queue.

```python
from switchyard import Engine, SwitchyardError

engine = Engine(threads=2)
todos = engine.channel("todos")

@todos.action("create")
async def create(ctx, data):
    ...

await engine.listen("127.0.0.1:9001")
```
"""

from .engine import (
    Channel,
    Context,
    Engine,
    Handler,
    Hook,
    Json,
    Middleware,
    Next,
    Outbound,
    Route,
    UpgradeHook,
    UpgradeRequest,
)
from .errors import EngineError, SwitchyardError

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "Context",
    "Engine",
    "EngineError",
    "Handler",
    "Hook",
    "Json",
    "Middleware",
    "Next",
    "Outbound",
    "Route",
    "SwitchyardError",
    "UpgradeHook",
    "UpgradeRequest",
    "__version__",
]
