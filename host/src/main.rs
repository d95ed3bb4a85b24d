//! The `nboost` binary: parse the command line, set up logging, dispatch.

mod cli;

use clap::Parser;

/// Large blocks (graph weights) on transparent huge pages: see
/// [`nboost::alloc`].
#[global_allocator]
static ALLOCATOR: nboost::alloc::LargePages = nboost::alloc::LargePages;

fn main() -> std::process::ExitCode {
    // The compile subprocess of untrusted components (see
    // `nboost::registry::isolate`): no flags, no logging.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(nboost::registry::isolate::CHILD_ARG))
    {
        return nboost::registry::isolate::child_main();
    }
    let cli = cli::Cli::parse();
    cli::init_tracing(cli.global.verbose);
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
