//! Names of components, graphs and tenants: one rule, checked at every
//! door (manifest, uploads, the store). A leaf module: everyone uses it.

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
}
