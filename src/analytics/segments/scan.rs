//! A non-recursive pass over the raw JSON body before any parser sees it.
//!
//! `serde_json` (and parsing to `serde_json::Value`) recurse once per nesting
//! level; a body of 10,000 nested arrays would reach the parser's recursion
//! limit (128) as an opaque syntax error, and a parser without a limit would
//! overflow the stack. This scanner walks the bytes with an explicit stack
//! bounded by [`MAX_JSON_DEPTH`], stops at the first container that would go
//! deeper, and names its JSON path, so a hostile body costs one linear pass
//! and the typed parse that follows only ever sees shallow input.

/// JSON nesting a valid request can need: 16 group levels of two containers
/// each (`{"all": [ ... ]}`), the request object, and a leaf condition with
/// an array inside.
pub const MAX_JSON_DEPTH: usize = 40;

/// Containers in one body; far above what 256 definition nodes need.
pub const MAX_CONTAINERS: usize = 4096;

enum Frame {
    Object { key: Option<String> },
    Array { index: usize },
}

#[derive(Debug, PartialEq, Eq)]
pub struct ScanError {
    pub path: String,
    pub message: &'static str,
}

/// Renders a key for a path: our vocabulary is `[a-z_]`; anything else is
/// someone else's text and is never echoed.
pub fn safe_key(key: &str) -> &str {
    if !key.is_empty()
        && key.len() <= 32
        && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        key
    } else {
        "?"
    }
}

fn path_of(stack: &[Frame]) -> String {
    let mut out = String::from("$");
    for frame in stack {
        match frame {
            Frame::Object { key: Some(k) } => {
                out.push('.');
                out.push_str(safe_key(k));
            }
            Frame::Object { key: None } => {}
            Frame::Array { index } => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Checks nesting depth and size. Malformed JSON is left to the parser,
/// which reports it as a syntax error; this pass only guarantees that the
/// parser is never handed something deep.
pub fn scan(bytes: &[u8]) -> Result<(), ScanError> {
    let mut stack: Vec<Frame> = Vec::with_capacity(16);
    let mut containers = 0usize;
    let mut i = 0usize;
    // Whether the last string closed in an object was in key position.
    let mut expecting_key = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'{' | b'[' => {
                containers += 1;
                if stack.len() >= MAX_JSON_DEPTH {
                    return Err(ScanError {
                        path: path_of(&stack),
                        message: "nested deeper than a definition may be (depth over 16)",
                    });
                }
                if containers > MAX_CONTAINERS {
                    return Err(ScanError {
                        path: path_of(&stack),
                        message: "too many nodes (more than 256)",
                    });
                }
                if b == b'{' {
                    stack.push(Frame::Object { key: None });
                    expecting_key = true;
                } else {
                    stack.push(Frame::Array { index: 0 });
                }
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { .. }) => expecting_key = true,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i += 1;
                // Skip to the closing quote, honouring escapes.
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                if expecting_key {
                    if let Some(Frame::Object { key }) = stack.last_mut() {
                        let raw = bytes.get(start..i.min(bytes.len())).unwrap_or_default();
                        *key = Some(String::from_utf8_lossy(raw).into_owned());
                    }
                    expecting_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_nested_arrays_are_refused_fast_with_a_path() {
        let body = format!(
            "{{\"definition\": {}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let started = std::time::Instant::now();
        let err = scan(body.as_bytes()).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(err.path.starts_with("$.definition[0][0]"), "{}", err.path);
    }

    #[test]
    fn deep_groups_name_their_path_and_hostile_keys_are_not_echoed() {
        let mut body = String::new();
        for _ in 0..30 {
            body.push_str("{\"all\": [");
        }
        body.push_str("{\"country\": {\"in\": [\"DE\"]}}");
        for _ in 0..30 {
            body.push_str("]}");
        }
        let err = scan(body.as_bytes()).unwrap_err();
        assert_eq!(err.path, "$.all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0]");
        let hostile = format!("{{\"x'; DROP TABLE--\": {}}}", "[".repeat(50));
        let err = scan(hostile.as_bytes()).unwrap_err();
        assert!(err.path.starts_with("$.?[0]"), "{}", err.path);
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_count() {
        let body = r#"{"a": "[[[[{{{{\"]]]", "b": [1, 2, {"c": "\\"}]}"#;
        assert!(scan(body.as_bytes()).is_ok());
        let body = format!("{{\"k\": \"{}\"}}", "[".repeat(1000));
        assert!(scan(body.as_bytes()).is_ok());
    }
}
