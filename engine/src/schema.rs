//! JSON Schemas: routes' input and output schemas and topics' event
//! schemas, compiled once at start, and the channel manifest that lists
//! them for typed clients.
//!
//! Input schemas are enforced: a payload that fails gets `invalid_input`
//! with a message naming the failing member (`/text: "" is shorter than 1
//! character`). Output and event schemas are declarations for clients.

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::handler::HandlerError;

/// A compiled input schema.
#[derive(Clone)]
pub(crate) struct InputSchema {
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InputSchema")
    }
}

impl InputSchema {
    /// Compiles `schema`; the error says why it is not a valid schema.
    pub(crate) fn compile(schema: &Value) -> Result<InputSchema, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        Ok(InputSchema {
            validator: Arc::new(validator),
        })
    }

    /// Checks a payload; the error names the first failing member.
    pub(crate) fn check(&self, payload: &Value) -> Result<(), HandlerError> {
        match self.validator.iter_errors(payload).next() {
            None => Ok(()),
            Some(e) => {
                let path = e.instance_path().to_string();
                let message = if path.is_empty() {
                    format!("payload: {e}")
                } else {
                    format!("{path}: {e}")
                };
                Err(HandlerError::invalid_input(message))
            }
        }
    }
}

/// Checks that `schema` is a valid JSON Schema, the way route input
/// schemas are compiled when the engine starts; the error says why not.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    InputSchema::compile(schema).map(|_| ())
}

/// The manifest of one route.
pub(crate) fn route_manifest(
    name: &str,
    public: bool,
    input: Option<&Value>,
    output: Option<&Value>,
) -> Value {
    json!({
        "name": name,
        "auth": !public,
        "input": input.cloned().unwrap_or(Value::Null),
        "output": output.cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_failing_member() {
        let s = InputSchema::compile(&json!({
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 5}},
            "required": ["text"],
        }))
        .unwrap();
        assert!(s.check(&json!({"text": "abc"})).is_ok());
        let e = s.check(&json!({"text": ""})).unwrap_err();
        assert_eq!(e.code(), "invalid_input");
        assert!(e.message().starts_with("/text: "), "{}", e.message());
        let e = s.check(&json!({})).unwrap_err();
        assert!(e.message().contains("text"), "{}", e.message());
        // minLength counts characters, not bytes.
        assert!(s.check(&json!({"text": "ééééé"})).is_ok());
    }

    #[test]
    fn a_bad_schema_is_an_error() {
        assert!(InputSchema::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
