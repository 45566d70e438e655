//! A policy document as read: a tree of [`Node`]s that keeps object members in order and
//! refuses duplicate keys, and the checks every part of the grammar shares (bounded strings,
//! error paths, policy variables). Used by the statement parser and by conditions.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{PolicyError, MAX_LIST_VALUES, MAX_STRING_CHARS};

/// Which kind of policy is being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A key policy: every statement names a Principal.
    Key,
    /// An identity policy: no statement names a Principal.
    Identity,
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    /// `2008-10-17` (or absent): no policy variables.
    V2008,
    /// `2012-10-17`: `${...}` is a policy variable, which this service does not support.
    V2012,
}

/// A JSON value with object members in document order.
#[derive(Debug)]
pub(super) enum Node {
    Null,
    Bool(bool),
    /// Kept as written by serde_json's number (integers exactly).
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    shown(&key)
                )));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// At most 128 characters of a caller-supplied string, for error messages.
pub(super) fn shown(s: &str) -> String {
    const LIMIT: usize = 128;
    match s.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}...", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

pub(super) fn invalid(path: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A string element, bounded.
pub(super) fn string<'n>(path: &str, node: &'n Node) -> Result<&'n str, PolicyError> {
    match node {
        Node::String(s) => bounded(path, s).map(|()| s.as_str()),
        other => Err(invalid(
            path,
            format!("expected a string, found {}", other.type_name()),
        )),
    }
}

pub(super) fn bounded(path: &str, s: &str) -> Result<(), PolicyError> {
    if s.chars().count() > MAX_STRING_CHARS {
        return Err(invalid(
            path,
            format!("a value is longer than {MAX_STRING_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A string or a non-empty array of strings, bounded.
pub(super) fn strings<'n>(path: &str, node: &'n Node) -> Result<Vec<&'n str>, PolicyError> {
    match node {
        Node::Array(items) => {
            if items.is_empty() {
                return Err(invalid(path, "empty list"));
            }
            if items.len() > MAX_LIST_VALUES {
                return Err(PolicyError::TooMany {
                    path: path.to_owned(),
                    what: "values",
                    limit: MAX_LIST_VALUES,
                });
            }
            items.iter().map(|item| string(path, item)).collect()
        }
        other => Ok(vec![string(path, other)?]),
    }
}

pub(super) fn no_policy_variable(
    path: &str,
    version: Version,
    value: &str,
) -> Result<(), PolicyError> {
    if version == Version::V2012 && value.contains("${") {
        return Err(PolicyError::Unsupported {
            path: path.to_owned(),
            what: "a policy variable (${...})",
        });
    }
    Ok(())
}

