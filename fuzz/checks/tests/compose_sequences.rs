//! The compose target's properties on generated chains: random objects,
//! random patches of every op against paths that exist, that are new, and
//! that go through objects an earlier patch went into. The working copy
//! builds only what the ops reach (patch/sparse.rs); the check compares it
//! with the whole patch replayed on a whole tree. Seeded, so a failure
//! repeats: the failing input is printed, ready for `fuzz/corpus/compose/`.

use berth_fuzz_checks::compose;
use serde_json::{Map, Value, json};

/// xorshift64*: enough randomness for shapes, and the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: [&str; 6] = ["a", "b", "c/d", "e~f", "spec", "x"];

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 3 } else { 6 }) {
        0 => json!(rng.below(10)),
        1 => json!(*rng.pick(&["s", "t u", "\u{e9}", "q\"q"])),
        2 => Value::Null,
        3 | 4 => {
            let mut object = Map::new();
            for _ in 0..rng.below(4) + 1 {
                object.insert(rng.pick(&KEYS).to_string(), value(rng, depth - 1));
            }
            Value::Object(object)
        }
        _ => Value::Array((0..rng.below(3)).map(|_| value(rng, depth - 1)).collect()),
    }
}

/// Every pointer in `value`, escaped as RFC 6901 says.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                let next = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(next.clone());
                pointers(child, next, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let next = format!("{at}/{index}");
                out.push(next.clone());
                pointers(child, next, out);
            }
        }
        _ => {}
    }
}

fn op(rng: &mut Rng, paths: &[String]) -> Value {
    let existing = paths.get(rng.below(paths.len().max(1))).cloned().unwrap_or_else(|| "/x".to_owned());
    let other = paths.get(rng.below(paths.len().max(1))).cloned().unwrap_or_else(|| "/a".to_owned());
    let new = match rng.below(3) {
        0 => format!("{existing}/{}", rng.pick(&["n", "-", "0", "e~0f"])),
        1 => format!("/{}", rng.pick(&["n", "a", "x", "spec"])),
        _ => existing.clone(),
    };
    let v = value(rng, 2);
    match rng.below(7) {
        0 | 1 => json!({"op": "add", "path": new, "value": v}),
        2 => json!({"op": "remove", "path": existing}),
        3 => json!({"op": "replace", "path": existing, "value": v}),
        4 => json!({"op": "move", "from": existing, "path": new}),
        5 => json!({"op": "copy", "from": other, "path": new}),
        _ => json!({"op": "test", "path": existing, "value": v}),
    }
}

#[test]
fn generated_chains_compose_as_the_whole_patch_replayed() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut composed = 0;
    for _ in 0..3000 {
        let mut object = Map::new();
        object.insert("metadata".into(), json!({"name": "p", "namespace": "ns", "labels": {"a": "b"}}));
        for _ in 0..rng.below(4) + 1 {
            object.insert(rng.pick(&KEYS).to_string(), value(&mut rng, 3));
        }
        let object = Value::Object(object);
        let mut paths = Vec::new();
        pointers(&object, String::new(), &mut paths);
        let patches: Vec<Value> = (0..rng.below(4) + 1)
            .map(|_| Value::Array((0..rng.below(3) + 1).map(|_| op(&mut rng, &paths)).collect()))
            .collect();
        let input = json!({"object": object, "patches": patches}).to_string();
        let outcome = std::panic::catch_unwind(|| compose::check(input.as_bytes()));
        match outcome {
            Ok(went_through) => composed += usize::from(went_through),
            Err(panic) => {
                eprintln!("failing input: {input}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    // Enough chains changed their object to have tested something.
    assert!(composed > 500, "only {composed} chains composed a patch");
}
