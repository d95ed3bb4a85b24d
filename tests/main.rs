//! nboost's integration tests: one binary, one module per topic, all through
//! the real host with the real components built from `components/` (run
//! `just components` and `just model` first; `just test` does).

mod bundle;
mod cli;
mod clients;
mod common;
mod compat;
mod contract;
mod fidelity;
mod fusion;
mod guide;
mod holes;
mod holes_server;
mod lean;
mod merging;
mod model;
mod oci;
mod operations;
mod polyglot;
mod precompiled;
mod preinit;
mod proxy;
mod proxy_failures;
mod proxy_page;
mod registry;
mod replicas;
mod replicas_failures;
mod requests;
mod sandbox;
mod scaffold;
mod server;
mod services;
mod uploads;
