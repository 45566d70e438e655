//! `ekms custodian keygen --out DIR`: make a custodian's P-384 key pair.
//!
//! Writes `DIR/custodian.key` (PKCS #8 PEM, mode 0600) and `DIR/custodian.pub` (SPKI PEM),
//! never overwriting either, and prints the public key's fingerprint (SHA-256 of the SPKI
//! DER), the name `ekms init` records in each `share-N.json`. The custodian keeps the secret
//! key offline; the operator gets only `custodian.pub`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use ekms_shared::custody;

/// `ekms custodian` subcommands.
#[derive(Debug, Subcommand)]
pub enum CustodianCommand {
    /// Generate a custodian key pair: DIR/custodian.key (mode 0600) and DIR/custodian.pub.
    Keygen {
        /// Directory to write the key pair into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Run an `ekms custodian` subcommand.
///
/// # Errors
///
/// If either key file already exists, or writing fails.
pub fn run(cmd: CustodianCommand) -> anyhow::Result<()> {
    match cmd {
        CustodianCommand::Keygen { out } => {
            let generated = custody::keygen(&out)
                .with_context(|| format!("generating a custodian key in {}", out.display()))?;
            println!(
                "secret key:  {} (mode 0600; keep it offline)",
                generated.secret_key_path.display()
            );
            println!("public key:  {}", generated.public_key_path.display());
            println!("fingerprint: {}", generated.fingerprint);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn keygen_writes_a_matching_pair_with_private_mode() {
        let dir = std::env::temp_dir().join(format!(
            "ekms-cli-custodian-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let out = dir.join("keys");
        run(CustodianCommand::Keygen { out: out.clone() }).expect("keygen");

        let key_path = out.join("custodian.key");
        let pub_path = out.join("custodian.pub");
        let key_mode = std::fs::metadata(&key_path)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let pub_mode = std::fs::metadata(&pub_path)
            .expect("pub")
            .permissions()
            .mode();
        assert_eq!(
            pub_mode & 0o022,
            0,
            "custodian.pub must not be group/other-writable"
        );

        let secret = custody::load_secret(&key_path).expect("load secret");
        let public = custody::load_public(&pub_path).expect("load public");
        assert_eq!(secret.public_key(), public);

        // A second run refuses and leaves the pair alone.
        let again = run(CustodianCommand::Keygen { out: out.clone() });
        assert!(again.is_err());
        assert_eq!(
            custody::load_secret(&key_path).expect("load").public_key(),
            public
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
