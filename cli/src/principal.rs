//! `ekms principal create|list|delete|put-policy` and `ekms access-key create|delete`: the
//! enclave's principals (IAM-style users) and their access keys.
//!
//! Each command is one or more SigV4-signed `POST /` requests with `X-Amz-Target:
//! Ekms.<Operation>`, signed with the caller's credentials found as the AWS CLI finds them
//! (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, else `AWS_PROFILE` in the shared credentials
//! file). The enclave authorizes them by the caller's identity policy (`ekms:CreatePrincipal`,
//! ...). What the enclave answers is printed as JSON on stdout; a new secret access key appears
//! there and nowhere else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use serde_json::{json, Value};

use super::signed_client::SignedClient;

/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the enclave is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The ekms endpoint, e.g. https://kms.internal:4599.
    #[arg(long)]
    pub endpoint: String,
    /// CA certificate (PEM) to trust for an https endpoint; default $AWS_CA_BUNDLE.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Region of the SigV4 scope; default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    #[command(flatten)]
    pub expect: super::custody::OptionalExpectation,
}

/// `ekms principal` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PrincipalCommand {
    /// Create a principal with one access key; prints {"Arn","AccessKeyId","SecretAccessKey"}.
    Create {
        /// The user name ([A-Za-z0-9+=,.@_-], 1-64 characters).
        name: String,
        /// Identity policy document (JSON); default: none (the principal is allowed nothing
        /// that a key policy does not grant it by name).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List principals and their access key ids (never secrets).
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a principal and all its access keys.
    Delete {
        /// The user name.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace a principal's identity policy.
    PutPolicy {
        /// The user name.
        name: String,
        /// Identity policy document (JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `ekms access-key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AccessKeyCommand {
    /// Create another access key (at most two per principal); prints
    /// {"UserName","AccessKeyId","SecretAccessKey"}.
    Create {
        /// The user name.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete one access key of a principal.
    Delete {
        /// The user name.
        name: String,
        /// The access key id.
        access_key_id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

impl Connection {
    fn client(&self) -> anyhow::Result<SignedClient> {
        SignedClient::proving(
            &self.endpoint,
            self.ca.clone(),
            self.expect.given(),
            self.region.clone(),
            REQUEST_TIMEOUT,
        )
    }
}

fn read_policy(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Checked here only for a clearer message; the enclave validates the grammar.
    serde_json::from_str::<Value>(&text)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(text)
}

/// Runs an `ekms principal` command; returns what it prints.
///
/// # Errors
/// Missing credentials, an unreadable policy file, or the enclave's refusal (named).
pub async fn run_principal(command: &PrincipalCommand) -> anyhow::Result<Value> {
    match command {
        PrincipalCommand::Create {
            name,
            policy,
            connection,
        } => {
            let mut body = json!({ "UserName": name });
            if let Some(path) = policy {
                body["Policy"] = Value::String(read_policy(path)?);
            }
            let out = connection
                .client()?
                .call("Ekms.CreatePrincipal", &body)
                .await?;
            Ok(json!({
                "Arn": out["Arn"],
                "AccessKeyId": out["AccessKeyId"],
                "SecretAccessKey": out["SecretAccessKey"],
            }))
        }
        PrincipalCommand::List { connection } => {
            let client = connection.client()?;
            let mut all = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let mut body = json!({});
                if let Some(m) = &marker {
                    body["Marker"] = Value::String(m.clone());
                }
                let page = client.call("Ekms.ListPrincipals", &body).await?;
                if let Some(items) = page["Principals"].as_array() {
                    all.extend(items.iter().cloned());
                }
                match page["NextMarker"].as_str() {
                    Some(next) if page["Truncated"] == true => marker = Some(next.to_owned()),
                    _ => break,
                }
            }
            Ok(json!({ "Principals": all }))
        }
        PrincipalCommand::Delete { name, connection } => {
            connection
                .client()?
                .call("Ekms.DeletePrincipal", &json!({ "UserName": name }))
                .await
        }
        PrincipalCommand::PutPolicy {
            name,
            policy,
            connection,
        } => {
            let body = json!({ "UserName": name, "Policy": read_policy(policy)? });
            connection
                .client()?
                .call("Ekms.PutPrincipalPolicy", &body)
                .await
        }
    }
}

/// Runs an `ekms access-key` command; returns what it prints.
///
/// # Errors
/// Missing credentials, or the enclave's refusal (named).
pub async fn run_access_key(command: &AccessKeyCommand) -> anyhow::Result<Value> {
    match command {
        AccessKeyCommand::Create { name, connection } => {
            connection
                .client()?
                .call("Ekms.CreateAccessKey", &json!({ "UserName": name }))
                .await
        }
        AccessKeyCommand::Delete {
            name,
            access_key_id,
            connection,
        } => {
            connection
                .client()?
                .call(
                    "Ekms.DeleteAccessKey",
                    &json!({ "UserName": name, "AccessKeyId": access_key_id }),
                )
                .await
        }
    }
}

/// Runs `ekms refused-records`; returns what it prints.
///
/// # Errors
/// Missing credentials, or the enclave's refusal (named).
pub async fn run_refused_records(connection: &Connection) -> anyhow::Result<Value> {
    connection
        .client()?
        .call("Ekms.ListRefusedRecords", &json!({}))
        .await
}

/// `ekms tls` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// Make a new deployment CA. For the overlap, the enclave presents it cross-signed by the
    /// old one, so clients that pin the old CA keep verifying; give them the new one (--out)
    /// before the overlap ends.
    Rotate {
        /// Days the old CA still verifies the enclave (0-365).
        #[arg(long, default_value_t = 30)]
        overlap_days: i64,
        /// Where the new CA certificate (PEM) is written.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// A certificate signing request for a key made in the enclave (signed,
    /// `ekms:CreateTlsCsr`), for the operator's own CA to issue; writes the CSR and prints the
    /// attestation document that binds its key.
    Csr {
        /// Where the CSR (PEM) is written.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Install the chain the operator's CA issued for the last request (PEM, leaf first,
    /// ending in the issuing CA; signed, `ekms:InstallTlsChain`). The enclave checks the leaf
    /// is for its key and the chain verifies, then serves it.
    Install {
        /// The chain (PEM).
        #[arg(long)]
        chain: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs an `ekms tls` command; returns what it prints.
///
/// # Errors
/// Missing credentials, the enclave's refusal (named), or the file cannot be written.
pub async fn run_tls(command: &TlsCommand) -> anyhow::Result<Value> {
    match command {
        TlsCommand::Rotate {
            overlap_days,
            out,
            connection,
        } => {
            let answer = connection
                .client()?
                .call("Ekms.RotateTlsCa", &json!({ "OverlapDays": overlap_days }))
                .await?;
            let pem = answer["CaCertificate"]
                .as_str()
                .context("the answer has no CaCertificate")?;
            std::fs::write(out, pem).with_context(|| format!("writing {}", out.display()))?;
            Ok(json!({
                "CaCertificate": out.display().to_string(),
                "CaSha256": answer["CaSha256"],
                "OverlapDays": answer["OverlapDays"],
            }))
        }
        TlsCommand::Csr { out, connection } => {
            let answer = connection
                .client()?
                .call("Ekms.CreateTlsCsr", &json!({}))
                .await?;
            let csr = answer["Csr"].as_str().context("the answer has no Csr")?;
            std::fs::write(out, csr).with_context(|| format!("writing {}", out.display()))?;
            Ok(json!({
                "Csr": out.display().to_string(),
                "AttestationDocument": answer["AttestationDocument"],
            }))
        }
        TlsCommand::Install { chain, connection } => {
            let text = std::fs::read_to_string(chain)
                .with_context(|| format!("reading {}", chain.display()))?;
            connection
                .client()?
                .call("Ekms.InstallTlsChain", &json!({ "Chain": text }))
                .await
        }
    }
}
