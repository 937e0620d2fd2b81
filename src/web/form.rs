//! Form bodies (`application/x-www-form-urlencoded`) into typed structs, read the way HTML
//! forms send them: a field given more than once fills a sequence field with every value (a
//! group of checkboxes: `list=a&list=b`) and any other field with the last one; fields the
//! struct does not name are ignored, and bytes that are not UTF-8 are replaced, as
//! `url::form_urlencoded` does. (`serde_urlencoded` refuses a repeated field of a struct, and
//! `serde_html_form` refuses a repeated single-valued one: a form answered before must be
//! answered the same.)

use std::collections::HashMap;

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::edge::AppError;

/// [`from_form`] for a handler: a body that does not read is a 400.
pub fn form_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    from_form(body).map_err(|e| AppError::bad_request(format!("The form is not readable: {e}")))
}

/// Reads a form body into `T`. Fails only where `T`'s fields want more than text.
pub fn from_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let mut fields: HashMap<String, Values> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        fields
            .entry(key.into_owned())
            .or_default()
            .0
            .push(value.into_owned());
    }
    T::deserialize(MapDeserializer::new(fields.into_iter()))
}

/// Every value given for one field, in order (at least one).
#[derive(Default)]
struct Values(Vec<String>);

impl<'de> IntoDeserializer<'de, Error> for Values {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Values {
    type Error = Error;

    /// A single value: the last one given.
    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.0.pop().unwrap_or_default())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    /// Every value given, in order.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(SeqDeserializer::new(self.0.into_iter()))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::from_form;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default)]
    struct Form {
        email: String,
        list: Vec<String>,
        name: Option<String>,
    }

    fn form(body: &str) -> Form {
        from_form(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_repeated_field_is_every_value_in_a_sequence_and_the_last_elsewhere() {
        assert_eq!(
            form("list=a&email=x%40example.org&list=b&email=y%40example.org&list=a"),
            Form {
                email: "y@example.org".into(),
                list: vec!["a".into(), "b".into(), "a".into()],
                name: None,
            }
        );
    }

    #[test]
    fn missing_unknown_empty_and_odd_fields() {
        assert_eq!(form(""), Form::default());
        assert_eq!(
            form("other=1&name=&list=&email"),
            Form {
                email: String::new(),
                list: vec![String::new()],
                name: Some(String::new()),
            }
        );
        assert_eq!(form("name=Ada+L%C3%B6w").name.as_deref(), Some("Ada Löw"));
        let odd: Form = from_form(b"name=%FF%FE&list=x").unwrap();
        assert_eq!(odd.name.as_deref(), Some("\u{fffd}\u{fffd}"));
    }
}
