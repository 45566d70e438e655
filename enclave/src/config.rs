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
    /// Limits per principal and per key, as AWS KMS's quotas.
    pub quotas: Quotas,
    /// One member of several sharing the store (`--member`): this enclave keeps an audit chain
    /// of its own (a member id in every line) and commits audit-only changes unconditionally,
    /// so that members' reads never conflict; only commits that change records are conditioned
    /// on the store's last commit. Off: one enclave, its audit head sealed in the store's root.
    pub member: bool,
}

/// Limits per principal and per key, with AWS KMS's defaults (its quotas are per account and
/// Region; a principal here is held to the same numbers). Settable with `--quota NAME=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Keys one principal may have created that are not destroyed (AWS: 100,000 KMS keys).
    pub keys_per_principal: usize,
    /// Aliases one principal may have created (AWS: 50,000 aliases).
    pub aliases_per_principal: usize,
    /// Grants on one key (AWS: 50,000 grants per KMS key).
    pub grants_per_key: usize,
    /// Grants for one grantee on one key (AWS: 500 grants for a given principal per KMS key).
    pub grants_per_grantee: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            keys_per_principal: 100_000,
            aliases_per_principal: 50_000,
            grants_per_key: 50_000,
            grants_per_grantee: 500,
        }
    }
}

impl Quotas {
    /// The names `--quota NAME=N` takes.
    pub const NAMES: [&'static str; 4] = [
        "keys-per-principal",
        "aliases-per-principal",
        "grants-per-key",
        "grants-per-grantee",
    ];

    /// Applies one `NAME=N` setting.
    ///
    /// # Errors
    /// A message naming what is wrong: an unknown name, or a number that is not 1 or more.
    pub fn set(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("--quota {setting}: expected NAME=N"))?;
        let value: usize =
            value.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
                format!("--quota {setting}: N must be a whole number of 1 or more")
            })?;
        let slot = match name {
            "keys-per-principal" => &mut self.keys_per_principal,
            "aliases-per-principal" => &mut self.aliases_per_principal,
            "grants-per-key" => &mut self.grants_per_key,
            "grants-per-grantee" => &mut self.grants_per_grantee,
            _ => {
                return Err(format!(
                    "--quota {setting}: unknown quota {name:?} (known: {})",
                    Self::NAMES.join(", ")
                ))
            }
        };
        *slot = value;
        Ok(())
    }
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
            quotas: Quotas::default(),
            member: false,
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
