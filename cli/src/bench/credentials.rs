//! AWS credentials for the load generator, found the way the AWS CLI finds them.
//!
//! First `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the
//! profile `AWS_PROFILE` (default `default`) of the shared credentials file
//! `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`). The file is the simple INI
//! that `ekms dev` writes and the AWS CLI reads: `[profile]` sections of `key = value` lines,
//! `#` and `;` comments. Nothing else (config file, SSO, IMDS) is consulted.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// An access key, its secret and an optional session token.
pub struct Credentials {
    /// The access key id (public: it names the principal).
    pub access_key_id: String,
    secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl Credentials {
    /// The secret access key; greppable on purpose.
    pub fn expose_secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// Fixed credentials for unit tests.
    #[cfg(test)]
    pub fn for_tests(access_key_id: &str, secret_access_key: &str) -> Self {
        Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why no credentials were found.
#[derive(Debug, Error)]
pub enum CredentialsError {
    /// Neither the environment nor `HOME` names a credentials file.
    #[error(
        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE"
    )]
    NoSource,
    /// The credentials file could not be read.
    #[error("cannot read the credentials file {path}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no such profile.
    #[error("profile [{profile}] not found in {path}")]
    NoProfile {
        /// The profile asked for.
        profile: String,
        /// The file.
        path: PathBuf,
    },
    /// The profile lacks a required key.
    #[error("profile [{profile}] in {path} has no {key}")]
    MissingKey {
        /// The profile.
        profile: String,
        /// The file.
        path: PathBuf,
        /// The key that is missing.
        key: &'static str,
    },
}

/// Resolves credentials from the process environment and the shared credentials file.
///
/// # Errors
///
/// See [`CredentialsError`].
pub fn from_environment() -> Result<Credentials, CredentialsError> {
    resolve(
        |name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        |path| std::fs::read_to_string(path),
    )
}

/// [`from_environment`] with the environment and the file system injected (for tests).
fn resolve(
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&PathBuf) -> std::io::Result<String>,
) -> Result<Credentials, CredentialsError> {
    if let (Some(access_key_id), Some(secret_access_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    let path = match env("AWS_SHARED_CREDENTIALS_FILE") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env("HOME").ok_or(CredentialsError::NoSource)?)
            .join(".aws")
            .join("credentials"),
    };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let text = read(&path).map_err(|source| CredentialsError::Unreadable {
        path: path.clone(),
        source,
    })?;
    let entries = profile_entries(&text, &profile).ok_or_else(|| CredentialsError::NoProfile {
        profile: profile.clone(),
        path: path.clone(),
    })?;
    let take = |key: &str| {
        entries
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let missing = |key: &'static str| CredentialsError::MissingKey {
        profile: profile.clone(),
        path: path.clone(),
        key,
    };
    Ok(Credentials {
        access_key_id: take("aws_access_key_id").ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: take("aws_secret_access_key")
            .ok_or_else(|| missing("aws_secret_access_key"))?,
        session_token: take("aws_session_token"),
    })
}

/// The `key = value` pairs of section `[profile]` (also accepted as `[profile NAME]`, the
/// config-file spelling), or `None` when no such section exists. Repeated sections merge.
fn profile_entries(text: &str, profile: &str) -> Option<Vec<(String, String)>> {
    let mut found = false;
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            inside = name == profile;
            found |= inside;
            continue;
        }
        if inside {
            if let Some((key, value)) = line.split_once('=') {
                entries.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    found.then_some(entries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = "\
# written by ekms dev
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[ekms]
aws_access_key_id=AKIAEKMS
; a comment inside a section
  aws_secret_access_key =  ekms/secret+with=equals  
aws_session_token = tok

[profile other]
aws_access_key_id = AKIAOTHER
";

    fn run(vars: &[(&str, &str)]) -> Result<Credentials, CredentialsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(
            |name| vars.get(name).cloned(),
            |path| {
                if path == &PathBuf::from("/creds") {
                    Ok(FILE.to_owned())
                } else {
                    Err(std::io::ErrorKind::NotFound.into())
                }
            },
        )
    }

    #[test]
    fn environment_keys_win_over_the_file() {
        let c = run(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/creds"),
            ("AWS_PROFILE", "ekms"),
        ])
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAENV");
        assert_eq!(c.expose_secret_access_key(), "env-secret");
        assert_eq!(c.session_token, None);
    }

    #[test]
    fn named_profile_from_the_file() {
        let c = run(&[
            ("AWS_SHARED_CREDENTIALS_FILE", "/creds"),
            ("AWS_PROFILE", "ekms"),
        ])
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAEKMS");
        // Only the surrounding whitespace is trimmed; '=' inside the value is kept.
        assert_eq!(c.expose_secret_access_key(), "ekms/secret+with=equals");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
    }

    #[test]
    fn default_profile_when_none_is_named() {
        let c = run(&[("AWS_SHARED_CREDENTIALS_FILE", "/creds")]).unwrap();
        assert_eq!(c.access_key_id, "AKIADEFAULT");
    }

    #[test]
    fn home_is_the_fallback_location() {
        let err = run(&[("HOME", "/home/nobody")]).unwrap_err();
        match err {
            CredentialsError::Unreadable { path, .. } => {
                assert_eq!(path, PathBuf::from("/home/nobody/.aws/credentials"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(run(&[]), Err(CredentialsError::NoSource)));
    }

    #[test]
    fn missing_profile_and_missing_key_are_named() {
        let err = run(&[
            ("AWS_SHARED_CREDENTIALS_FILE", "/creds"),
            ("AWS_PROFILE", "nope"),
        ])
        .unwrap_err();
        assert!(
            matches!(err, CredentialsError::NoProfile { ref profile, .. } if profile == "nope")
        );
        let err = run(&[
            ("AWS_SHARED_CREDENTIALS_FILE", "/creds"),
            ("AWS_PROFILE", "other"),
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            CredentialsError::MissingKey {
                key: "aws_secret_access_key",
                ..
            }
        ));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let c = run(&[
            ("AWS_SHARED_CREDENTIALS_FILE", "/creds"),
            ("AWS_PROFILE", "ekms"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIAEKMS"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
