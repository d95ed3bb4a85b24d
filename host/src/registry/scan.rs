//! Reading only the part of a manifest one component needs.
//!
//! Why: `nboost rerank -c NAME` (and an edge node starting one component)
//! should cost the same with 1 or 1,000 components declared. Parsing the
//! whole TOML costs time in proportion to the file (a 1,000-entry manifest
//! made the lexical start 1.5× slower), so the text is first split at its
//! top-level table headers by a small scanner that knows TOML's strings,
//! comments and brackets, and only the `[components.NAME]` table, the
//! `[graphs.G]` tables it names and the alias that leads to it are parsed,
//! by the real TOML parser ([`super::Manifest::parse`]).
//!
//! Anything the scanner does not fully understand (arrays of tables,
//! multi-line strings, dotted keys or values outside `[graphs.*]`,
//! `[components.*]` and `[aliases]` tables, a header it cannot read) makes
//! it give up, and the caller parses the whole file: the fast path may
//! decline, never misread.

/// A top-level table: its header key and its text (header line included).
#[derive(Debug, PartialEq, Eq)]
pub struct Section<'a> {
    /// The header's key, unquoted parts joined by `.`: `components.minilm`.
    pub key: String,
    /// The table's text, from its header to the next header.
    pub text: &'a str,
}

/// Split `text` into its top-level tables, or `None` when it uses TOML the
/// scanner does not handle (see the module docs).
pub fn sections(text: &str) -> Option<Vec<Section<'_>>> {
    let mut out: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize; // brackets / braces open in a value
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        if depth == 0 && trimmed.starts_with('[') {
            if trimmed.starts_with("[[") {
                return None;
            }
            let end = header_end(trimmed)?;
            let rest = trimmed[end + 1..].trim();
            if !(rest.is_empty() || rest.starts_with('#')) {
                return None;
            }
            out.push((header_key(&trimmed[1..end])?, start));
            continue;
        }
        if depth == 0 && out.is_empty() && !(trimmed.is_empty() || trimmed.starts_with('#')) {
            // Keys before the first table: not a manifest shape we split.
            return None;
        }
        depth = scan_value_line(line, depth)?;
    }
    if depth != 0 {
        return None;
    }
    let mut sections = Vec::with_capacity(out.len());
    for (i, (key, start)) in out.iter().enumerate() {
        let end = out.get(i + 1).map_or(text.len(), |(_, s)| *s);
        sections.push(Section {
            key: key.clone(),
            text: &text[*start..end],
        });
    }
    Some(sections)
}

/// Where the `]` closing a header line starts (outside quotes).
fn header_end(line: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in line.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            (None, '\n') | (Some(_), '\n') => return None,
            _ => {}
        }
    }
    None
}

/// `components."my-x"` → `components.my-x`; `None` for escapes or oddities.
fn header_key(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in split_dots(raw.trim())? {
        let p = part.trim();
        let unquoted = if (p.starts_with('"') && p.ends_with('"') && p.len() >= 2)
            || (p.starts_with('\'') && p.ends_with('\'') && p.len() >= 2)
        {
            let inner = &p[1..p.len() - 1];
            if inner.contains('\\') {
                return None;
            }
            inner
        } else {
            if p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return None;
            }
            p
        };
        parts.push(unquoted.to_string());
    }
    Some(parts.join("."))
}

/// Split a header key at the dots outside quotes.
fn split_dots(raw: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut quote, mut start) = (None, 0);
    for (i, c) in raw.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return None;
    }
    parts.push(&raw[start..]);
    Some(parts)
}

/// The bracket depth after a key/value (or continuation) line: strings
/// and comments skipped; multi-line strings are refused.
fn scan_value_line(line: &str, mut depth: usize) -> Option<usize> {
    if line.contains("\"\"\"") || line.contains("'''") {
        return None;
    }
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            '"' => loop {
                match chars.next()? {
                    '\\' => {
                        chars.next()?;
                    }
                    '"' => break,
                    _ => {}
                }
            },
            '\'' => loop {
                if chars.next()? == '\'' {
                    break;
                }
            },
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    Some(depth)
}

/// The text of a manifest reduced to what component `name` needs: its
/// table (found directly or through `[aliases]`), the graphs it names.
/// `None`: not found this way, or the scanner declined; parse it all.
pub fn reduced(text: &str, name: &str) -> Option<String> {
    let sections = sections(text)?;
    // Only tables of the three known kinds: anything else, full parse.
    if !sections.iter().all(|s| {
        s.key == "aliases"
            || s.key
                .strip_prefix("components.")
                .is_some_and(|n| !n.contains('.'))
            || s.key
                .strip_prefix("graphs.")
                .is_some_and(|n| !n.contains('.'))
    }) {
        return None;
    }
    let find = |n: &str| {
        sections
            .iter()
            .find(|s| s.key.strip_prefix("components.") == Some(n))
    };
    let (component, alias) = match find(name) {
        Some(c) => (c, None),
        None => {
            let aliases = sections.iter().find(|s| s.key == "aliases")?;
            let table: toml::Table = toml::from_str(aliases.text).ok()?;
            let target = table.get("aliases")?.get(name)?.as_str()?.to_string();
            (find(&target)?, Some((name, target)))
        }
    };
    let entry: toml::Table = toml::from_str(component.text).ok()?;
    let cname = component.key.strip_prefix("components.")?;
    let graphs: Vec<&str> = entry
        .get("components")?
        .get(cname)?
        .get("graphs")
        .and_then(|g| g.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut out = String::new();
    for g in &graphs {
        let s = sections
            .iter()
            .find(|s| s.key.strip_prefix("graphs.") == Some(*g))?;
        out.push_str(s.text);
        out.push('\n');
    }
    out.push_str(component.text);
    out.push('\n');
    if let Some((alias, target)) = alias {
        let value = toml::Value::String(target);
        out.push_str(&format!(
            "[aliases]\n{} = {value}\n",
            toml::Value::String(alias.to_string())
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# a manifest
[graphs.g]
path = "g.onnx" # comment with [brackets]

[components.a]
path = "a.wasm"
graphs = [
  "g",
]
settings = { k = "]", x = 1 }

[components."b-2"]
path = "b.wasm"

[aliases]
"alias-of-a" = "a"
"#;

    #[test]
    fn splits_at_top_level_headers_only() {
        let s = sections(TEXT).unwrap();
        let keys: Vec<&str> = s.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            ["graphs.g", "components.a", "components.b-2", "aliases"]
        );
        assert!(s[1].text.contains("settings"));
        assert_eq!(
            s.iter().map(|s| s.text).collect::<String>(),
            TEXT.trim_start_matches("# a manifest\n")
        );
    }

    #[test]
    fn reduces_to_one_component_its_graphs_and_its_alias() {
        let a = reduced(TEXT, "a").unwrap();
        assert!(a.contains("[graphs.g]") && a.contains("[components.a]"));
        assert!(!a.contains("b.wasm") && !a.contains("[aliases]"));
        let via = reduced(TEXT, "alias-of-a").unwrap();
        assert!(via.contains("[components.a]") && via.contains("\"alias-of-a\" = \"a\""));
        let b = reduced(TEXT, "b-2").unwrap();
        assert!(b.contains("b.wasm") && !b.contains("g.onnx"));
        assert_eq!(reduced(TEXT, "nope"), None);
    }

    #[test]
    fn declines_what_it_does_not_read() {
        for text in [
            "top = 1\n[components.a]\npath = \"a\"\n",
            "[[components]]\npath = \"a\"\n",
            "[components.a]\ndescription = \"\"\"\n[components.b]\n\"\"\"\n",
            "[components]\na = { path = \"a\" }\n",
            "[components.a]\nx = [\n[1],\n",
            "[components.a] junk\n",
            "[other]\n[components.a]\npath = \"a\"\n",
        ] {
            assert_eq!(reduced(text, "a"), None, "{text}");
        }
    }
}
