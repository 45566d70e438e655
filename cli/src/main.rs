//! `ekms`: the operator's tool.

use clap::{Parser, Subcommand};

use ekms_cli as cli;

/// mimalloc: the request path allocates many short-lived buffers (JSON, base64, audit records);
/// glibc malloc's arenas and consolidation cost more than the work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ekms: a key management service whose keys never leave an enclave.
#[derive(Debug, Parser)]
#[command(name = "ekms", version)]
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
    /// One half of `ekms bench --baseline` (the bare server or its relay), run by `ekms bench`.
    #[command(hide = true)]
    BenchBaseline(cli::bench::baseline::ChildArgs),
    /// Verify Nitro attestation documents, or make mock ones.
    Attestation {
        #[command(subcommand)]
        command: cli::attestation::AttestationCommand,
    },
    /// Verify or follow the tamper-evident audit log (audit.jsonl).
    Audit {
        #[command(subcommand)]
        command: cli::audit::AuditCommand,
    },
    /// Custodian keys.
    Custodian {
        #[command(subcommand)]
        command: cli::custodian::CustodianCommand,
    },
    /// Initialize a deployment: make the domain key, split it M-of-N among custodians.
    Init(cli::custody::InitArgs),
    /// Submit one custodian's share to a sealed enclave.
    Unseal(cli::custody::UnsealArgs),
    /// Learn the deployment's TLS CA from the enclave, proven by attestation on the connection
    /// itself, and write it for clients to trust (AWS_CA_BUNDLE).
    Trust(cli::trust::TrustArgs),
    /// Show whether the enclave is sealed, and how many shares it holds.
    Status(cli::custody::StatusArgs),
    /// Import key material into an EXTERNAL key, wrapped to an attested enclave's key only.
    ImportKey(cli::import_key::ImportKeyArgs),
    /// Principals (IAM-style users) of the enclave: create, list, delete, put-policy.
    Principal {
        #[command(subcommand)]
        command: cli::principal::PrincipalCommand,
    },
    /// Access keys of a principal: create, delete.
    AccessKey {
        #[command(subcommand)]
        command: cli::principal::AccessKeyCommand,
    },
    /// The deployment's TLS identity: `rotate` makes a new CA (signed, `ekms:RotateTlsCa`).
    Tls {
        #[command(subcommand)]
        command: cli::principal::TlsCommand,
    },
    /// The sealed records the last unseal refused, with why (signed, `ekms:ListRefusedRecords`;
    /// `ekms status` shows only their count).
    RefusedRecords(cli::principal::Connection),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EKMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs written to a file or a journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Args::parse().command {
        Command::Dev(args) => runtime()?.block_on(cli::dev::run(args)),
        Command::Bench(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(cli::bench::run(args)),
        Command::BenchBaseline(args) => cli::bench::baseline::run_child(args),
        Command::Attestation { command } => cli::attestation::run(command),
        Command::Audit { command } => cli::audit::run(command),
        Command::Custodian { command } => cli::custodian::run(command),
        Command::Init(args) => runtime()?.block_on(async {
            let (shares, admin) = cli::custody::init(&args).await?;
            for path in &shares {
                println!("wrote {}", path.display());
            }
            println!(
                "wrote {} (profile ekms, principal {})",
                args.out.join("credentials").display(),
                admin.user_name
            );
            Ok(())
        }),
        Command::Unseal(args) => runtime()?.block_on(async {
            let status = cli::custody::unseal(&args).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }),
        Command::ImportKey(args) => runtime()?.block_on(async {
            let report = cli::import_key::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }),
        Command::Principal { command } => runtime()?.block_on(async {
            let out = cli::principal::run_principal(&command).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }),
        Command::AccessKey { command } => runtime()?.block_on(async {
            let out = cli::principal::run_access_key(&command).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }),
        Command::Tls { command } => runtime()?.block_on(async {
            let out = cli::principal::run_tls(&command).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }),
        Command::RefusedRecords(connection) => runtime()?.block_on(async {
            let out = cli::principal::run_refused_records(&connection).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }),
        Command::Trust(args) => runtime()?.block_on(async {
            let out = cli::trust::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }),
        Command::Status(args) => runtime()?.block_on(async {
            let status = cli::custody::status(&args).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
