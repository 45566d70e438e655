//! `ekms`: the operator's tool.

use clap::{Parser, Subcommand};

use ekms_parent::cli;

/// ekms: a key management service whose keys never leave an enclave.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mock enclave and the parent relay on loopback, for development (INSECURE).
    Dev(cli::dev::DevArgs),
    /// Load an endpoint with SigV4-signed requests and report throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// Verify Nitro attestation documents, or make mock ones.
    Attestation {
        #[command(subcommand)]
        command: cli::attestation::AttestationCommand,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EKMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Command::Dev(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(cli::dev::run(args)),
        Command::Bench(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(cli::bench::run(args)),
        Command::Attestation { command } => cli::attestation::run(command),
    }
}
