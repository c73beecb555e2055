//! The manifest, read into channels, actions and topics, and JSON Schemas
//! turned into a small type model that both writers render.

use serde_json::Value;

/// A manifest (`{"switchyard": 1, "channels": [...]}`).
#[derive(Debug)]
pub struct Manifest {
    pub channels: Vec<ChannelDef>,
}

/// One channel of the manifest.
#[derive(Debug)]
pub struct ChannelDef {
    pub name: String,
    pub path: String,
    pub routing_keys: Vec<String>,
    pub actions: Vec<ActionDef>,
    pub topics: Vec<TopicDef>,
}

/// One route.
#[derive(Debug)]
pub struct ActionDef {
    pub name: String,
    pub auth: bool,
    /// `None` when the manifest declares no input schema.
    pub input: Option<Value>,
    pub output: Option<Value>,
}

/// One topic and its event schema.
#[derive(Debug)]
pub struct TopicDef {
    pub name: String,
    pub schema: Option<Value>,
}

impl Manifest {
    /// Reads a manifest; the error says what is wrong with it.
    pub fn from_json(v: &Value) -> Result<Manifest, String> {
        match v.get("switchyard") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            Some(other) => return Err(format!("unsupported manifest version {other}")),
            None => return Err("not a Switchyard manifest: no \"switchyard\" member".into()),
        }
        let channels = v
            .get("channels")
            .and_then(Value::as_array)
            .ok_or("the manifest has no \"channels\" array")?;
        let mut out = Vec::new();
        for c in channels {
            let name = str_member(c, "name")?;
            let path = c
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("/{name}"));
            let routing_keys: Vec<String> = match c.get("routingKeys").and_then(Value::as_array) {
                Some(keys) => keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                None => vec!["action".to_string()],
            };
            if routing_keys.is_empty() {
                return Err(format!("channel '{name}' has no routing key"));
            }
            let mut actions = Vec::new();
            for r in c
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                actions.push(ActionDef {
                    name: str_member(r, "name")?,
                    auth: r.get("auth").and_then(Value::as_bool).unwrap_or(true),
                    input: schema_member(r, "input"),
                    output: schema_member(r, "output"),
                });
            }
            actions.sort_by(|a, b| a.name.cmp(&b.name));
            let mut topics = Vec::new();
            for t in c
                .get("topics")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                topics.push(TopicDef {
                    name: str_member(t, "name")?,
                    schema: schema_member(t, "schema"),
                });
            }
            out.push(ChannelDef {
                name,
                path,
                routing_keys,
                actions,
                topics,
            });
        }
        Ok(Manifest { channels: out })
    }
}

fn str_member(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("manifest entry without a string \"{key}\": {v}"))
}

fn schema_member(v: &Value, key: &str) -> Option<Value> {
    match v.get(key) {
        None | Some(Value::Null) => None,
        Some(s) => Some(s.clone()),
    }
}

/// A type, as both writers see it.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// Anything (`unknown`, `object`).
    Unknown,
    Null,
    Bool,
    Int,
    Num,
    Str,
    /// One JSON value (`const`, or one member of an `enum`).
    Lit(Value),
    Array(Box<Ty>),
    /// An object with declared properties.
    Object(Obj),
    /// An object with no declared properties: values of the given type.
    Map(Box<Ty>),
    Union(Vec<Ty>),
}

/// An object with declared properties.
#[derive(Clone, Debug, PartialEq)]
pub struct Obj {
    /// From the schema's `title`, when it has one.
    pub title: Option<String>,
    /// A name built from where the object sits (`TodosCreateOutput`), for
    /// writers that must name every object.
    pub hint: String,
    pub props: Vec<Prop>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prop {
    pub name: String,
    pub ty: Ty,
    pub required: bool,
    pub description: Option<String>,
}

impl Ty {
    /// Whether every value of this type is something other than a JSON
    /// object (a scalar or an array), so the reply wraps it as
    /// `{"result": value}`.
    pub fn is_non_object(&self) -> bool {
        match self {
            Ty::Null | Ty::Bool | Ty::Int | Ty::Num | Ty::Str | Ty::Array(_) => true,
            Ty::Lit(v) => !v.is_object(),
            Ty::Union(v) => v.iter().all(Ty::is_non_object),
            Ty::Unknown | Ty::Object(_) | Ty::Map(_) => false,
        }
    }

    /// Whether a value of this type is a JSON object, so the reply carries
    /// its members (otherwise the reply wraps it as `{"result": value}`).
    pub fn is_object(&self) -> bool {
        match self {
            Ty::Object(_) | Ty::Map(_) => true,
            Ty::Union(v) => !v.is_empty() && v.iter().all(Ty::is_object),
            _ => false,
        }
    }
}

/// Converts JSON Schemas into [`Ty`]: `type` (one or a list), `properties`,
/// `required`, `additionalProperties`, `items`, `enum`, `const`, `oneOf`,
/// `anyOf`, a one-member `allOf`, `nullable`, and local `$ref`s into
/// `#/$defs/` or `#/definitions/`. Anything else is [`Ty::Unknown`].
pub struct Converter<'a> {
    root: &'a Value,
    refs: Vec<String>,
}

impl<'a> Converter<'a> {
    pub fn new(root: &'a Value) -> Converter<'a> {
        Converter {
            root,
            refs: Vec::new(),
        }
    }

    /// The type of `schema`; `hint` names objects that have no title.
    pub fn convert(&mut self, schema: &Value, hint: &str) -> Ty {
        let Some(o) = schema.as_object() else {
            // `true` (anything), `false` (nothing) or garbage.
            return Ty::Unknown;
        };
        if let Some(r) = o.get("$ref").and_then(Value::as_str) {
            return self.reference(r, hint);
        }
        if let Some(c) = o.get("const") {
            return Ty::Lit(c.clone());
        }
        if let Some(values) = o.get("enum").and_then(Value::as_array) {
            return union(values.iter().cloned().map(Ty::Lit).collect());
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = o.get(key).and_then(Value::as_array) {
                let tys = variants
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.convert(v, &format!("{hint}{}", i + 1)))
                    .collect();
                return union(tys);
            }
        }
        if let Some([only]) = o.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            return self.convert(only, hint);
        }
        let ty = match o.get("type") {
            Some(Value::String(t)) => self.of_type(t, schema, hint),
            Some(Value::Array(types)) => union(
                types
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|t| self.of_type(t, schema, hint))
                    .collect(),
            ),
            _ if o.contains_key("properties") => self.of_type("object", schema, hint),
            _ if o.contains_key("items") => self.of_type("array", schema, hint),
            _ => Ty::Unknown,
        };
        if o.get("nullable").and_then(Value::as_bool) == Some(true) {
            return union(vec![ty, Ty::Null]);
        }
        ty
    }

    fn of_type(&mut self, t: &str, schema: &Value, hint: &str) -> Ty {
        match t {
            "null" => Ty::Null,
            "boolean" => Ty::Bool,
            "integer" => Ty::Int,
            "number" => Ty::Num,
            "string" => Ty::Str,
            "array" => Ty::Array(Box::new(match schema.get("items") {
                Some(items) => self.convert(items, &format!("{hint}Item")),
                None => Ty::Unknown,
            })),
            "object" => self.object(schema, hint),
            _ => Ty::Unknown,
        }
    }

    fn object(&mut self, schema: &Value, hint: &str) -> Ty {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Ty::Map(Box::new(match schema.get("additionalProperties") {
                Some(Value::Object(_)) => {
                    self.convert(&schema["additionalProperties"], &format!("{hint}Value"))
                }
                _ => Ty::Unknown,
            }));
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (name, prop) in props {
            out.push(Prop {
                name: name.clone(),
                ty: self.convert(prop, &format!("{hint}{}", pascal(name))),
                required: required.contains(&name.as_str()),
                description: description(prop),
            });
        }
        Ty::Object(Obj {
            title: schema
                .get("title")
                .and_then(Value::as_str)
                .map(pascal)
                .filter(|t| !t.is_empty()),
            hint: hint.to_string(),
            props: out,
            description: description(schema),
        })
    }

    fn reference(&mut self, r: &str, hint: &str) -> Ty {
        let name = r.rsplit('/').next().unwrap_or(hint).to_string();
        let target = ["#/$defs/", "#/definitions/"]
            .iter()
            .find_map(|prefix| r.strip_prefix(prefix))
            .and_then(|n| {
                self.root
                    .get(if r.starts_with("#/$defs/") {
                        "$defs"
                    } else {
                        "definitions"
                    })?
                    .get(n)
            });
        match target {
            // A recursive type is not expanded again.
            Some(_) if self.refs.iter().any(|seen| seen == r) => Ty::Unknown,
            Some(t) => {
                self.refs.push(r.to_string());
                let mut ty = self.convert(t, &pascal(&name));
                self.refs.pop();
                if let Ty::Object(o) = &mut ty {
                    o.title.get_or_insert_with(|| pascal(&name));
                }
                ty
            }
            None => Ty::Unknown,
        }
    }
}

fn description(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A union of `tys`, flattened, without repeats; one member is itself.
pub fn union(tys: Vec<Ty>) -> Ty {
    let mut out: Vec<Ty> = Vec::new();
    for t in tys {
        let members = match t {
            Ty::Union(inner) => inner,
            other => vec![other],
        };
        for m in members {
            if m == Ty::Unknown {
                return Ty::Unknown;
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    match out.len() {
        0 => Ty::Unknown,
        1 => out.pop().expect("one member"),
        _ => Ty::Union(out),
    }
}

/// `todos:updated` → `TodosUpdated`, `user_id` → `UserId`.
pub fn pascal(s: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_the_listed_keywords() {
        let s = json!({
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"enum": ["x", "y"]},
                "c": {"type": "array", "items": {"type": "integer"}},
                "d": {"oneOf": [{"const": 1}, {"type": "boolean"}]},
                "e": {"$ref": "#/$defs/Thing"},
                "f": {"not": {}}
            },
            "required": ["a"],
            "$defs": {"Thing": {"type": "object", "properties": {"x": {"type": "number"}}}}
        });
        let Ty::Object(o) = Converter::new(&s).convert(&s, "Root") else {
            panic!("an object")
        };
        assert_eq!(o.props[0].ty, Ty::Union(vec![Ty::Str, Ty::Null]));
        assert!(o.props[0].required && !o.props[1].required);
        assert_eq!(
            o.props[1].ty,
            Ty::Union(vec![Ty::Lit(json!("x")), Ty::Lit(json!("y"))])
        );
        assert_eq!(o.props[2].ty, Ty::Array(Box::new(Ty::Int)));
        assert_eq!(o.props[3].ty, Ty::Union(vec![Ty::Lit(json!(1)), Ty::Bool]));
        let Ty::Object(thing) = &o.props[4].ty else {
            panic!("a ref to an object")
        };
        assert_eq!(thing.title.as_deref(), Some("Thing"));
        assert_eq!(o.props[5].ty, Ty::Unknown);
    }

    #[test]
    fn recursive_refs_stop() {
        let s = json!({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"});
        let Ty::Object(o) = Converter::new(&s).convert(&s, "Root") else {
            panic!("an object")
        };
        assert_eq!(o.props[0].ty, Ty::Unknown);
    }

    #[test]
    fn pascal_case() {
        assert_eq!(pascal("todos:updated"), "TodosUpdated");
        assert_eq!(pascal("user_id"), "UserId");
        assert_eq!(pascal("9lives"), "T9lives");
    }
}
