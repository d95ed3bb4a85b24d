//! tract's prepared form ([`super::forms`]): the decluttered typed model as
//! NNEF, written by tract, read back here.
//!
//! Why a reader of our own: tract's NNEF loader walks the tar once, on one
//! thread, reading each tensor through a chain of boxed readers, then
//! parses the graph text; for MiniLM that is 90 MB and most of the load.
//! The format is tract's own (a `graph.nnef` text and one `.dat` per
//! tensor, NNEF's binary tensor format); this reader takes the tar's index
//! from its headers (seeking past the data), then reads the tensors on
//! several threads straight from the file into their final buffers
//! (positioned reads, no shared cursor) while the graph text parses, and
//! hands both to tract's own NNEF translator. A form holding anything else
//! (quantisation tables, sub-models) is read by tract's loader instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_nnef::internal::{Framework, Identifier, Registry};
use tract_nnef::ProtoModel;
use tract_onnx::prelude::{Tensor, TractResult, TypedModel};

/// The form's name: NNEF written by this tract minor version with
/// nboost's registry of extra operators (bump the last number when the
/// registry changes).
pub const FORM: &str = "tract-0.23-nnef-1";

/// tract's NNEF framework with the ONNX operators and nboost's additions.
fn nnef() -> tract_nnef::framework::Nnef {
    use tract_onnx::WithOnnx;
    tract_nnef::nnef().with_onnx().with_registry(extra_ops())
}

/// Operators tract's declutter produces but its NNEF registries cannot
/// write: exact GELU (the erf form BERT models use), as a unit
/// element-wise operator named `nboost_gelu_exact`.
fn extra_ops() -> Registry {
    use tract_onnx::tract_core::ops::nn::gelu_exact::GeluExact;
    let mut r = Registry::new("nboost");
    r.register_unit_element_wise("nboost_gelu_exact", &GeluExact {});
    r
}

/// Write `model` (decluttered) as the form, into the file `out`.
pub fn write(model: &TypedModel, out: &Path) -> Result<(), String> {
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    nnef()
        .write_to_tar(model, std::io::BufWriter::new(file))
        .and_then(|mut w| Ok(std::io::Write::flush(&mut w)?))
        .map(|_| ())
        .map_err(|e| format!("tract cannot write the graph as NNEF: {e:#}"))
}

/// Read the form at `path` into a typed model, tensors on up to
/// `threads` threads.
pub fn read(path: &Path, threads: usize) -> Result<TypedModel, String> {
    let nnef = nnef();
    let proto = match read_proto(path, threads.max(1)) {
        Ok(Some(proto)) => proto,
        Ok(None) => nnef
            .proto_model_for_path(path)
            .map_err(|e| format!("tract cannot read its NNEF form: {e:#}"))?,
        Err(e) => return Err(format!("cannot read the NNEF form: {e:#}")),
    };
    nnef.model_for_proto_model(&proto)
        .map_err(|e| format!("tract cannot translate its NNEF form: {e:#}"))
}

/// One tensor file inside the tar: its id and where its bytes are.
struct Dat {
    id: String,
    offset: u64,
    len: u64,
}

/// The document and tensors of a plain form; `None` when the tar holds
/// anything but `graph.nnef` and `.dat` files.
fn read_proto(path: &Path, threads: usize) -> TractResult<Option<ProtoModel>> {
    let file = File::open(path)?;
    let mut text = None;
    let mut dats = Vec::new();
    let mut archive = tar::Archive::new(&file);
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let name: PathBuf = entry.path()?.components().collect();
        if name == Path::new(tract_nnef::resource::GRAPH_NNEF_FILENAME) {
            let mut t = String::new();
            entry.read_to_string(&mut t)?;
            text = Some(t);
        } else if name.extension().is_some_and(|e| e == "dat") {
            dats.push(Dat {
                id: tract_nnef::resource::resource_path_to_id(&name)?,
                offset: entry.raw_file_position(),
                len: entry.size(),
            });
        } else if entry.header().entry_type().is_file() {
            return Ok(None);
        }
    }
    let Some(text) = text else {
        anyhow::bail!("the form has no graph.nnef");
    };
    // The document parses (about 20 ms for MiniLM) while the tensors load.
    let (doc, tensors) = std::thread::scope(|s| {
        let tensors = s.spawn(|| read_tensors(&file, dats, threads));
        let doc = tract_nnef::ast::parse::parse_document(&text);
        let tensors = tensors
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a tensor reader panicked")));
        (doc, tensors)
    });
    let proto = ProtoModel {
        doc: doc?,
        tensors: tensors?,
        quantization: None,
        resources: HashMap::new(),
    };
    proto.validate()?;
    Ok(Some(proto))
}

/// Read `dats` from `file` on `threads` threads, splitting them into
/// groups of about equal bytes.
fn read_tensors(
    file: &File,
    mut dats: Vec<Dat>,
    threads: usize,
) -> TractResult<HashMap<Identifier, Arc<Tensor>>> {
    dats.sort_by_key(|d| std::cmp::Reverse(d.len));
    let mut groups: Vec<(u64, Vec<Dat>)> = (0..threads).map(|_| (0, Vec::new())).collect();
    for d in dats {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        lightest.0 += d.len;
        lightest.1.push(d);
    }
    let read = |group: Vec<Dat>| -> TractResult<Vec<(Identifier, Arc<Tensor>)>> {
        group
            .into_iter()
            .map(|d| {
                let mut at = At {
                    file,
                    pos: d.offset,
                    end: d.offset + d.len,
                };
                let tensor = tract_nnef::tensors::read_tensor(&mut at)?;
                Ok((Identifier::from(d.id.as_str()), Arc::new(tensor)))
            })
            .collect()
    };
    let parts: Vec<TractResult<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|(_, g)| s.spawn(move || read(g)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a tensor reader panicked")))
            })
            .collect()
    });
    let mut tensors = HashMap::new();
    for part in parts {
        tensors.extend(part?);
    }
    Ok(tensors)
}

/// A reader of `file`'s bytes `pos..end`, by positioned reads.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = (self.end - self.pos) as usize;
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
