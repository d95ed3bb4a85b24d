//! Compiling untrusted components in a subprocess, under a wall-clock,
//! CPU and memory limit.
//!
//! Cranelift's cost grows faster than linearly with a function's size, and
//! wasmtime's compilation cannot be cancelled: a 1 MB component once held an
//! upload for 60 s and 75 s of CPU. The validator's caps
//! (`sandbox::validate::code_limits`) refuse the obvious bombs before
//! anything compiles; what passes them is compiled by a child process (the
//! `nboost` binary itself, run with [`CHILD_ARG`]) with `RLIMIT_CPU` and
//! `RLIMIT_DATA` set, killed when the wall-clock limit passes. The child
//! builds an engine from the parent's exact [`EngineOptions`], so its
//! artifact has the parent's compatibility key; the parent still checks the
//! header when it deserialises (wasmtime refuses another version or
//! configuration).
//!
//! Manifest components (the operator's own files) compile in process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "compiler")]
use crate::sandbox::EngineOptions;
use crate::sandbox::SandboxEngine;

/// First argument that turns `nboost` into the compile child.
pub const CHILD_ARG: &str = "__nboost-compile-component";
const ENGINE_ENV: &str = "NBOOST_COMPILE_ENGINE";
const MEMORY_ENV: &str = "NBOOST_COMPILE_MEMORY_BYTES";
const CPU_ENV: &str = "NBOOST_COMPILE_CPU_SECONDS";

/// How untrusted components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedCompiler {
    /// The `nboost` executable to run as the child.
    pub exe: PathBuf,
    /// Wall-clock limit of one compilation. Default 30 s (MiniLM's 3 MiB
    /// component compiles in a few seconds on 2 cores).
    pub timeout: Duration,
    /// Data-segment limit of the child (`RLIMIT_DATA`). Default 2 GiB.
    pub memory_bytes: u64,
}

impl IsolatedCompiler {
    /// This executable as the compiler, with default limits.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            timeout: Duration::from_secs(30),
            memory_bytes: 2 << 30,
        })
    }

    /// Compile `bytes` for `engine` in a child; the serialised artifact, or
    /// a message fit for the uploader.
    pub fn compile(&self, engine: &SandboxEngine, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let options = serde_json::to_string(engine.options()).map_err(|e| e.to_string())?;
        // RLIMIT_CPU counts every thread: Cranelift compiles functions on
        // all cores at once, so the CPU budget is the wall-clock one times
        // the threads it may use (the wall clock is enforced below).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let cpu = (self.timeout.as_secs() + 1) * threads;
        let mut child = Command::new(&self.exe)
            .arg(CHILD_ARG)
            .env(ENGINE_ENV, options)
            .env(MEMORY_ENV, self.memory_bytes.to_string())
            .env(CPU_ENV, cpu.to_string())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the compiler process: {e}"))?;
        let started = Instant::now();
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let errors = std::thread::spawn(move || {
            let mut err = String::new();
            let _ = stderr.by_ref().take(16 << 10).read_to_string(&mut err);
            err
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("cannot wait for the compiler process: {e}")),
            }
        };
        let _ = writer.join();
        let artifact = reader.join().unwrap_or_default();
        let message = errors.join().unwrap_or_default();
        let Some(status) = status else {
            return Err(format!(
                "compilation took longer than the {} ms limit and was stopped",
                self.timeout.as_millis()
            ));
        };
        if status.success() {
            Ok(artifact)
        } else {
            let why = message.trim();
            Err(if why.contains("memory allocation of") {
                format!(
                    "compilation needed more than the compiler's memory limit of {} MiB and was \
                     stopped",
                    self.memory_bytes >> 20
                )
            } else if why.is_empty() {
                format!(
                    "the compiler process failed ({status}): it hit its CPU or memory limit \
                     ({} bytes)",
                    self.memory_bytes
                )
            } else {
                format!("cannot compile: {why}")
            })
        }
    }
}

/// The child: limits itself, reads a component on stdin, writes the
/// artifact on stdout. Errors go to stderr, one line.
pub fn child_main() -> ExitCode {
    match child() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime-only build has no compiler to run; its registry never starts
/// a child, but a stray invocation still answers clearly.
#[cfg(not(feature = "compiler"))]
fn child() -> Result<(), String> {
    Err("this nboost is a runtime-only build: it cannot compile components".into())
}

#[cfg(feature = "compiler")]
fn child() -> Result<(), String> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let memory: u64 = env(MEMORY_ENV)?.parse().map_err(|e| format!("{e}"))?;
    let cpu: u64 = env(CPU_ENV)?.parse().map_err(|e| format!("{e}"))?;
    rlimit::setrlimit(rlimit::Resource::DATA, memory, memory)
        .map_err(|e| format!("cannot limit memory: {e}"))?;
    rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu)
        .map_err(|e| format!("cannot limit CPU time: {e}"))?;
    let mut options: EngineOptions =
        serde_json::from_str(&env(ENGINE_ENV)?).map_err(|e| format!("engine options: {e}"))?;
    // The child instantiates nothing: one pool slot keeps the pooling
    // allocator's writable reservations (fiber stacks) under RLIMIT_DATA.
    // Pool sizes are not part of the artifact's compatibility key.
    options.max_instances = 1;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let engine = SandboxEngine::new(options).map_err(|e| format!("{e:#}"))?;
    let artifact = engine
        .engine()
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    std::io::stdout()
        .write_all(&artifact)
        .map_err(|e| e.to_string())
}
