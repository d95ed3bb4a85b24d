//! `nboost-settings`: strict parsing of the `settings` table a plugin
//! receives in `configure`. A tiny crate with no dependencies, so that a
//! plugin without a model (`lexical`) uses it without pulling in a tokenizer.
//!
//! The interface requires unknown keys to be rejected (a typo must not pass
//! silently); values are checked just as strictly. Every error message names
//! the key, and the plugin returns it as `invalid-config`.

/// The settings, with lookup by key that remembers which keys were used.
pub struct Settings<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Settings<'a> {
    /// Check that every key is one of `known` and appears once, then wrap
    /// the table for lookups.
    pub fn new(pairs: &'a [(String, String)], known: &[&str]) -> Result<Self, String> {
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Err(format!(
                    "unknown setting `{key}` (known: {})",
                    known.join(", ")
                ));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("setting `{key}` is given more than once"));
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, which must be given and non-empty.
    pub fn required(&self, key: &str) -> Result<&'a str, String> {
        match self.get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(format!("setting `{key}` must not be empty")),
            None => Err(format!("setting `{key}` is required")),
        }
    }

    /// The value of `key` as a non-empty string, or `default`.
    pub fn string_or(&self, key: &str, default: &'a str) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.required(key),
        }
    }

    /// The value of `key` as a finite number in `[min, max]`, or `default`.
    pub fn number_or(&self, key: &str, default: f64, min: f64, max: f64) -> Result<f64, String> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        match value.trim().parse::<f64>() {
            Ok(x) if (min..=max).contains(&x) => Ok(x),
            _ => Err(format!(
                "setting `{key}` must be a number in [{min}, {max}], got `{value}`"
            )),
        }
    }

    /// The value of `key` as `true` or `false`, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!(
                "setting `{key}` must be `true` or `false`, got `{v}`"
            )),
        }
    }

    /// The value of `key` as an integer in `[min, max]`, or `default`.
    pub fn integer_or(&self, key: &str, default: u32, min: u32, max: u32) -> Result<u32, String> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        match value.trim().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "setting `{key}` must be an integer in [{min}, {max}], got `{value}`"
            )),
        }
    }
}

/// A settings table from string pairs (for plugins' tests).
pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_duplicate_keys() {
        let p = pairs(&[("graph", "g"), ("grpah", "x")]);
        let err = Settings::new(&p, &["graph"]).err().unwrap();
        assert!(err.contains("grpah"), "{err}");
        let p = pairs(&[("graph", "g"), ("graph", "h")]);
        assert!(Settings::new(&p, &["graph"]).is_err());
    }

    #[test]
    fn lookups() {
        let p = pairs(&[("graph", "g"), ("n", " 12 "), ("empty", "")]);
        let s = Settings::new(&p, &["graph", "n", "empty", "other"]).unwrap();
        assert_eq!(s.required("graph").unwrap(), "g");
        assert!(s.required("other").unwrap_err().contains("required"));
        assert!(s.required("empty").unwrap_err().contains("empty"));
        assert_eq!(s.string_or("other", "d").unwrap(), "d");
        assert!(s.string_or("empty", "d").is_err());
        assert_eq!(s.integer_or("n", 1, 1, 100).unwrap(), 12);
        assert_eq!(s.integer_or("other", 7, 1, 100).unwrap(), 7);
        assert!(s.integer_or("n", 1, 1, 10).is_err());
        assert!(s.integer_or("graph", 1, 1, 10).is_err());
        let p = pairs(&[("k1", "1.5"), ("stem", "false"), ("bad", "yes")]);
        let s = Settings::new(&p, &["k1", "stem", "bad", "b"]).unwrap();
        assert_eq!(s.number_or("k1", 1.2, 0.0, 10.0).unwrap(), 1.5);
        assert_eq!(s.number_or("b", 0.75, 0.0, 1.0).unwrap(), 0.75);
        assert!(s.number_or("k1", 1.2, 0.0, 1.0).is_err());
        assert!(!s.bool_or("stem", true).unwrap());
        assert!(s.bool_or("bad", true).is_err());
    }
}
