//! Distribution through OCI registries: components, signed bundles and the
//! WIT contract itself, pushed and pulled as OCI artifacts.
//!
//! Why OCI: every operator already runs a registry (or a cloud one), with
//! access control, replication and digests. Three artifact kinds:
//!
//! * a **component** is a Wasm OCI artifact in the CNCF TAG-Runtime layout
//!   (config `application/vnd.wasm.config.v0+json` listing its WIT world,
//!   one `application/wasm` layer), via `oci-wasm`, so `wkg`, `wasmtime`
//!   and other tools read what nboost writes;
//! * the **WIT package** `nboost:reranker` is the same layout with the
//!   package encoded as Wasm (what `wkg publish` writes), so plugin authors
//!   can `wkg get` the contract;
//! * a **bundle** (a signed tar, see [`crate::bundle`]) is an artifact of
//!   its own media types ([`BUNDLE_CONFIG_MEDIA_TYPE`],
//!   [`BUNDLE_LAYER_MEDIA_TYPE`]), because it is not a component: it
//!   carries graphs and settings too, and its trust comes from its own
//!   signature, not from the registry.
//!
//! Pulls are bounded ([`PullLimits`]: sizes are checked against the
//! manifest before any blob is fetched), digest-pinned references
//! (`repo@sha256:…`) are checked against the manifest actually served, and
//! layer digests against the bytes received. Nothing here writes files:
//! callers verify what was pulled (signature, validation) and only then
//! install it, atomically.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{WasmConfig, WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE};
use sha2::{Digest, Sha256};

/// Config media type of a bundle artifact.
pub const BUNDLE_CONFIG_MEDIA_TYPE: &str = "application/vnd.nboost.bundle.config.v1+json";
/// Layer media type of a bundle artifact (the bundle file itself).
pub const BUNDLE_LAYER_MEDIA_TYPE: &str = "application/vnd.nboost.bundle.v1.tar";
/// Manifest annotation naming the bundle's component and version.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// What went wrong talking to a registry or with what it served.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error("`{0}` is not an OCI reference (registry/repository:tag or @sha256:digest): {1}")]
    Reference(String, String),
    /// The registry refused or failed (network, auth, not found).
    #[error("registry: {0}")]
    Registry(String),
    /// The artifact is not of the expected kind.
    #[error("{0}")]
    WrongKind(String),
    /// A digest did not match (pinned reference, or a layer's bytes).
    #[error("digest mismatch: {0}")]
    Digest(String),
    /// The artifact is larger than the pull limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was measured.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The WIT package could not be encoded or decoded.
    #[error("WIT: {0}")]
    Wit(String),
}

fn registry<E: std::fmt::Display>(e: E) -> OciError {
    OciError::Registry(format!("{e:#}"))
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Speak plain HTTP (a registry on loopback or a private network);
    /// HTTPS otherwise.
    pub plain_http: bool,
    /// Basic-auth user name (anonymous when `None`).
    pub username: Option<String>,
    /// Basic-auth password or token.
    pub password: Option<String>,
}

/// Caps on what a pull may download.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// Most bytes of all layers together.
    pub max_bytes: u64,
}

impl Default for PullLimits {
    /// 2 GiB: a MiniLM bundle is ~90 MB; a large cross-encoder ~1.3 GB.
    fn default() -> Self {
        Self { max_bytes: 2 << 30 }
    }
}

/// An artifact as pulled: its single layer's bytes and where they came from.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The layer's bytes (verified against the manifest's digest).
    pub bytes: Vec<u8>,
    /// `sha256:…` of the manifest served: pin it for reproducible pulls.
    pub manifest_digest: String,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Where a push landed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pushed to.
    pub reference: String,
    /// `sha256:…` of the manifest: `REPO@DIGEST` pulls exactly this.
    pub manifest_digest: String,
}

/// A client for one registry configuration.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    limits: PullLimits,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parse `reference` (`host[:port]/repo[:tag|@digest]`).
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::Reference(reference.to_string(), e.to_string()))
}

impl Registry {
    /// A client with `options` and pull `limits`.
    pub fn new(options: &RegistryOptions, limits: PullLimits) -> Self {
        let config = ClientConfig {
            protocol: if options.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..ClientConfig::default()
        };
        let auth = match (&options.username, &options.password) {
            (Some(u), Some(p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            _ => RegistryAuth::Anonymous,
        };
        Self {
            client: Client::new(config),
            auth,
            limits,
        }
    }

    async fn push_manifest(
        &self,
        reference: &str,
        layer: ImageLayer,
        config: Config,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed, OciError> {
        let r = parse_reference(reference)?;
        let layers = vec![layer];
        let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
        manifest.media_type = Some(oci_wasm::WASM_MANIFEST_MEDIA_TYPE.to_string());
        self.client
            .push(&r, &layers, config, &self.auth, Some(manifest))
            .await
            .map_err(registry)?;
        // The digest as the registry has it (it is over the exact bytes
        // of the manifest it stored).
        let manifest_digest = self
            .client
            .fetch_manifest_digest(&r, &self.auth)
            .await
            .map_err(registry)?;
        Ok(Pushed {
            reference: reference.to_string(),
            manifest_digest,
        })
    }

    /// Push a component file's bytes as a Wasm OCI artifact.
    pub async fn push_component(
        &self,
        reference: &str,
        wasm: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed, OciError> {
        let (config, layer) = WasmConfig::from_raw_component(wasm, None)
            .map_err(|e| OciError::WrongKind(format!("not a component: {e:#}")))?;
        let config = Config::new(
            serde_json::to_vec(&config).map_err(registry)?,
            WASM_MANIFEST_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        self.push_manifest(reference, layer, config, annotations)
            .await
    }

    /// Push a bundle file's bytes as a bundle artifact.
    pub async fn push_bundle(
        &self,
        reference: &str,
        bytes: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed, OciError> {
        let config = serde_json::json!({
            "layer_digest": sha256(&bytes),
            "size": bytes.len(),
            "annotations": &annotations,
        });
        let config = Config::new(
            serde_json::to_vec(&config).map_err(registry)?,
            BUNDLE_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        let layer = ImageLayer::new(bytes, BUNDLE_LAYER_MEDIA_TYPE.to_string(), None);
        self.push_manifest(reference, layer, config, annotations)
            .await
    }

    /// Push the WIT package in `dir` (with its `deps/`) in `wkg`'s layout.
    pub async fn push_wit(
        &self,
        reference: &str,
        dir: &Path,
    ) -> Result<(Pushed, String), OciError> {
        let (bytes, name) = encode_wit(dir)?;
        let annotations = BTreeMap::from([
            (TITLE_ANNOTATION.to_string(), name.clone()),
            (
                "org.opencontainers.image.version".to_string(),
                name.rsplit_once('@').map_or("", |(_, v)| v).to_string(),
            ),
        ]);
        Ok((
            self.push_component(reference, bytes, annotations).await?,
            name,
        ))
    }

    /// Pull the single layer of `reference`, whose config must be of
    /// `config_media_type` and whose layer of `layer_media_type`.
    async fn pull_one(
        &self,
        reference: &str,
        config_media_type: &str,
        layer_media_type: &str,
    ) -> Result<Pulled, OciError> {
        let r = parse_reference(reference)?;
        // The manifest first: kind and size are checked before any blob.
        let (manifest, digest) = self
            .client
            .pull_image_manifest(&r, &self.auth)
            .await
            .map_err(registry)?;
        if let Some(pinned) = r.digest() {
            if pinned != digest {
                return Err(OciError::Digest(format!(
                    "{reference} is pinned to {pinned}, the registry served {digest}"
                )));
            }
        }
        if manifest.config.media_type != config_media_type {
            return Err(OciError::WrongKind(format!(
                "{reference} is a `{}` artifact, not `{config_media_type}`",
                manifest.config.media_type
            )));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(OciError::WrongKind(format!(
                "{reference} has {} layers, expected one",
                manifest.layers.len()
            )));
        };
        if layer.media_type != layer_media_type {
            return Err(OciError::WrongKind(format!(
                "{reference}'s layer is `{}`, not `{layer_media_type}`",
                layer.media_type
            )));
        }
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if size > self.limits.max_bytes {
            return Err(OciError::TooLarge {
                what: reference.to_string(),
                size,
                limit: self.limits.max_bytes,
            });
        }
        // Streamed, and cut at the declared size: a registry that sends
        // more than its manifest says does not get to fill memory.
        let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
        let mut stream = self
            .client
            .pull_blob_stream(&r, layer)
            .await
            .map_err(registry)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(registry)?;
            if bytes.len() as u64 + chunk.len() as u64 > size {
                return Err(OciError::Digest(format!(
                    "layer of {reference}: the registry sent more than the {size} bytes its manifest declares"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let got = sha256(&bytes);
        if got != layer.digest {
            return Err(OciError::Digest(format!(
                "layer of {reference}: manifest says {}, received {got}",
                layer.digest
            )));
        }
        Ok(Pulled {
            bytes,
            manifest_digest: digest,
            annotations: manifest.annotations.unwrap_or_default(),
        })
    }

    /// Pull a component (a Wasm OCI artifact).
    pub async fn pull_component(&self, reference: &str) -> Result<Pulled, OciError> {
        self.pull_one(
            reference,
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            WASM_LAYER_MEDIA_TYPE,
        )
        .await
    }

    /// Pull a bundle artifact (its signature is the caller's to check).
    pub async fn pull_bundle(&self, reference: &str) -> Result<Pulled, OciError> {
        self.pull_one(reference, BUNDLE_CONFIG_MEDIA_TYPE, BUNDLE_LAYER_MEDIA_TYPE)
            .await
    }

    /// Pull a WIT package and print it as WIT text.
    pub async fn pull_wit(&self, reference: &str) -> Result<(Pulled, String), OciError> {
        let pulled = self.pull_component(reference).await?;
        let text = decode_wit(&pulled.bytes)?;
        Ok((pulled, text))
    }
}

/// Encode the WIT package in `dir` (and its `deps/`) as Wasm, as `wkg`
/// publishes it: the bytes and the package's `namespace:name@version`.
pub fn encode_wit(dir: &Path) -> Result<(Vec<u8>, String), OciError> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(dir)
        .map_err(|e| OciError::Wit(format!("{}: {e:#}", dir.display())))?;
    let name = resolve.packages[pkg].name.to_string();
    let bytes =
        wit_component::encode(&resolve, pkg).map_err(|e| OciError::Wit(format!("{e:#}")))?;
    Ok((bytes, name))
}

/// Decode a Wasm-encoded WIT package back into WIT text.
pub fn decode_wit(bytes: &[u8]) -> Result<String, OciError> {
    match wit_component::decode(bytes).map_err(|e| OciError::Wit(format!("{e:#}")))? {
        wit_component::DecodedWasm::WitPackage(resolve, pkg) => {
            let mut printer = wit_component::WitPrinter::default();
            printer
                .print(&resolve, pkg, &[])
                .map_err(|e| OciError::Wit(format!("{e:#}")))?;
            Ok(printer.output.to_string())
        }
        wit_component::DecodedWasm::Component(..) => Err(OciError::WrongKind(
            "the artifact is a component, not a WIT package".to_string(),
        )),
    }
}
