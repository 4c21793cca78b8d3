//! The `paas-operator` binary: parse the configuration, then run. Helm 4
//! also runs it as the confinement post-renderer (`confine-check`, hidden):
//! that is dispatched first, without configuration or async runtime.

use std::process::ExitCode;

use paas_operator::helm::postrender::{CHECKER_SUBCOMMAND, checker_main};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == CHECKER_SUBCOMMAND) {
        return checker_main(&args[2..]);
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
