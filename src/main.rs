//! The `paas-operator` binary: parse the configuration, then run. It is
//! also its own helper, through two hidden subcommands dispatched first,
//! without configuration or async runtime: `confine-check` (the
//! confinement checker, run by Helm 4 as its post-renderer and by the
//! operator with Helm 3) and `limited-exec` (sets a child's limits, then
//! runs helm).

use std::process::ExitCode;

use paas_operator::helm::limits::{LAUNCHER_SUBCOMMAND, launcher_main};
use paas_operator::helm::postrender::{CHECKER_SUBCOMMAND, checker_main};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == CHECKER_SUBCOMMAND) {
        return checker_main(&args[2..]);
    }
    if args.get(1).is_some_and(|arg| arg == LAUNCHER_SUBCOMMAND) {
        return launcher_main(&args[2..]);
    }
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let config = paas_operator::config::Config::load();
    match paas_operator::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paas-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}
