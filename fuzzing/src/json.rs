//! JSON text generators: [`Shape`]s describe the documents a parser expects, and [`JsonGen`]
//! writes text that mostly follows a shape and sometimes does not (wrong types, unknown and
//! duplicate keys, odd strings and numbers, deep nesting). Text, not `serde_json::Value`, so that
//! duplicate keys, huge numbers and bad escapes can be written at all.

use serde_json::Value;

use crate::Rng;

/// What a document (or part of one) is expected to look like.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Anything at all.
    Any,
    /// A string, usually one of these (sometimes altered, sometimes arbitrary).
    Str(&'static [&'static str]),
    /// An integer, usually in this range.
    Int(i64, i64),
    /// `true` or `false`.
    Bool,
    /// An array of elements of one shape.
    Array(Box<Shape>),
    /// An object with keys usually from the list, all values of one shape.
    Map(&'static [&'static str], Box<Shape>),
    /// An object with these fields, each present or not.
    Object(Vec<(&'static str, Shape)>),
    /// One of these shapes.
    OneOf(Vec<Shape>),
}

impl Shape {
    /// `Shape::Array` of `element`.
    pub fn array(element: Shape) -> Self {
        Shape::Array(Box::new(element))
    }

    /// `Shape::Map` with these keys and `value`.
    pub fn map(keys: &'static [&'static str], value: Shape) -> Self {
        Shape::Map(keys, Box::new(value))
    }
}

/// Writes JSON text, drawing keys and strings from its dictionaries.
#[derive(Debug, Clone, Default)]
pub struct JsonGen {
    keys: Vec<String>,
    strings: Vec<String>,
}

/// Number spellings that stress number parsing.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "7",
    "42",
    "100",
    "101",
    "255",
    "65535",
    "2147483648",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1.5",
    "0.1",
    "-0.0",
    "1e3",
    "1E-3",
    "1e308",
    "1e309",
    "-1e400",
    "4.9e-324",
    "1e-400",
    "5.0",
    "1.0e2",
];

/// Strings that stress string handling (each is the raw text between the quotes).
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\\u0000",
    "a\\u0000b",
    "\\ud800",
    "\\udc00x",
    "\\ud83d\\ude00",
    "\\\\",
    "\\\"",
    "\\n",
    "%2F",
    "%00",
    "..",
    "../..",
    "/",
    "~1",
    "~0",
    "\u{1F600}",
    "ü",
    "İ",
    "\u{200b}",
    "\u{feff}",
    "A",
    "-",
    "*",
    "**",
    "/**",
];

impl JsonGen {
    /// A generator with dictionaries of keys and strings (plain text, escaped when written).
    pub fn new<K, S>(
        keys: impl IntoIterator<Item = K>,
        strings: impl IntoIterator<Item = S>,
    ) -> Self
    where
        K: Into<String>,
        S: Into<String>,
    {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
            strings: strings.into_iter().map(Into::into).collect(),
        }
    }

    /// A document of `shape`, as text.
    pub fn document(&self, rng: &mut Rng, shape: &Shape) -> String {
        let mut out = String::new();
        self.write_shaped(rng, shape, &mut out);
        out
    }

    /// Any value, nested at most `depth` levels.
    pub fn any(&self, rng: &mut Rng, depth: usize) -> String {
        let mut out = String::new();
        self.write_any(rng, depth, &mut out);
        out
    }

    /// An array nested `levels` deep around a scalar: `[[[…1…]]]`.
    pub fn deep(levels: usize, open: char) -> String {
        let close = if open == '[' { ']' } else { '}' };
        let (prefix, inner) = if open == '[' {
            ("[", "1")
        } else {
            ("{\"a\":", "1")
        };
        let mut out = String::with_capacity(levels * (prefix.len() + 1) + 1);
        for _ in 0..levels {
            out.push_str(prefix);
        }
        out.push_str(inner);
        for _ in 0..levels {
            out.push(close);
        }
        out
    }

    fn write_shaped(&self, rng: &mut Rng, shape: &Shape, out: &mut String) {
        // Now and then, anything instead of what the shape says.
        if rng.one_in(16) {
            self.write_any(rng, 2, out);
            return;
        }
        match shape {
            Shape::Any => self.write_any(rng, 3, out),
            Shape::Str(options) => {
                let text = if options.is_empty() || rng.one_in(4) {
                    self.any_string(rng)
                } else if rng.one_in(5) {
                    let base = *rng.pick(options);
                    alter(rng, base)
                } else {
                    (*rng.pick(options)).to_string()
                };
                write_string(&text, out);
            }
            Shape::Int(low, high) => {
                if rng.one_in(4) {
                    let number = *rng.pick(NUMBERS);
                    out.push_str(number);
                } else {
                    let span = high.saturating_sub(*low).saturating_add(1).max(1) as u64;
                    let value = low.saturating_add((rng.next_u64() % span) as i64);
                    out.push_str(&value.to_string());
                }
            }
            Shape::Bool => out.push_str(if rng.one_in(2) { "true" } else { "false" }),
            Shape::Array(element) => {
                out.push('[');
                for i in 0..rng.short_len(12) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_shaped(rng, element, out);
                }
                out.push(']');
            }
            Shape::Map(keys, value) => {
                out.push('{');
                for i in 0..rng.short_len(10) {
                    if i > 0 {
                        out.push(',');
                    }
                    let key = if rng.one_in(3) || keys.is_empty() {
                        self.any_string(rng)
                    } else {
                        (*rng.pick(keys)).to_string()
                    };
                    write_string(&key, out);
                    out.push(':');
                    self.write_shaped(rng, value, out);
                }
                out.push('}');
            }
            Shape::Object(fields) => {
                out.push('{');
                let mut first = true;
                let mut separator = |out: &mut String| {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                };
                for (name, field) in fields {
                    if rng.one_in(3) {
                        continue;
                    }
                    for _ in 0..if rng.one_in(20) { 2 } else { 1 } {
                        separator(out);
                        write_string(name, out);
                        out.push(':');
                        if rng.one_in(12) {
                            out.push_str("null");
                        } else {
                            self.write_shaped(rng, field, out);
                        }
                    }
                }
                if rng.one_in(10) {
                    separator(out);
                    write_string(&self.any_key(rng), out);
                    out.push(':');
                    self.write_any(rng, 1, out);
                }
                out.push('}');
            }
            Shape::OneOf(shapes) => {
                if let Some(shape) = (!shapes.is_empty()).then(|| rng.pick(shapes)) {
                    self.write_shaped(rng, shape, out);
                } else {
                    out.push_str("null");
                }
            }
        }
    }

    fn write_any(&self, rng: &mut Rng, depth: usize, out: &mut String) {
        let choice = if depth == 0 {
            rng.below(4)
        } else {
            rng.below(6)
        };
        match choice {
            0 => {
                let literal = *rng.pick(&["null", "true", "false"]);
                out.push_str(literal);
            }
            1 => {
                let number = *rng.pick(NUMBERS);
                out.push_str(number);
            }
            2 | 3 => write_string(&self.any_string(rng), out),
            4 => {
                out.push('[');
                for i in 0..rng.short_len(6) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_any(rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.short_len(6) {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(&self.any_key(rng), out);
                    out.push(':');
                    self.write_any(rng, depth - 1, out);
                }
                out.push('}');
            }
        }
    }

    fn any_key(&self, rng: &mut Rng) -> String {
        if !self.keys.is_empty() && !rng.one_in(4) {
            rng.pick(&self.keys).clone()
        } else {
            self.any_string(rng)
        }
    }

    /// Plain text (escaped when written), or an escape sequence marked by a leading `\u{1}`.
    fn any_string(&self, rng: &mut Rng) -> String {
        match rng.below(6) {
            0 | 1 if !self.strings.is_empty() => rng.pick(&self.strings).clone(),
            2 if !self.strings.is_empty() => {
                let base = rng.pick(&self.strings).clone();
                alter(rng, &base)
            }
            3 => format!("{RAW}{}", rng.pick(ODD_STRINGS)),
            4 => {
                let unit = *rng.pick(&["a", "-", ".", "Z", "9", "é", "/", "_"]);
                unit.repeat(rng.between(50, 300))
            }
            _ => (0..rng.short_len(24)).map(|_| random_char(rng)).collect(),
        }
    }
}

/// A copy of `document` with one part changed: a member removed or added, a value replaced by
/// one [`JsonGen::any`] writes or by another part of the document, an element repeated. Starting
/// from valid documents, this explores the edge of what a parser accepts.
pub fn perturb(rng: &mut Rng, document: &Value, generator: &JsonGen) -> Value {
    let mut out = document.clone();
    let mut parts = Vec::new();
    collect_pointers(&out, String::new(), &mut parts);
    let Some(pointer) = (!parts.is_empty()).then(|| rng.pick(&parts).clone()) else {
        return out;
    };
    let donor = out
        .pointer(&parts[rng.below(parts.len())])
        .cloned()
        .unwrap_or(Value::Null);
    let replacement = serde_json::from_str::<Value>(&generator.any(rng, 2)).unwrap_or(Value::Null);
    let action = rng.below(6);
    let Some(target) = out.pointer_mut(&pointer) else {
        return out;
    };
    match (action, target) {
        (0, Value::Object(members)) if !members.is_empty() => {
            let keys: Vec<String> = members.keys().cloned().collect();
            members.remove(rng.pick(&keys));
        }
        (1, Value::Object(members)) => {
            members.insert(generator.any_key(rng), replacement);
        }
        (2, Value::Array(items)) if !items.is_empty() => {
            let item = items[rng.below(items.len())].clone();
            for _ in 0..rng.between(1, 40) {
                items.push(item.clone());
            }
        }
        (3, target) => *target = donor,
        (4, target @ Value::String(_)) => {
            if let Value::String(text) = target {
                *text = alter(rng, text);
            }
        }
        (_, target) => *target = replacement,
    }
    out
}

fn collect_pointers(value: &Value, pointer: String, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_pointers(member, format!("{pointer}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_pointers(item, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(pointer);
}

/// Marks a string that is already escaped JSON string content.
const RAW: char = '\u{1}';

/// A small change to `text`: a character inserted, removed, replaced or case-flipped, or a
/// repetition.
fn alter(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = rng.below(chars.len() + 1);
    match rng.below(5) {
        0 => chars.insert(at, random_char(rng)),
        1 if at < chars.len() => {
            chars.remove(at);
        }
        2 if at < chars.len() => chars[at] = random_char(rng),
        3 => {
            chars = text
                .chars()
                .map(|c| {
                    if c.is_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
        }
        _ => return text.repeat(rng.between(2, 5)),
    }
    chars.into_iter().collect()
}

fn random_char(rng: &mut Rng) -> char {
    const CHARS: &[char] = &[
        'a',
        'z',
        'A',
        'Z',
        '0',
        '9',
        '-',
        '_',
        '.',
        '/',
        ':',
        '=',
        ',',
        ' ',
        '*',
        '?',
        '#',
        '@',
        '%',
        '~',
        '\t',
        '\n',
        '\0',
        '\u{7f}',
        'é',
        'ß',
        '\u{1F600}',
        '\u{200b}',
        '"',
        '\\',
    ];
    *rng.pick(CHARS)
}

/// Writes `text` as a JSON string literal (text marked with [`RAW`] is written as is).
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    if let Some(raw) = text.strip_prefix(RAW) {
        out.push_str(raw);
    } else {
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturb_changes_one_part() {
        let generator = JsonGen::new(["name"], ["web"]);
        let document = serde_json::json!({"name": "web", "labels": {"a": "b"}, "list": [1, 2]});
        let mut rng = Rng::new(5);
        let changed = (0..200)
            .filter(|_| perturb(&mut rng, &document, &generator) != document)
            .count();
        assert!(changed > 150, "{changed}");
    }

    #[test]
    fn deep_documents_nest() {
        assert_eq!(JsonGen::deep(3, '['), "[[[1]]]");
        assert_eq!(JsonGen::deep(2, '{'), "{\"a\":{\"a\":1}}");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        write_string("a\"b\\c\n", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn shaped_documents_are_mostly_json() {
        let generator = JsonGen::new(["name"], ["web"]);
        let shape = Shape::Object(vec![
            ("name", Shape::Str(&["web"])),
            ("labels", Shape::map(&["release"], Shape::Str(&["stable"]))),
            ("weight", Shape::Int(1, 100)),
        ]);
        let mut rng = Rng::new(11);
        let parsed = (0..1_000)
            .filter(|_| text_is_json(&generator.document(&mut rng, &shape)))
            .count();
        // Bad escapes (lone surrogates) and odd numbers make a few invalid, on purpose.
        assert!(parsed > 700, "{parsed}");
    }

    /// A tiny structural check, so the harness needs no JSON parser: balanced brackets
    /// outside strings.
    fn text_is_json(text: &str) -> bool {
        let mut depth = 0i64;
        let mut in_string = false;
        let mut escaped = false;
        for c in text.chars() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_string = false,
                (false, _, '"') => in_string = true,
                (false, _, '[' | '{') => depth += 1,
                (false, _, ']' | '}') => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
        }
        depth == 0 && !in_string && !text.contains("\\ud800")
    }
}
