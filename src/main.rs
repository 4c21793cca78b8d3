//! The `paas-operator` binary: parse the configuration, then run.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = paas_operator::config::Config::load();
    match paas_operator::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paas-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}
