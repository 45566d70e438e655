//! `ekms`: the operator's tool.

use std::ffi::OsString;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use ekms_shared::config_file;
use ekms_shared::logging::LogFormat;

use ekms_cli as cli;

/// mimalloc: the request path allocates many short-lived buffers (JSON, base64, audit records);
/// glibc malloc's arenas and consolidation cost more than the work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ekms: a key management service whose keys never leave an enclave.
#[derive(Debug, Parser)]
#[command(name = "ekms", version)]
struct Args {
    /// Log lines as text (colours on a terminal only) or as JSON objects, one per line;
    /// `ekms dev` passes it on to the processes it starts.
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mock enclave and the parent relay on loopback, for development (INSECURE).
    Dev(cli::dev::DevArgs),
    /// Check a config file (`--config FILE` of `ekms dev`, `ekms-parent`, `ekms-enclave`).
    Config {
        #[command(subcommand)]
        command: cli::config::ConfigCommand,
    },
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
    /// Let a sealed member join from a running one, with no custodian: the two enclaves
    /// attest to each other, and the domain key goes sealed to the joiner's attested key.
    Join(cli::custody::JoinArgs),
    /// The measurements allowed to join besides the running image (a rolling upgrade), changed
    /// with M of N custodians' signatures.
    Measurements {
        #[command(subcommand)]
        command: cli::measurements::MeasurementsCommand,
    },
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

/// The command line, with the environment (`EKMS_*`) and, for `ekms dev`, its config file
/// below it (`ekms_shared::config_file`).
fn parse() -> anyhow::Result<Args> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Only `ekms dev` reads a config file: found by a lenient first pass, so that an
    // `EKMS_CONFIG` set for it does not reach the other subcommands.
    let dev = Args::command()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .is_ok_and(|m| m.subcommand_name() == Some("dev"));
    let cmd = if dev {
        config_file::layered(Args::command(), Some("dev"), &argv)?
    } else {
        config_file::with_env(Args::command(), None)
    };
    let matches = cmd.get_matches_from(argv);
    Ok(Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    ekms_shared::logging::init(args.log_format)?;
    let log_format = args.log_format;
    match args.command {
        Command::Config { command } => {
            let out = cli::config::run(&command, Args::command())?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Dev(args) => runtime()?.block_on(cli::dev::run(args, log_format)),
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
        Command::Measurements { command } => runtime()?.block_on(async {
            println!("{}", cli::measurements::run(command).await?);
            Ok(())
        }),
        Command::Join(args) if args.watch => runtime()?.block_on(async {
            tokio::select! {
                watched = cli::custody::watch_and_join(&args) => watched,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }),
        Command::Join(args) => runtime()?.block_on(async {
            let status = cli::custody::join(&args).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
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
