//! The Python writer: the runtime (`runtime.py`), then a `TypedDict` for
//! every object in the schemas, and per channel a class whose `send` and
//! `subscribe` are typed by overloads.

use std::fmt::Write;

use serde_json::Value;

use crate::model::{pascal, ChannelDef, Converter, Manifest, Obj, Ty};

const RUNTIME: &str = include_str!("runtime.py");

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A `TypedDict` for every object, one per distinct shape and name.
#[derive(Default)]
struct Named {
    objects: Vec<(Obj, String)>,
    decls: String,
}

impl Named {
    fn name_of(&mut self, o: &Obj) -> String {
        let base = o.title.clone().unwrap_or_else(|| o.hint.clone());
        if let Some((_, name)) = self.objects.iter().find(|(seen, _)| {
            seen.title.as_ref().unwrap_or(&seen.hint) == &base && seen.props == o.props
        }) {
            return name.clone();
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.objects.iter().any(|(_, taken)| *taken == name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.objects.push((o.clone(), name.clone()));
        // Members first, so every class is defined before it is used.
        let members: Vec<(String, String)> = o
            .props
            .iter()
            .map(|p| {
                let ty = self.render(&p.ty);
                let ty = if p.required {
                    ty
                } else {
                    format!("NotRequired[{ty}]")
                };
                (p.name.clone(), ty)
            })
            .collect();
        let class_syntax = o.props.iter().all(|p| is_ident(&p.name));
        if class_syntax {
            let _ = writeln!(self.decls, "\nclass {name}(TypedDict):");
            if let Some(d) = &o.description {
                let _ = writeln!(self.decls, "    {}", docstring(d));
            }
            for ((n, ty), p) in members.iter().zip(&o.props) {
                let _ = writeln!(self.decls, "    {n}: {ty}");
                if let Some(d) = &p.description {
                    let _ = writeln!(self.decls, "    {}", docstring(d));
                }
            }
            if members.is_empty() && o.description.is_none() {
                let _ = writeln!(self.decls, "    pass");
            }
            self.decls.push('\n');
        } else {
            let fields: Vec<String> = members
                .iter()
                .map(|(n, ty)| format!("{}: {ty}", py_str(n)))
                .collect();
            let _ = writeln!(
                self.decls,
                "\n{name} = TypedDict({}, {{{}}})\n",
                py_str(&name),
                fields.join(", ")
            );
        }
        name
    }

    fn render(&mut self, ty: &Ty) -> String {
        match ty {
            Ty::Unknown => "object".into(),
            Ty::Null => "None".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Num => "float".into(),
            Ty::Str => "str".into(),
            Ty::Lit(v) => literal(v).unwrap_or_else(|| match v {
                Value::Number(_) => "float".into(),
                _ => "object".into(),
            }),
            Ty::Array(item) => format!("list[{}]", self.render(item)),
            Ty::Map(value) => format!("dict[str, {}]", self.render(value)),
            Ty::Object(o) => self.name_of(o),
            Ty::Union(members) => {
                let mut lits = Vec::new();
                let mut others = Vec::new();
                for m in members {
                    match m {
                        Ty::Lit(v) if literal(v).is_some() => lits.push(literal_value(v)),
                        other => others.push(self.render(other)),
                    }
                }
                if !lits.is_empty() {
                    others.insert(0, format!("Literal[{}]", lits.join(", ")));
                }
                others.join(" | ")
            }
        }
    }
}

/// `Literal[...]` for a string, integer, boolean or null.
fn literal(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("None".into()),
        Value::Number(n) if !n.is_i64() && !n.is_u64() => None,
        Value::String(_) | Value::Bool(_) | Value::Number(_) => {
            Some(format!("Literal[{}]", literal_value(v)))
        }
        _ => None,
    }
}

fn literal_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => py_str(s),
        other => other.to_string(),
    }
}

fn py_str(s: &str) -> String {
    // A JSON string is a valid Python string literal.
    serde_json::to_string(s).expect("a string serialises")
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !KEYWORDS.contains(&s)
        && s.chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

fn docstring(text: &str) -> String {
    format!(
        "\"\"\"{}\"\"\"",
        text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"")
    )
}

struct ActionTypes {
    name: String,
    input: String,
    output: String,
    /// The payload may be left out (no required member).
    optional: bool,
}

/// The Python client for `manifest`.
pub fn generate(manifest: &Manifest) -> String {
    let mut out = String::new();
    out.push_str(crate::HEADER_PY);
    out.push_str(RUNTIME);
    let mut named = Named::default();
    let mut aliases = String::new();
    let mut classes = String::new();
    let mut overloads = Vec::new();
    for c in &manifest.channels {
        let (class, overload) = channel(c, &mut named, &mut aliases);
        classes.push_str(&class);
        overloads.push(overload);
    }
    out.push_str(
        "\n\n# ---------------------------------------------------------------------------\n\
         # Types, from the manifest's JSON Schemas.\n\
         # ---------------------------------------------------------------------------\n",
    );
    out.push_str(&named.decls);
    out.push_str(&aliases);
    out.push_str(&classes);
    out.push_str(&client(manifest, &overloads));
    out
}

fn channel(c: &ChannelDef, named: &mut Named, aliases: &mut String) -> (String, String) {
    let cn = pascal(&c.name);
    let mut actions = Vec::new();
    for a in &c.actions {
        let an = format!("{cn}{}", pascal(&a.name));
        let mut alias = |schema: &Option<Value>, suffix: &str| -> (String, bool) {
            let name = format!("{an}{suffix}");
            let (rendered, optional) = match schema {
                // A payload is always an object: a schema of anything else
                // allows any members.
                Some(s)
                    if suffix == "Input" && !Converter::new(s).convert(s, &name).is_object() =>
                {
                    ("dict[str, Any]".to_string(), true)
                }
                Some(s) => {
                    let ty = Converter::new(s).convert(s, &name);
                    let optional = match &ty {
                        Ty::Object(o) => o.props.iter().all(|p| !p.required),
                        Ty::Map(_) | Ty::Unknown => true,
                        _ => false,
                    };
                    (named.render(&ty), optional)
                }
                None => ("dict[str, Any]".to_string(), true),
            };
            if rendered != name {
                let _ = writeln!(aliases, "{name}: TypeAlias = {rendered}");
            }
            (name, optional)
        };
        let (input, optional) = alias(&a.input, "Input");
        let (output, _) = alias(&a.output, "Output");
        actions.push(ActionTypes {
            name: a.name.clone(),
            input,
            output,
            optional,
        });
    }
    let mut topics = Vec::new();
    for t in &c.topics {
        let tn = format!("{}Event", pascal(&t.name));
        let rendered = match &t.schema {
            Some(s) => {
                let ty = Converter::new(s).convert(s, &tn);
                named.render(&ty)
            }
            None => "Any".into(),
        };
        if rendered != tn {
            let _ = writeln!(aliases, "{tn}: TypeAlias = {rendered}");
        }
        topics.push((t.name.clone(), tn));
    }

    let mut s = String::new();
    let _ = write!(
        s,
        "\n\nclass {cn}Channel:\n    \
         \"\"\"Channel `{name}`: path `{path}`, routing key `{key}`.\"\"\"\n\n    \
         def __init__(self, conn: _Connection, direct: bool = False) -> None:\n        \
         self._conn = conn\n        \
         self._direct = direct\n\n    \
         @property\n    \
         def status(self) -> ChannelStatus:\n        \
         return self._conn.status\n\n    \
         async def ready(self) -> None:\n        \
         \"\"\"Waits until the channel is open and `on_open` has run.\"\"\"\n        \
         await self._conn.wait_ready()\n\n    \
         async def close(self) -> None:\n        \
         await self._conn.close()\n",
        name = c.name,
        path = c.path,
        key = c.routing_keys[0],
    );
    let many = actions.len() > 1;
    for a in &actions {
        let payload = if a.optional {
            format!("payload: {} | None = None", a.input)
        } else {
            format!("payload: {}", a.input)
        };
        if many {
            s.push_str("\n    @overload");
        }
        let _ = write!(
            s,
            "\n    async def send(\n        self,\n        action: Literal[{}],\n        {payload},\n        *,\n        timeout: float | None = None,\n    ) -> {}:",
            py_str(&a.name),
            a.output
        );
        if many {
            s.push_str(" ...\n");
        } else {
            s.push_str("\n        return await self._conn.request(action, payload, timeout, self._direct)  # type: ignore[no-any-return]\n");
        }
    }
    if many {
        s.push_str(
            "\n    async def send(\n        self,\n        action: str,\n        payload: Mapping[str, Any] | None = None,\n        *,\n        timeout: float | None = None,\n    ) -> Any:\n        \
             \"\"\"Sends `action` and returns the typed reply; raises `SwitchyardError`.\"\"\"\n        \
             return await self._conn.request(action, payload, timeout, self._direct)\n",
        );
    }
    let many_topics = topics.len() > 1;
    for (name, tn) in &topics {
        if many_topics {
            s.push_str("\n    @overload");
        }
        let _ = write!(
            s,
            "\n    def subscribe(\n        self, topic: Literal[{}], listener: Callable[[{tn}], object]\n    ) -> Subscription:",
            py_str(name)
        );
        if many_topics {
            s.push_str(" ...\n");
        } else {
            s.push_str("\n        \"\"\"Calls `listener` with every event on `topic`; call the result to stop.\"\"\"\n        return self._conn.subscribe(topic, listener)\n");
        }
    }
    if many_topics {
        s.push_str(
            "\n    def subscribe(self, topic: str, listener: Callable[[Any], object]) -> Subscription:\n        \
             \"\"\"Calls `listener` with every event on `topic`; call the result to stop.\"\"\"\n        \
             return self._conn.subscribe(topic, listener)\n",
        );
    }

    let meta_unwrap: Vec<String> = c
        .actions
        .iter()
        .filter(|a| crate::ts::unwraps(a))
        .map(|a| py_str(&a.name))
        .collect();
    let overload = format!(
        "    def channel(\n        self,\n        name: Literal[{name}],\n        *,\n        \
         on_open: Callable[[{cn}Channel], Awaitable[None]] | None = None,\n        \
         topics: Mapping[str, TopicActions] | None = None,\n        \
         on_push: Callable[[dict[str, Any]], object] | None = None,\n        \
         on_status: Callable[[ChannelStatus], object] | None = None,\n        \
         on_error: Callable[[BaseException], object] | None = None,\n        \
         timeout: float | None = None,\n        \
         reconnect: bool | Reconnect | None = None,\n        \
         url: str | None = None,\n    \
         ) -> {cn}Channel:@@BODY@@\n",
        name = py_str(&c.name),
    );
    let body = format!(
        "\n        conn = self._connection(\n            \
         {name},\n            {path},\n            {key},\n            frozenset({{{unwrap}}}),\n            \
         timeout,\n            reconnect,\n            topics,\n            on_push,\n            on_status,\n            on_error,\n            url,\n        )\n        \
         if on_open is not None:\n            \
         direct = {cn}Channel(conn, True)\n            \
         hook = on_open\n\n            \
         async def run_on_open() -> None:\n                \
         await hook(direct)\n\n            \
         conn._on_open = run_on_open\n        \
         return {cn}Channel(conn)\n",
        name = py_str(&c.name),
        path = py_str(&c.path),
        key = py_str(&c.routing_keys[0]),
        unwrap = meta_unwrap.join(", "),
    );
    (s, format!("{overload}\x00{body}"))
}

fn client(manifest: &Manifest, overloads: &[String]) -> String {
    let mut s = String::new();
    let first = manifest
        .channels
        .first()
        .map(|c| c.name.as_str())
        .unwrap_or("name");
    let _ = write!(
        s,
        "\n\nclass SwitchyardClient:\n    \
         \"\"\"The typed client: `SwitchyardClient(\"ws://127.0.0.1:9001\").channel(\"{first}\")`.\n\n    \
         Each channel opens its own connection, reconnecting with backoff.\n    \
         Create it inside a running event loop.\n    \
         \"\"\"\n\n    \
         def __init__(\n        self, url: str, *, timeout: float = 10.0, reconnect: bool | Reconnect = True\n    ) -> None:\n        \
         self.url = url\n        \
         self._timeout = timeout\n        \
         self._reconnect = reconnect\n        \
         self._channels: dict[str, _Connection] = {{}}\n\n    \
         def _connection(\n        self,\n        name: str,\n        path: str,\n        routing_key: str,\n        unwrap: frozenset[str],\n        \
         timeout: float | None,\n        reconnect: bool | Reconnect | None,\n        topics: Mapping[str, TopicActions] | None,\n        \
         on_push: Callable[[dict[str, Any]], object] | None,\n        on_status: Callable[[ChannelStatus], object] | None,\n        \
         on_error: Callable[[BaseException], object] | None,\n        url: str | None,\n    ) -> _Connection:\n        \
         if name in self._channels:\n            \
         raise ValueError(f\"channel {{name!r}} is already open\")\n        \
         conn = _Connection(\n            \
         url if url is not None else _join_url(self.url, path),\n            \
         routing_key,\n            unwrap,\n            \
         timeout=self._timeout if timeout is None else timeout,\n            \
         reconnect=self._reconnect if reconnect is None else reconnect,\n            \
         on_open=None,\n            topics=topics,\n            on_push=on_push,\n            on_status=on_status,\n            on_error=on_error,\n        )\n        \
         self._channels[name] = conn\n        \
         return conn\n\n    \
         async def close(self) -> None:\n        \
         \"\"\"Closes every channel.\"\"\"\n        \
         conns = list(self._channels.values())\n        \
         self._channels.clear()\n        \
         for conn in conns:\n            \
         await conn.close()\n\n    \
         async def __aenter__(self) -> \"SwitchyardClient\":\n        \
         return self\n\n    \
         async def __aexit__(self, *exc: object) -> None:\n        \
         await self.close()\n"
    );
    let many = overloads.len() > 1;
    for o in overloads {
        let (sig, body) = o.split_once('\x00').expect("signature and body");
        if many {
            s.push_str("\n    @overload\n");
            s.push_str(&sig.replace("@@BODY@@", " ..."));
        } else {
            s.push('\n');
            s.push_str(&sig.replace("@@BODY@@", ""));
            s.push_str("        \"\"\"The channel, connected now (its options apply from the start).\"\"\"");
            s.push_str(body);
        }
    }
    if many {
        // One implementation dispatching on the name.
        s.push_str("\n    def channel(self, name: str, **options: Any) -> Any:\n        \"\"\"The channel, connected now.\"\"\"\n");
        for (c, o) in manifest.channels.iter().zip(overloads) {
            let _ = writeln!(
                s,
                "        if name == {}:\n            return self._channel_{}(**options)",
                py_str(&c.name),
                pascal(&c.name)
            );
            let (sig, body) = o.split_once('\x00').expect("signature and body");
            let _ = sig;
            let _ = body;
        }
        s.push_str("        raise ValueError(f\"no channel {name!r}\")\n");
        for (c, o) in manifest.channels.iter().zip(overloads) {
            let (sig, body) = o.split_once('\x00').expect("signature and body");
            let sig = sig
                .replace(
                    "    def channel(\n        self,\n",
                    &format!("    def _channel_{}(\n        self,\n", pascal(&c.name)),
                )
                .replace(
                    &format!("        name: Literal[{}],\n        *,\n", py_str(&c.name)),
                    "        *,\n",
                )
                .replace("@@BODY@@", "");
            s.push('\n');
            s.push_str(&sig);
            s.push_str(body);
        }
    }
    s
}
