//! `nboost-hostile-sockets`: a plugin that reaches for the network, for the
//! host's sandbox tests. **Never deploy it.**
//!
//! World `reranker-plugin`, but `score` calls
//! `std::net::TcpStream::connect("127.0.0.1:80")`, so the component that
//! rustc links imports `wasi:sockets/*` (`tcp`, `tcp-create-socket`,
//! `network`, `instance-network`, `ip-name-lookup`, ...) on top of what the
//! world declares. The host's validator must refuse to load it; if a host
//! ever runs it anyway, `score` returns `internal` with the connect error, or
//! `internal("connected")` if the connection succeeded.
//!
//! It takes no settings (any key is `invalid-config`).

use std::hint::black_box;
use std::net::TcpStream;

/// Bindings for the `reranker-plugin` world.
#[allow(missing_docs, reason = "generated code")]
mod bindings {
    wit_bindgen::generate!({
        world: "reranker-plugin",
        path: "../../wit",
    });
}

use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};

/// The component: implements the exported `reranker` interface.
pub struct Plugin;

impl Guest for Plugin {
    fn configure(settings: Vec<(String, String)>) -> Result<ModelInfo, Error> {
        if let Some((key, _)) = settings.first() {
            return Err(Error::InvalidConfig(format!(
                "unknown setting `{key}` (this plugin takes none)"
            )));
        }
        Ok(ModelInfo {
            name: "hostile-sockets".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "sandbox test fixture: opens a TCP connection".to_owned(),
            preferred_batch_size: 0,
            max_tokens: 0,
        })
    }

    fn score(_query: String, _passages: Vec<String>) -> Result<Vec<f32>, Error> {
        match TcpStream::connect(black_box("127.0.0.1:80")) {
            Ok(stream) => {
                black_box(stream);
                Err(Error::Internal("connected".to_owned()))
            }
            Err(e) => Err(Error::Internal(format!("connect 127.0.0.1:80: {e}"))),
        }
    }
}

// Register `Plugin` as the component's exports (wasm32 only).
#[cfg(target_arch = "wasm32")]
bindings::export!(Plugin with_types_in bindings);
