//! ed25519 key files: `NAME.key` (the 32-byte secret seed, hex, mode 0600)
//! and `NAME.pub` (the public key, hex). A key id is the first 16 hex
//! digits of the public key's sha256: what `bundle.sig` names, so a node
//! with several trusted keys knows which one to try.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::BundleError;

/// The id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string()
}

/// Make a new key pair from the operating system's randomness; write
/// `BASE.key` and `BASE.pub`, refusing to overwrite.
pub fn write_keypair(base: &Path) -> Result<(PathBuf, PathBuf), BundleError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BundleError::Io(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let secret = base.with_extension("key");
    let public = base.with_extension("pub");
    for p in [&secret, &public] {
        if p.exists() {
            return Err(BundleError::Io(format!(
                "{} exists; not overwritten",
                p.display()
            )));
        }
    }
    write_private(&secret, &format!("{}\n", hex::encode(seed)))?;
    std::fs::write(
        &public,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())),
    )
    .map_err(|e| BundleError::Io(format!("{}: {e}", public.display())))?;
    Ok((secret, public))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), BundleError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| BundleError::Io(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), BundleError> {
    std::fs::write(path, text).map_err(|e| BundleError::Io(format!("{}: {e}", path.display())))
}

fn read_hex32(path: &Path, what: &str) -> Result<[u8; 32], BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError::Io(format!("{}: {e}", path.display())))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            BundleError::Io(format!(
                "{}: not an ed25519 {what} (64 hex digits)",
                path.display()
            ))
        })
}

/// A secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey, BundleError> {
    Ok(SigningKey::from_bytes(&read_hex32(path, "secret key")?))
}

/// A public key file.
pub fn read_public(path: &Path) -> Result<VerifyingKey, BundleError> {
    VerifyingKey::from_bytes(&read_hex32(path, "public key")?)
        .map_err(|e| BundleError::Io(format!("{}: {e}", path.display())))
}
