//! The object a mutating chain patches, built only as far as the patches
//! reach. A JSON Patch touches a few paths (an image, a toleration, a
//! label); building and copying a tree of the whole object for them cost
//! more than every plugin call's share of the host. Here an object member
//! that no op has reached stays the original's text: it is neither parsed
//! nor copied, and it is written out again as the bytes it was.
//!
//! Two trees of the same shape hold what the ops reached: `current`, which
//! the ops change, and `original`, the same members as they were, so that
//! the chain can tell whether its ops cancelled out. An object some of whose
//! members are still text is *partial*; partial objects are only ever on
//! the way to an op's target (a strict prefix of its path), never a target,
//! and never inside an array, so their pointers do not move.

use super::PatchError;
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Debug, Clone)]
pub(super) struct Sparse {
    pub current: Value,
    pub original: Value,
    /// Where the original text is and how long: every call must pass the
    /// same text, which the byte ranges below index.
    text: (usize, usize),
    /// Partial objects by pointer (escaped as in a JSON Pointer, `""` for
    /// the root). If a pointer is here, so is each of its prefixes.
    partial: BTreeMap<String, Members>,
}

/// One partial object's members in the original text, in order.
#[derive(Debug, Clone)]
struct Members {
    /// Each member's key and where its value is in the original text.
    raw: Vec<(String, Range<usize>)>,
    /// Whether each member is in the trees (parsed, or partial itself).
    reached: Vec<bool>,
}

impl Sparse {
    /// The object `text` with nothing built yet.
    pub fn new(text: &str) -> Result<Self, PatchError> {
        let root = Members::of(text, 0..text.len())?;
        let empty = Value::Object(Map::new());
        Ok(Self {
            current: empty.clone(),
            original: empty,
            text: (text.as_ptr() as usize, text.len()),
            partial: BTreeMap::from([(String::new(), root)]),
        })
    }

    fn same_text(&self, text: &str) -> bool {
        self.text == (text.as_ptr() as usize, text.len())
    }

    /// Build what an op at `pointer` reads or writes: every object on the
    /// way (partial), and the target itself whole.
    pub fn reach(&mut self, text: &str, pointer: &str) -> Result<(), PatchError> {
        debug_assert!(self.same_text(text), "a working copy is patched against one object's text");
        let Some(path) = pointer.strip_prefix('/') else { return Ok(()) };
        let segments: Vec<&str> = path.split('/').collect();
        let mut at = String::new();
        for (index, segment) in segments.iter().enumerate() {
            let child = format!("{at}/{segment}");
            if !self.partial.contains_key(&child) {
                // `at` is partial here: the root is, and the loop goes on
                // only into partial children.
                let Some(members) = self.partial.get_mut(&at) else { return Ok(()) };
                let key = unescape(segment);
                // None: in the trees already, or not in the original (the op
                // creates it, or fails as it would on the whole object).
                let Some(range) = members.find(&key) else { return Ok(()) };
                // A RawValue's text starts at its value: no whitespace.
                let value_text = &text[range.clone()];
                // Marked reached only once in the trees: a value too deep to
                // build stays text, and is written out as it was.
                if index + 1 < segments.len() && value_text.starts_with('{') {
                    let nested = Members::of(value_text, range)?;
                    self.insert(&at, &key, Value::Object(Map::new()))?;
                    self.partial.insert(child.clone(), nested);
                } else {
                    self.insert(&at, &key, parse(value_text)?)?;
                }
                self.partial.get_mut(&at).expect("checked above").mark(&key);
                if !self.partial.contains_key(&child) {
                    return Ok(());
                }
            }
            at = child;
        }
        // The target itself is partial (an earlier op went deeper): build
        // the rest of it.
        self.complete(text, &at)
    }

    /// Build every member still left as text under `pointer`.
    fn complete(&mut self, text: &str, pointer: &str) -> Result<(), PatchError> {
        let below = format!("{pointer}/");
        let pointers: Vec<String> =
            self.partial.keys().filter(|p| *p == pointer || p.starts_with(&below)).cloned().collect();
        // Everything parsed before anything changes: a value too deep to
        // build, at any depth, leaves every object here partial as it was.
        let mut built = Vec::new();
        for at in &pointers {
            let members = &self.partial[at];
            for ((key, range), reached) in members.raw.iter().zip(&members.reached) {
                if !reached {
                    built.push((at, key.clone(), parse(&text[range.clone()])?));
                }
            }
        }
        // A parent before its children (the map's order): each member goes
        // into an object that is there.
        for (at, key, value) in built {
            self.insert(at, &key, value)?;
        }
        for at in &pointers {
            self.partial.remove(at);
        }
        Ok(())
    }

    /// Put a member of the original into both trees.
    fn insert(&mut self, at: &str, key: &str, value: Value) -> Result<(), PatchError> {
        for tree in [&mut self.original, &mut self.current] {
            // A partial object is never an op's target, so it is still the
            // object it was in both trees.
            let object = tree
                .pointer_mut(at)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| PatchError::DoesNotApply(format!("{at} is no longer an object")))?;
            object.insert(key.to_owned(), value.clone());
        }
        Ok(())
    }

    /// The current object as JSON text: the members the ops reached as the
    /// trees have them, the others as the original's bytes.
    pub fn write(&self, text: &str) -> String {
        debug_assert!(self.same_text(text), "a working copy is written with its object's text");
        let mut out = Vec::with_capacity(text.len() + 256);
        self.write_node(&mut out, &self.current, "", text);
        // Only JSON text and the original's own bytes were written.
        String::from_utf8(out).unwrap_or_default()
    }

    fn write_node(&self, out: &mut Vec<u8>, value: &Value, at: &str, text: &str) {
        let (Some(members), Some(object)) = (self.partial.get(at), value.as_object()) else {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
            return;
        };
        out.push(b'{');
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        let mut written: Vec<&str> = Vec::new();
        for ((key, range), reached) in members.raw.iter().zip(&members.reached) {
            if !reached {
                separate(out);
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                out.extend_from_slice(&text.as_bytes()[range.clone()]);
            } else if let Some(child) = object.get(key)
                && !written.contains(&key.as_str())
            {
                separate(out);
                written.push(key);
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                self.write_node(out, child, &format!("{at}/{}", escape(key)), text);
            }
        }
        // Members the ops added.
        for (key, child) in object {
            if !members.raw.iter().any(|(k, _)| k == key) {
                separate(out);
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                let _ = serde_json::to_writer(&mut *out, child);
            }
        }
        out.push(b'}');
    }
}

impl Members {
    /// The members of the object `text`, which stands at `range` in the
    /// original.
    fn of(text: &str, range: Range<usize>) -> Result<Self, PatchError> {
        let base = text.as_ptr() as usize;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let members = deserializer
            .deserialize_map(RawMembers)
            .map_err(|err| PatchError::Unpatchable(err.to_string()))?
            .into_iter()
            .map(|(key, value)| {
                let start = range.start + (value.get().as_ptr() as usize - base);
                (key, start..start + value.get().len())
            })
            .collect::<Vec<_>>();
        Ok(Self { reached: vec![false; members.len()], raw: members })
    }

    /// Where `key`'s value is, if it is in the original and not yet in the
    /// trees. JSON allows a key twice; serde_json keeps the last, and so
    /// does this.
    fn find(&self, key: &str) -> Option<Range<usize>> {
        let mut found = None;
        for ((k, range), reached) in self.raw.iter().zip(&self.reached) {
            if k == key {
                if *reached {
                    return None;
                }
                found = Some(range.clone());
            }
        }
        found
    }

    fn mark(&mut self, key: &str) {
        for ((k, _), reached) in self.raw.iter().zip(&mut self.reached) {
            if k == key {
                *reached = true;
            }
        }
    }
}

/// An object's members as key and value text, without reading the values.
struct RawMembers;

impl<'de> Visitor<'de> for RawMembers {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
            members.push(member);
        }
        Ok(members)
    }
}

fn parse(text: &str) -> Result<Value, PatchError> {
    serde_json::from_str(text).map_err(|err| PatchError::Unpatchable(err.to_string()))
}

/// A JSON Pointer segment's key (RFC 6901: `~1` is `/`, `~0` is `~`).
fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
