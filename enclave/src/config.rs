//! Deployment settings the enclave is started with: where it says it lives, and its bounds.

/// Region and account that make up ARNs, and the bounds every collection respects.
#[derive(Debug, Clone)]
pub struct Config {
    /// AWS-style region name, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit account id.
    pub account: String,
    /// Most keys the enclave holds (any state).
    pub max_keys: usize,
    /// Most aliases the enclave holds.
    pub max_aliases: usize,
    /// Roots a `Recipient` attestation document may chain to: the AWS Nitro root; `main`
    /// adds the INSECURE mock root only in mock mode.
    pub recipient_anchors: Vec<ekms_shared::attestation::TrustAnchor>,
    /// Names and addresses the TLS certificates are for (the first one names an operator
    /// certificate request's chain check).
    pub tls_names: Vec<String>,
    /// The memory the keys and aliases may take, as [`crate::keys::Key::footprint`] counts it:
    /// a share of the enclave's memory. Operations that grow the state refuse with
    /// `LimitExceededException` before it would be crossed.
    pub memory_budget: usize,
}

/// A fixed 12-digit account id used unless configured otherwise.
pub const DEFAULT_ACCOUNT: &str = "111122223333";
/// The region used unless configured otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

impl Default for Config {
    fn default() -> Self {
        Config {
            region: DEFAULT_REGION.to_owned(),
            account: DEFAULT_ACCOUNT.to_owned(),
            max_keys: 2_000_000,
            max_aliases: 2_000_000,
            tls_names: vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ],
            memory_budget: usize::MAX,
            recipient_anchors: vec![ekms_shared::attestation::TrustAnchor::aws_nitro_root()],
        }
    }
}

impl Config {
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub fn key_arn(&self, id: &uuid::Uuid) -> String {
        format!("arn:aws:kms:{}:{}:key/{}", self.region, self.account, id)
    }
    /// `arn:aws:kms:<region>:<account>:<alias name>` (the name includes `alias/`).
    pub fn alias_arn(&self, alias_name: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:{}",
            self.region, self.account, alias_name
        )
    }
    /// `arn:aws:iam::<account>:user/<name>`.
    pub fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{}", self.account, name)
    }
    /// `arn:aws:kms:<region>:<account>:` — the prefix every KMS ARN of this deployment has.
    pub fn kms_arn_prefix(&self) -> String {
        format!("arn:aws:kms:{}:{}:", self.region, self.account)
    }
}
