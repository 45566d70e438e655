//! `KeyMetadata`, as CreateKey and DescribeKey return it.

use serde::Serialize;

use crate::config::Config;
use crate::json::Timestamp;
use crate::keys::Key;

/// The AWS `KeyMetadata` structure for a symmetric key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    aws_account_id: String,
    key_id: String,
    arn: String,
    creation_date: Timestamp,
    enabled: bool,
    description: String,
    key_usage: &'static str,
    key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<Timestamp>,
    origin: &'static str,
    key_manager: &'static str,
    customer_master_key_spec: &'static str,
    key_spec: &'static str,
    encryption_algorithms: [&'static str; 1],
    multi_region: bool,
}

impl KeyMetadata {
    /// The metadata of `key`.
    pub fn of(key: &Key, config: &Config) -> Self {
        KeyMetadata {
            aws_account_id: config.account.clone(),
            key_id: key.id.to_string(),
            arn: config.key_arn(&key.id),
            creation_date: Timestamp(key.created),
            enabled: key.state == crate::keys::KeyState::Enabled,
            description: key.description.clone(),
            key_usage: "ENCRYPT_DECRYPT",
            key_state: key.state.as_str(),
            deletion_date: key.deletion_date.map(Timestamp),
            origin: "AWS_KMS",
            key_manager: "CUSTOMER",
            customer_master_key_spec: "SYMMETRIC_DEFAULT",
            key_spec: "SYMMETRIC_DEFAULT",
            encryption_algorithms: ["SYMMETRIC_DEFAULT"],
            multi_region: false,
        }
    }
}
