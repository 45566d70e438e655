//! A SigV4-signing JSON 1.1 client for the operator commands that act as a principal
//! (`ekms import-key`, `ekms principal`, `ekms access-key`): credentials from the usual AWS
//! environment or shared credentials file, one request per connection, bounded in time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use serde_json::Value;

use super::bench::client::{self, Connector, Endpoint, Signer};
use super::bench::credentials;

/// Signs and sends `POST /` requests with `X-Amz-Target: <target>`.
pub struct SignedClient {
    connector: Option<Connector>,
    /// Over https without a CA: one connection whose certificate is proven by attestation
    /// (opened at the first call), and what the proof expects.
    attested: Option<(
        super::custody::Expectation,
        String,
        tokio::sync::Mutex<Option<super::trust::AttestedConnection>>,
    )>,
    endpoint: Endpoint,
    signer: Signer,
    timeout: Duration,
}

impl SignedClient {
    /// A client for `endpoint`, trusting `ca` (else `$AWS_CA_BUNDLE`) for https, signing for
    /// `region` (else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`).
    ///
    /// # Errors
    /// A bad endpoint or CA file, an https endpoint without a CA, or no credentials.
    pub fn new(
        endpoint_url: &str,
        ca: Option<PathBuf>,
        region: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::proving(endpoint_url, ca, None, region, timeout)
    }

    /// As [`SignedClient::new`]; over https without a CA (and no `AWS_CA_BUNDLE`), with
    /// `expect`, its one connection's certificate is proven by attestation first (as `ekms
    /// trust` does), and nothing is sent unless the proof holds.
    ///
    /// # Errors
    /// As [`SignedClient::new`].
    pub fn proving(
        endpoint_url: &str,
        ca: Option<PathBuf>,
        expect: Option<super::custody::Expectation>,
        region: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(endpoint_url, false)?;
        let ca = ca
            .or_else(|| {
                // A pinned CA from the environment only when no proof was asked for.
                expect
                    .is_none()
                    .then(|| std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from))
                    .flatten()
            })
            .filter(|_| endpoint.https);
        let (tls, attested) = match (ca, endpoint.https, expect) {
            (Some(ca), true, _) => (
                Some(client::tls_client_config(
                    client::root_store_from_pem_file(&ca)?,
                )?),
                None,
            ),
            (None, true, Some(expect)) => (
                None,
                Some((
                    expect,
                    endpoint_url.to_owned(),
                    tokio::sync::Mutex::new(None),
                )),
            ),
            (None, true, None) => {
                bail!("an https endpoint needs --ca (or AWS_CA_BUNDLE, or --expect-pcrs)")
            }
            (_, false, _) => (None, None),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|r| !r.is_empty());
        let region = region
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let credentials = credentials::from_environment().context("finding AWS credentials")?;
        let connector = match &attested {
            Some(_) => None,
            None => Some(Connector::new(endpoint.clone(), tls)?),
        };
        Ok(SignedClient {
            connector,
            attested,
            endpoint,
            signer: Signer::new(&credentials, region),
            timeout,
        })
    }

    /// Sends `body` to `target` (e.g. `TrentService.ImportKeyMaterial`, `Ekms.CreatePrincipal`)
    /// and returns the JSON answer.
    ///
    /// # Errors
    /// Transport failures, a timeout, a non-JSON body, or the service's error (`__type`).
    pub async fn call(&self, target: &str, body: &Value) -> anyhow::Result<Value> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        let endpoint = &self.endpoint;
        let request = self.signer.request(endpoint, target, &body)?;
        let (status, body) = tokio::time::timeout(self.timeout, async {
            if let Some((expect, url, connection)) = &self.attested {
                let mut connection = connection.lock().await;
                if connection.is_none() {
                    *connection = Some(
                        super::trust::attested_connection(url, expect)
                            .await
                            .context("proving the endpoint's certificate by attestation")?,
                    );
                }
                let Some(connection) = connection.as_mut() else {
                    bail!("no attested connection");
                };
                return connection.send(request).await.map_err(anyhow::Error::from);
            }
            let Some(connector) = &self.connector else {
                bail!("no connector");
            };
            let mut connection = connector
                .connect()
                .await
                .with_context(|| format!("connecting to {}", endpoint.url()))?;
            connection.send(request).await.map_err(anyhow::Error::from)
        })
        .await
        .map_err(|_elapsed| anyhow!("{target} timed out after {:?}", self.timeout))??;
        let value: Value = serde_json::from_slice(&body).with_context(|| {
            format!("{target} answered HTTP {status} with a body that is not JSON")
        })?;
        if !status.is_success() {
            bail!(
                "{target} failed: {}: {}",
                value["__type"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            );
        }
        Ok(value)
    }
}
