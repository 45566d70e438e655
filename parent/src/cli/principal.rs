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

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use serde_json::{json, Value};

use super::bench::client::{self, Connector, Endpoint, Signer};
use super::bench::credentials;

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

/// A SigV4-signed `Ekms.*` caller.
struct Client {
    connector: Connector,
    signer: Signer,
}

impl Client {
    fn new(connection: &Connection) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(&connection.endpoint, false)?;
        let ca = connection
            .ca
            .clone()
            .or_else(|| std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from))
            .filter(|_| endpoint.https);
        let tls = match (ca, endpoint.https) {
            (Some(ca), true) => Some(client::tls_client_config(
                client::root_store_from_pem_file(&ca)?,
            )?),
            (None, true) => bail!("an https endpoint needs --ca (or AWS_CA_BUNDLE)"),
            (_, false) => None,
        };
        let region = connection
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .unwrap_or_else(|| "us-east-1".to_owned());
        let credentials = credentials::from_environment().context("finding AWS credentials")?;
        Ok(Client {
            connector: Connector::new(endpoint, tls)?,
            signer: Signer::new(&credentials, region),
        })
    }

    async fn call(&self, operation: &str, body: &Value) -> anyhow::Result<Value> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        let endpoint = self.connector.endpoint();
        let request = self
            .signer
            .request(endpoint, &format!("Ekms.{operation}"), &body)?;
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut connection = self
                .connector
                .connect()
                .await
                .with_context(|| format!("connecting to {}", endpoint.url()))?;
            connection.send(request).await.map_err(anyhow::Error::from)
        })
        .await
        .map_err(|_elapsed| anyhow!("Ekms.{operation} timed out after {REQUEST_TIMEOUT:?}"))??;
        let value: Value = serde_json::from_slice(&body).with_context(|| {
            format!("Ekms.{operation} answered HTTP {status} with a body that is not JSON")
        })?;
        if !status.is_success() {
            bail!(
                "Ekms.{operation} failed: {}: {}",
                value["__type"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            );
        }
        Ok(value)
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
            let out = Client::new(connection)?
                .call("CreatePrincipal", &body)
                .await?;
            Ok(json!({
                "Arn": out["Arn"],
                "AccessKeyId": out["AccessKeyId"],
                "SecretAccessKey": out["SecretAccessKey"],
            }))
        }
        PrincipalCommand::List { connection } => {
            let client = Client::new(connection)?;
            let mut all = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let mut body = json!({});
                if let Some(m) = &marker {
                    body["Marker"] = Value::String(m.clone());
                }
                let page = client.call("ListPrincipals", &body).await?;
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
            Client::new(connection)?
                .call("DeletePrincipal", &json!({ "UserName": name }))
                .await
        }
        PrincipalCommand::PutPolicy {
            name,
            policy,
            connection,
        } => {
            let body = json!({ "UserName": name, "Policy": read_policy(policy)? });
            Client::new(connection)?
                .call("PutPrincipalPolicy", &body)
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
            Client::new(connection)?
                .call("CreateAccessKey", &json!({ "UserName": name }))
                .await
        }
        AccessKeyCommand::Delete {
            name,
            access_key_id,
            connection,
        } => {
            Client::new(connection)?
                .call(
                    "DeleteAccessKey",
                    &json!({ "UserName": name, "AccessKeyId": access_key_id }),
                )
                .await
        }
    }
}
