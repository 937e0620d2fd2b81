//! The JSON Schema of the fields the edges check, written from the same rules as the domain
//! types and handlers that check them (`ListSlug`, `DisplayName`, `HeaderText`, ...), so that a
//! request valid by the document is refused only for what a schema cannot say (a list that does
//! not exist, a sender on another domain, a template that does not compile).
//!
//! Patterns use only what ECMA-262 and Python's `re` read alike (schema tools of both kinds read
//! them). `WS` is exactly the whitespace `str::trim` removes (Unicode `White_Space`), and `CC`
//! the control characters `char::is_control` finds (`Cc`).

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

const WS: &str = r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const CC: &str = r"\u0000-\u001f\u007f-\u009f";

/// A schema written as JSON Schema, for what `#[derive(ToSchema)]` cannot say.
pub fn schema(value: Value) -> RefOr<Schema> {
    let schema: RefOr<Schema> = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a schema utoipa can hold ({e}): {value}"));
    // utoipa drops a keyword it does not know; tests build the document, and so catch it.
    debug_assert_eq!(
        serde_json::to_value(&schema).ok(),
        Some(value),
        "a keyword was dropped"
    );
    schema
}

/// `T` or `null` (serde reads `null` as an absent `Option`).
pub fn or_null(mut schema: Value) -> Value {
    if let Some(Value::String(t)) = schema.get("type").cloned() {
        schema["type"] = json!([t, "null"]);
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.push(Value::Null);
    }
    schema
}

/// Text that is trimmed, then must be 1 to `max` characters with no control character: a
/// name on one line (`DisplayName`, a list's name). Whitespace around it is allowed.
pub fn trimmed_line(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": format!("^[{WS}]*[^{WS}{CC}]([^{CC}]{{0,{}}}[^{WS}{CC}])?[{WS}]*$", max - 2),
    })
}

/// [`trimmed_line`], or only whitespace for none.
pub fn optional_trimmed_line(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": format!("^[{WS}]*([^{WS}{CC}]([^{CC}]{{0,{}}}[^{WS}{CC}])?)?[{WS}]*$", max - 2),
    })
}

/// Only whitespace, or nothing: a text field left blank.
pub fn blank() -> Value {
    json!({ "type": "string", "pattern": format!("^[{WS}]*$") })
}

/// Text kept exactly as written (`HeaderText`): at most `max` characters, not only
/// whitespace, no control character (so no line break).
pub fn header_text(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "maxLength": max,
        "pattern": format!("^[^{CC}]*[^{WS}{CC}][^{CC}]*$"),
    })
}

/// Text that is trimmed, then must be 1 to `max` characters (line breaks allowed).
pub fn trimmed_text(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": format!("^[{WS}]*[^{WS}]([\\s\\S]{{0,{}}}[^{WS}])?[{WS}]*$", max - 2),
    })
}

/// Text that is trimmed, then at most `max` characters; only whitespace counts as none.
pub fn optional_trimmed_text(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": format!("^[{WS}]*([^{WS}]([\\s\\S]{{0,{}}}[^{WS}])?)?[{WS}]*$", max - 2),
    })
}

/// Text that, trimmed, matches `pattern` whole.
pub fn trimmed_match(pattern: &str, description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": format!("^[{WS}]*{pattern}[{WS}]*$") })
}

/// An http(s) URL (trimmed). The host keeps to names every URL parser reads alike; what
/// follows it may be anything (a parser escapes what needs it).
pub fn http_url(description: &str) -> Value {
    trimmed_match(
        &format!(
            "[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9-]+[.])*[A-Za-z][A-Za-z0-9-]*(:[0-9]{{1,4}})?([/?#]([\\s\\S]*[^{WS}])?)?"
        ),
        description,
    )
}

/// Text with something besides whitespace in it.
pub fn not_blank(description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": format!("[^{WS}]") })
}

/// A list's slug (`ListSlug`).
pub fn slug(description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": "^[a-z0-9][a-z0-9-]{0,63}$",
        "example": "weekly",
    })
}

/// An email address (`EmailAddress`; an internationalized domain is accepted too).
pub fn email(description: &str) -> Value {
    json!({
        "type": "string",
        "format": "email",
        "maxLength": 254,
        "description": description,
        "example": "ada@example.org",
    })
}

/// An RFC 3339 date-time, e.g. `2027-01-01T00:00:00Z`.
pub fn date_time(description: &str) -> Value {
    json!({
        "type": "string",
        "format": "date-time",
        "description": description,
        "example": "2027-01-01T09:00:00Z",
    })
}

/// Any JSON value (utoipa needs a type, so every type is named).
pub fn any_value(description: &str) -> Value {
    json!({
        "type": ["string", "number", "boolean", "array", "object", "null"],
        "description": description,
    })
}

/// One of the given strings.
pub fn one_of(values: &[&str], description: &str) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document keeps every keyword written (a keyword utoipa does not know would vanish).
    #[test]
    fn schemas_keep_every_keyword() {
        for written in [
            trimmed_line(200, "a name"),
            header_text(500, "a subject"),
            trimmed_text(10, "a text"),
            optional_trimmed_text(10, "a text"),
            not_blank("text"),
            slug("a slug"),
            email("an address"),
            date_time("a time"),
            or_null(one_of(&["a", "b"], "one")),
            json!({"type": "array", "items": slug("x"), "minItems": 1}),
            json!({"oneOf": [{"type": "string", "enum": ["all"]}, {"type": "array", "items": email("x")}]}),
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "null"}},
                   "example": {"a": null}}),
            any_value("anything"),
            json!({"type": ["null", "boolean", "number", "array", "object"]}),
            json!({"description": "a or b", "anyOf": [{"type": "boolean", "enum": [true]}, blank()]}),
            json!({"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}, blank()]}),
        ] {
            let kept: RefOr<Schema> =
                serde_json::from_value(written.clone()).unwrap_or_else(|e| panic!("{written}: {e}"));
            let kept = serde_json::to_value(kept).unwrap();
            assert_eq!(kept, written);
        }
    }
}
