//! The TypeScript writer: the runtime (`runtime.ts`), then per channel the
//! types of every action's input and output and every topic's events, and
//! a client class typed by them.

use std::fmt::Write;

use crate::model::{pascal, ActionDef, ChannelDef, Converter, Manifest, Obj, Ty};

const RUNTIME: &str = include_str!("runtime.ts");

/// Named interfaces for titled objects, one per distinct shape.
#[derive(Default)]
struct Named {
    /// (the object, its name), in the order they were first seen.
    objects: Vec<(Obj, String)>,
    /// Rendered interface declarations.
    decls: String,
}

impl Named {
    fn name_of(&mut self, o: &Obj) -> String {
        if let Some((_, name)) = self.objects.iter().find(|(seen, _)| same_shape(seen, o)) {
            return name.clone();
        }
        let base = o.title.clone().unwrap_or_else(|| o.hint.clone());
        let mut name = base.clone();
        let mut n = 2;
        while self.objects.iter().any(|(_, taken)| *taken == name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.objects.push((o.clone(), name.clone()));
        let body = self.object_body(o, 0);
        let _ = writeln!(
            self.decls,
            "{}export interface {name} {body}\n",
            doc(&o.description, 0)
        );
        name
    }

    fn render(&mut self, ty: &Ty, indent: usize) -> String {
        match ty {
            Ty::Unknown => "unknown".into(),
            Ty::Null => "null".into(),
            Ty::Bool => "boolean".into(),
            Ty::Int | Ty::Num => "number".into(),
            Ty::Str => "string".into(),
            Ty::Lit(v) if v.is_object() || v.is_array() => "unknown".into(),
            Ty::Lit(v) => v.to_string(),
            Ty::Array(item) => format!("Array<{}>", self.render(item, indent)),
            Ty::Map(value) => format!("Record<string, {}>", self.render(value, indent)),
            Ty::Object(o) if o.title.is_some() => self.name_of(o),
            Ty::Object(o) => self.object_body(o, indent),
            Ty::Union(members) => members
                .iter()
                .map(|m| self.render(m, indent))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    fn object_body(&mut self, o: &Obj, indent: usize) -> String {
        if o.props.is_empty() {
            return "Record<string, never>".into();
        }
        let pad = "  ".repeat(indent + 1);
        let mut s = String::from("{\n");
        for p in &o.props {
            let ty = self.render(&p.ty, indent + 1);
            let opt = if p.required { "" } else { "?" };
            let _ = writeln!(
                s,
                "{}{pad}{}{opt}: {ty};",
                doc(&p.description, indent + 1),
                key(&p.name)
            );
        }
        s.push_str(&"  ".repeat(indent));
        s.push('}');
        s
    }
}

fn same_shape(a: &Obj, b: &Obj) -> bool {
    a.title == b.title && a.props == b.props
}

/// A property name, quoted unless it is an identifier.
fn key(name: &str) -> String {
    let ident = name.chars().enumerate().all(|(i, c)| {
        c == '_' || c == '$' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
    });
    if ident && !name.is_empty() {
        name.to_string()
    } else {
        serde_json::to_string(name).expect("a string serialises")
    }
}

fn doc(text: &Option<String>, indent: usize) -> String {
    match text {
        Some(t) => format!(
            "{}/** {} */\n",
            "  ".repeat(indent),
            t.replace("*/", "* /").replace('\n', " ")
        ),
        None => String::new(),
    }
}

/// The TypeScript client for `channels` of `manifest`.
pub fn generate(manifest: &Manifest) -> String {
    let mut out = String::new();
    out.push_str(crate::HEADER_TS);
    out.push_str(RUNTIME);
    let mut named = Named::default();
    let mut types = String::new();
    let mut channel_map = String::new();
    let mut metas = String::new();
    for c in &manifest.channels {
        channel(c, &mut named, &mut types);
        let cn = pascal(&c.name);
        let _ = writeln!(
            channel_map,
            "  {}: {{ actions: {cn}Actions; topics: {cn}Topics }};",
            key(&c.name)
        );
        let unwrap: Vec<String> = c
            .actions
            .iter()
            .filter(|a| unwraps(a))
            .map(|a| serde_json::to_string(&a.name).expect("a string serialises"))
            .collect();
        let _ = writeln!(
            metas,
            "  {}: {{ path: {}, routingKey: {}, unwrap: [{}] }},",
            key(&c.name),
            serde_json::to_string(&c.path).expect("a string serialises"),
            serde_json::to_string(&c.routing_keys[0]).expect("a string serialises"),
            unwrap.join(", ")
        );
    }
    out.push_str(
        "\n// ---------------------------------------------------------------------------\n\
         // Types, from the manifest's JSON Schemas.\n\
         // ---------------------------------------------------------------------------\n\n",
    );
    out.push_str(&named.decls);
    out.push_str(&types);
    let _ = write!(
        out,
        "/** Every channel: its actions and topics. */\n\
         export type Channels = {{\n{channel_map}}};\n\n\
         const CHANNELS = {{\n{metas}}};\n\n\
         /**\n \
         * The typed client: `createClient({{ url: 'ws://127.0.0.1:9001' }}).channel('{first}')`.\n \
         */\n\
         export class SwitchyardClient extends BaseClient<Channels> {{\n  \
           constructor(options: ClientOptions) {{\n    \
             super(options, CHANNELS);\n  \
           }}\n\
         }}\n\n\
         /** A client for the server at `options.url` (e.g. `ws://127.0.0.1:9001`). */\n\
         export function createClient(options: ClientOptions): SwitchyardClient {{\n  \
           return new SwitchyardClient(options);\n\
         }}\n",
        first = manifest
            .channels
            .first()
            .map(|c| c.name.as_str())
            .unwrap_or("name"),
    );
    out
}

/// Whether the action's reply is a non-object, which the reply wraps as
/// `{"result": value}`.
pub fn unwraps(a: &ActionDef) -> bool {
    match &a.output {
        Some(s) => Converter::new(s).convert(s, "X").is_non_object(),
        None => false,
    }
}

fn channel(c: &ChannelDef, named: &mut Named, out: &mut String) {
    let cn = pascal(&c.name);
    let _ = writeln!(
        out,
        "// Channel `{}`: path `{}`, routing key `{}`.\n",
        c.name, c.path, c.routing_keys[0]
    );
    let mut actions = String::new();
    for a in &c.actions {
        let an = format!("{cn}{}", pascal(&a.name));
        // A payload is always an object: a schema of anything else (or
        // none) allows any members.
        let input = match &a.input {
            Some(s) => match Converter::new(s).convert(s, &format!("{an}Input")) {
                ty if ty.is_object() => named.render(&ty, 0),
                _ => "Record<string, unknown>".into(),
            },
            None => "Record<string, unknown>".into(),
        };
        let output = match &a.output {
            Some(s) => {
                let ty = Converter::new(s).convert(s, &format!("{an}Output"));
                named.render(&ty, 0)
            }
            None => "Record<string, unknown>".into(),
        };
        let _ = writeln!(
            out,
            "/** The payload of `{}` on channel `{}`. */\nexport type {an}Input = {input};\n",
            a.name, c.name
        );
        let _ = writeln!(
            out,
            "/** The reply to `{}` on channel `{}`. */\nexport type {an}Output = {output};\n",
            a.name, c.name
        );
        let _ = writeln!(
            actions,
            "  /** {} */\n  {}: {{ input: {an}Input; output: {an}Output }};",
            if a.auth {
                "Needs a session."
            } else {
                "Public: needs no session."
            },
            key(&a.name)
        );
    }
    let mut topics = String::new();
    for t in &c.topics {
        let tn = format!("{}Event", pascal(&t.name));
        let ty = match &t.schema {
            Some(s) => {
                let ty = Converter::new(s).convert(s, &tn);
                named.render(&ty, 0)
            }
            None => "unknown".into(),
        };
        let _ = writeln!(
            out,
            "/** An event on topic `{}`. */\nexport type {tn} = {ty};\n",
            t.name
        );
        let _ = writeln!(topics, "  {}: {tn};", key(&t.name));
    }
    let _ = writeln!(
        out,
        "/** The actions of channel `{}`. */\nexport type {cn}Actions = {{\n{actions}}};\n",
        c.name
    );
    let _ = writeln!(
        out,
        "/** The topics of channel `{}`. */\nexport type {cn}Topics = {{\n{topics}}};\n",
        c.name
    );
}
