//! Names of tenants, components and graphs: one rule, checked at every
//! door (manifest, uploads, the store), and one checked type per thing
//! named, so a component's name cannot be passed where a graph's is
//! expected and nothing past the door checks a name twice. A leaf module:
//! everyone uses it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;

/// Check a component or graph name: lowercase ASCII words separated by `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("name `{name}` must be 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "name `{name}` may only hold a-z, 0-9 and '-' (found {c:?})"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "name `{name}`: words must be separated by a single '-'"
        ));
    }
    Ok(())
}

/// Check an alias: the model names clients hard-code (`rerank-v3.5`,
/// `BAAI/bge-reranker-base`): 1 to 128 characters in `/`-separated
/// segments of `A-Z a-z 0-9 _ -`, dots allowed only between them (no
/// leading, trailing or double dots: aliases appear in URLs). The OpenAPI
/// document states the same rule as [`ALIAS_PATTERN`].
pub fn check_alias(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("name `{name}` must be 1 to 128 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!(
            "name `{name}` may only hold A-Z, a-z, 0-9, '.', '_', '-' and '/' (found {c:?})"
        ));
    }
    let segment_ok =
        |s: &str| !s.is_empty() && !s.starts_with('.') && !s.ends_with('.') && !s.contains("..");
    if !name.split('/').all(segment_ok) {
        return Err(format!(
            "name `{name}`: each '/'-separated part must be non-empty, with dots only inside it"
        ));
    }
    Ok(())
}

/// [`check_name`] as a regular expression (for the OpenAPI document).
pub const NAME_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// [`check_alias`] as a regular expression (for the OpenAPI document).
pub const ALIAS_PATTERN: &str =
    "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)*$";

/// What a [`Name`] names; its noun starts the error message of a bad one.
pub trait Named: 'static {
    /// `tenant`, `component`, `graph`, `alias`.
    const NOUN: &'static str;
    /// The rule its names follow.
    fn check(name: &str) -> Result<(), String> {
        check_name(name)
    }
}

/// Marker: a tenant's name.
pub enum TenantKind {}
/// Marker: a component's name.
pub enum ComponentKind {}
/// Marker: a graph's (model file's) name.
pub enum GraphKind {}
/// Marker: an alias's name.
pub enum AliasKind {}

impl Named for TenantKind {
    const NOUN: &'static str = "tenant";
}
impl Named for ComponentKind {
    const NOUN: &'static str = "component";
}
impl Named for GraphKind {
    const NOUN: &'static str = "graph";
}
impl Named for AliasKind {
    const NOUN: &'static str = "alias";
    fn check(name: &str) -> Result<(), String> {
        check_alias(name)
    }
}

/// A tenant's name, checked.
pub type TenantId = Name<TenantKind>;
/// A component's name, checked.
pub type ComponentName = Name<ComponentKind>;
/// A graph's name, checked.
pub type GraphName = Name<GraphKind>;
/// An alias's name, checked.
pub type AliasName = Name<AliasKind>;

/// A name that passed its kind's check, typed by what it names.
pub struct Name<K: Named>(String, PhantomData<fn() -> K>);

impl<K: Named> Name<K> {
    /// Check and wrap a name; the error starts with the noun
    /// (`tenant name `X` must be …`).
    pub fn parse(name: &str) -> Result<Self, String> {
        K::check(name).map_err(|e| format!("{} {e}", K::NOUN))?;
        Ok(Self(name.to_string(), PhantomData))
    }

    /// Wrap a name read back from where only checked names are written
    /// (the store, the manifest after its checks).
    pub(crate) fn trusted(name: String) -> Self {
        debug_assert!(K::check(&name).is_ok(), "unchecked name {name:?}");
        Self(name, PhantomData)
    }

    /// A name no one can choose because it fails the check (the operator's
    /// `@operator`): it never collides with a checked one.
    pub(crate) fn reserved(name: &str) -> Self {
        debug_assert!(K::check(name).is_err(), "{name:?} could be chosen");
        Self(name.to_string(), PhantomData)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<K: Named> Deref for Name<K> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<K: Named> Borrow<str> for Name<K> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<K: Named> Clone for Name<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K: Named> PartialEq for Name<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Named> Eq for Name<K> {}

impl<K: Named> PartialOrd for Name<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Named> Ord for Name<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// Hashes like the `str` it holds (so maps keyed by names can be looked up
/// by `&str`).
impl<K: Named> Hash for Name<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<K: Named> fmt::Debug for Name<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<K: Named> fmt::Display for Name<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<K: Named> serde::Serialize for Name<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case_words() {
        assert!(check_name("all-minilm-l6-v2").is_ok());
        for bad in [
            "",
            "Upper",
            "a--b",
            "-a",
            "a-",
            "a b",
            "..",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn typed_names_say_what_they_name() {
        assert_eq!(GraphName::parse("minilm").unwrap().as_str(), "minilm");
        let e = ComponentName::parse("Bad").unwrap_err();
        assert!(e.starts_with("component name `Bad`"), "{e}");
        let e = TenantId::parse("a--b").unwrap_err();
        assert!(e.starts_with("tenant name `a--b`"), "{e}");
        let mut m = std::collections::HashMap::new();
        m.insert(GraphName::parse("vocab").unwrap(), 1);
        assert_eq!(m.get("vocab"), Some(&1), "looked up by &str");
        for ok in ["rerank-v3.5", "BAAI/bge-reranker-base", "jina_reranker"] {
            assert!(AliasName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a/../b", "a b", "a?b", ".a", "a.", "a//b"] {
            assert!(AliasName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
