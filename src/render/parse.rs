//! Bounded parsing of renderings: YAML (or the JSON the checker wrote)
//! into plain JSON values, with a budget on what the text **expands to**,
//! not only on its size.
//!
//! A YAML alias replays its anchor: 130 KB with one anchor referenced
//! 20,000 times is gigabytes once expanded. So the values are built here
//! directly from the parser (`Node` is a `DeserializeSeed`), and every
//! node, mapping and byte of the JSON they would print is charged to one
//! [`Budget`] per rendering; the first node over it stops the parse. The
//! same visitor refuses what parsers read differently: YAML tags (other
//! than the core `!!str`, `!!int`…) and merge keys (`<<`), keys that are
//! not scalars, and duplicate keys (after they are made strings).
//!
//! Documents that are one JSON object on one line (what the checker
//! writes, and so what Helm stores for releases made through us) are read
//! with `serde_json`, which streams; anything else with `serde_yaml_ng`,
//! which holds one document's parser events at a time (about 100 bytes per
//! event: hence the cap on the input, [`MAX_INPUT`], and the checker's own
//! memory limit).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Largest input read (the rendering helm hands the checker): a YAML
/// rendering whose JSON could pass [`MAX_OUTPUT`] (indentation and
/// comments make YAML a little longer than the JSON).
pub const MAX_INPUT: usize = 12 << 20;

/// Largest JSON the documents of one rendering may print (what helm then
/// applies and stores). Release records are decoded up to 16 MiB of
/// manifest, so every release installed through the operator stays
/// readable (and uninstallable).
pub const MAX_OUTPUT: usize = 8 << 20;

/// Most nodes (scalars, sequences, mappings) in one rendering, aliases
/// expanded: a large real chart has a few hundred thousand.
pub const MAX_NODES: usize = 1_000_000;

/// Most mappings in one rendering: each costs the parser a B-tree node
/// (about 600 bytes) however small it is.
pub const MAX_MAPPINGS: usize = 200_000;

/// Why a document was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// YAML tags, merge keys or keys that are not scalars: parsers read
    /// them differently.
    Ambiguous,
    /// Not YAML (or JSON), a duplicate key, nesting too deep.
    Unreadable,
    /// The rendering expands to more than the budget allows.
    TooComplex,
}

/// What one rendering may still expand to; shared by all its documents.
#[derive(Debug)]
pub struct Budget {
    nodes: Cell<usize>,
    mappings: Cell<usize>,
    bytes: Cell<usize>,
    /// The first reason a visitor gave up (serde's errors are opaque).
    refusal: Cell<Option<Refusal>>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(MAX_NODES, MAX_MAPPINGS, MAX_OUTPUT)
    }
}

impl Budget {
    /// At most `nodes` nodes, `mappings` mappings and `bytes` bytes of JSON.
    pub fn new(nodes: usize, mappings: usize, bytes: usize) -> Self {
        Self {
            nodes: Cell::new(nodes),
            mappings: Cell::new(mappings),
            bytes: Cell::new(bytes),
            refusal: Cell::new(None),
        }
    }

    /// Charges one node printing about `bytes` bytes of JSON.
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get().checked_sub(1);
        let left = self.bytes.get().checked_sub(bytes);
        match (nodes, left) {
            (Some(nodes), Some(left)) => {
                self.nodes.set(nodes);
                self.bytes.set(left);
                Ok(())
            }
            _ => Err(self.refuse(Refusal::TooComplex)),
        }
    }

    fn charge_mapping<E: de::Error>(&self) -> Result<(), E> {
        match self.mappings.get().checked_sub(1) {
            Some(left) => {
                self.mappings.set(left);
                self.charge(2)
            }
            None => Err(self.refuse(Refusal::TooComplex)),
        }
    }

    /// Records why the parse stops (the first reason wins) and makes the
    /// error that stops it.
    fn refuse<E: de::Error>(&self, refusal: Refusal) -> E {
        if self.refusal.get().is_none() {
            self.refusal.set(Some(refusal));
        }
        E::custom(match refusal {
            Refusal::Ambiguous => "YAML tag, merge key or non-scalar key",
            Refusal::Unreadable => "duplicate key",
            Refusal::TooComplex => "the rendering expands beyond the budget",
        })
    }

    /// Why the last parse failed: what a visitor refused, else a syntax
    /// error. Clears it for the next document.
    fn failure(&self) -> Refusal {
        self.refusal.take().unwrap_or(Refusal::Unreadable)
    }

    /// True once the budget refused something (the rest of the rendering
    /// is not worth reading).
    #[cfg(test)]
    pub fn exhausted(&self) -> bool {
        self.nodes.get() == 0 || self.mappings.get() == 0 || self.bytes.get() == 0
    }
}

/// One YAML document (a `serde_yaml_ng` document deserializer) as JSON,
/// charged to `budget`.
pub fn yaml_document<'de, D>(document: D, budget: &Budget) -> Result<Value, Refusal>
where
    D: Deserializer<'de>,
{
    Node(budget)
        .deserialize(document)
        .map_err(|error: D::Error| {
            // serde_yaml_ng's own guards: more alias replays than 100 per event
            // (nested anchors), or nesting deeper than 128.
            let text = error.to_string();
            if text.contains("repetition limit exceeded")
                || text.contains("recursion limit exceeded")
            {
                budget.refusal.set(Some(Refusal::TooComplex));
            }
            budget.failure()
        })
}

/// One JSON document (a single line the checker wrote), charged to
/// `budget`; `Ok(None)` when the text is not JSON at all (a one-line YAML
/// flow mapping, say: read it as YAML then).
pub fn json_document(text: &str, budget: &Budget) -> Result<Option<Value>, Refusal> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Node(budget)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(Some(value)),
        Err(error) => match budget.refusal.take() {
            Some(refusal) => Err(refusal),
            None if error.is_syntax() || error.is_eof() => Ok(None),
            None => Err(Refusal::Unreadable),
        },
    }
}

/// True when `rendering` is documents of one JSON object per line (with
/// `---` separators, comments and blank lines): what the checker prints
/// and Helm stores for releases made through the operator.
pub fn is_json_lines(rendering: &str) -> bool {
    rendering.lines().all(|line| {
        let line = line.trim_end();
        line.is_empty() || line == "---" || line.starts_with('#') || line.starts_with('{')
    })
}

/// Builds a JSON value from whatever the deserializer holds, charging the
/// budget as it goes.
#[derive(Clone, Copy)]
struct Node<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// JSON bytes of a string: its length, the quotes, and a little for escapes
/// (the final output is measured again when printed).
fn string_cost(text: &str) -> usize {
    text.len() + 2
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("plain data")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.0.charge(6)?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.0.charge(21)?;
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.0.charge(21)?;
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.0.charge(25)?;
        // As serde_json prints them: NaN and infinities become null.
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.0.charge(string_cost(value))?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.0.charge(string_cost(&value))?;
        Ok(Value::String(value))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(self.0.refuse(Refusal::Unreadable))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.charge(5)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Value, D::Error> {
        inner.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.charge(2)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.charge_mapping()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            if object.contains_key(&key) {
                // Which value wins is up to the parser: refuse.
                return Err(self.0.refuse(Refusal::Unreadable));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        // serde_yaml_ng hands a value with a local tag (`!x`) as an enum.
        Err(self.0.refuse(Refusal::Ambiguous))
    }
}

/// A mapping key as JSON has it (a string), or a refusal: merge keys and
/// keys that are not scalars are read differently by different parsers.
struct Key<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Key<'_> {
    fn accept<E: de::Error>(&self, key: String) -> Result<String, E> {
        if key == "<<" {
            return Err(self.0.refuse(Refusal::Ambiguous));
        }
        self.0.charge(string_cost(&key) + 1)?;
        Ok(key)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar key")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
        self.accept(value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
        self.accept(value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
        self.accept(value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
        // As YAML prints the number (`1.0`, `.inf`), not as Rust would (`1`).
        self.accept(serde_yaml_ng::Number::from(value).to_string())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        self.accept(value.to_owned())
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
        self.accept(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.0.refuse(Refusal::Ambiguous))
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Err(self.0.refuse(Refusal::Ambiguous))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.0.refuse(Refusal::Ambiguous))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.0.refuse(Refusal::Ambiguous))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.0.refuse(Refusal::Ambiguous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents of `text`, up to the first that fails (the parser
    /// cannot resume after a syntax error).
    fn yaml(text: &str, budget: &Budget) -> Vec<Result<Value, Refusal>> {
        let mut found = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let parsed = yaml_document(document, budget);
            let failed = parsed.is_err();
            found.push(parsed);
            if failed {
                break;
            }
        }
        found
    }

    fn one(text: &str) -> Result<Value, Refusal> {
        yaml(text, &Budget::default()).remove(0)
    }

    #[test]
    fn plain_data_as_json() {
        let value = one("a: 1\nb: [true, null, 2.5, -3, x]\nc: {d: \"e\"}\non: yes\n1: one\n")
            .expect("plain");
        assert_eq!(
            value,
            serde_json::json!({"a": 1, "b": [true, null, 2.5, -3, "x"], "c": {"d": "e"}, "on": "yes", "1": "one"})
        );
        assert_eq!(
            one("!!str 12").expect("core tag"),
            Value::String("12".into())
        );
        assert_eq!(
            one("x: &a {k: v}\ny: *a\n").expect("alias"),
            serde_json::json!({"x": {"k": "v"}, "y": {"k": "v"}})
        );
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        for text in [
            "a: !x 1\n",
            "!Secret a\n",
            "a:\n  <<: {b: 1}\n",
            "? [a]\n: 1\n",
            "? {a: 1}\n: 1\n",
            "~: 1\n",
        ] {
            assert_eq!(one(text), Err(Refusal::Ambiguous), "{text}");
        }
        for text in [
            "a: 1\na: 2\n",
            "true: 1\n\"true\": 2\n",
            "a: [\n",
            "a: b: c\n",
        ] {
            assert_eq!(one(text), Err(Refusal::Unreadable), "{text}");
        }
    }

    /// A wide anchor referenced many times: the 130 KB rendering that
    /// reached gigabytes.
    fn many_aliases(width: usize, aliases: usize) -> String {
        let mut text = String::from("anchor: &a [");
        text.push_str(&vec!["xxxxxxxx"; width].join(","));
        text.push_str("]\ncopies:\n");
        for _ in 0..aliases {
            text.push_str("- *a\n");
        }
        text
    }

    /// The classic billion laughs: each level holds ten of the one below.
    fn nested_anchors(levels: usize) -> String {
        let mut text = String::from("l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        for level in 1..=levels {
            let below = format!("*l{}", level - 1);
            text.push_str(&format!(
                "l{level}: &l{level} [{}]\n",
                [below.as_str(); 10].join(",")
            ));
        }
        text
    }

    #[test]
    fn alias_bombs_stop_at_the_budget() {
        let started = std::time::Instant::now();
        let wide = many_aliases(10_000, 20_000);
        assert!(wide.len() < 200_000, "{}", wide.len());
        assert_eq!(one(&wide), Err(Refusal::TooComplex));
        assert_eq!(one(&nested_anchors(9)), Err(Refusal::TooComplex));
        // Wide sequences of aliases to a small mapping: mappings are
        // charged on their own.
        let mut maps = String::from("m: &m {a: 1}\nl: [");
        maps.push_str(&vec!["*m"; 250_000].join(","));
        maps.push_str("]\n");
        assert_eq!(one(&maps), Err(Refusal::TooComplex));
        // Long strings repeated: the bytes they print are charged.
        let long = format!(
            "s: &s {}\nl: [{}]\n",
            "x".repeat(100_000),
            vec!["*s"; 100].join(",")
        );
        assert_eq!(one(&long), Err(Refusal::TooComplex));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_budget_is_shared_by_the_documents_of_a_rendering() {
        let budget = Budget::new(10, 10, 1000);
        let found = yaml("[1, 2, 3]\n---\n[4, 5, 6]\n---\n[7, 8, 9]\n", &budget);
        assert!(found[0].is_ok() && found[1].is_ok());
        assert_eq!(found[2], Err(Refusal::TooComplex));
        assert!(budget.exhausted());
        // Small aliases within budget are fine.
        assert!(one(&many_aliases(10, 1000)).is_ok());
        assert!(one(&nested_anchors(3)).is_ok());
    }

    #[test]
    fn json_documents_share_the_visitor() {
        let budget = Budget::default();
        assert_eq!(
            json_document(r#"{"a":[1,"b",null],"c":{"d":true}}"#, &budget),
            Ok(Some(
                serde_json::json!({"a": [1, "b", null], "c": {"d": true}})
            ))
        );
        assert_eq!(
            json_document(r#"{"a":1,"a":2}"#, &budget),
            Err(Refusal::Unreadable)
        );
        // Not JSON: the caller reads it as YAML.
        assert_eq!(json_document(r#"{"a":1} x"#, &budget), Ok(None));
        assert_eq!(json_document("{a: 1}", &budget), Ok(None));
        assert_eq!(
            json_document(r#"{"<<":{"a":1}}"#, &budget),
            Err(Refusal::Ambiguous)
        );
        let small = Budget::new(3, 3, 100);
        assert_eq!(
            json_document("[1,2,3,4,5]", &small),
            Err(Refusal::TooComplex)
        );
        assert!(is_json_lines("---\n# Source: x\n{\"a\":1}\n\n---\n{}\n"));
        assert!(!is_json_lines("---\na: 1\n"));
    }
}
