//! Policy JSON to [`Statement`]s: the AWS IAM JSON policy grammar, closed and bounded.
//!
//! The document is first read into a [`Node`] tree that keeps object members in order and
//! refuses duplicate keys (two `Effect`s must not mean whichever a parser picks); serde_json's
//! recursion limit bounds the depth, [`MAX_POLICY_BYTES`] the size. Then each element is
//! checked against the grammar; every error names its path (`Statement[1].Condition`).

use super::condition::Condition;
use super::node::{invalid, no_policy_variable, shown, string, strings, Kind, Node, Version};
use super::{
    Effect, Matcher, PolicyError, PrincipalId, Principals, Statement, MAX_POLICY_BYTES,
    MAX_STATEMENTS,
};

/// Parses a whole document into its statements.
pub(super) fn document(json: &str, kind: Kind) -> Result<Vec<Statement>, PolicyError> {
    if json.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge { len: json.len() });
    }
    let root: Node = serde_json::from_str(json).map_err(PolicyError::Syntax)?;
    let Node::Object(members) = &root else {
        return Err(invalid(
            "Policy",
            format!("expected an object, found {}", root.type_name()),
        ));
    };
    let mut version = Version::V2008;
    let mut statement = None;
    for (name, value) in members {
        match name.as_str() {
            "Version" => {
                version = match string("Version", value)? {
                    "2012-10-17" => Version::V2012,
                    "2008-10-17" => Version::V2008,
                    other => {
                        return Err(invalid(
                            "Version",
                            format!(
                                "unsupported version {:?} (2012-10-17 or 2008-10-17)",
                                shown(other)
                            ),
                        ))
                    }
                }
            }
            "Id" => {
                string("Id", value)?;
            }
            "Statement" => statement = Some(value),
            other => {
                return Err(PolicyError::UnknownElement {
                    path: "Policy".to_owned(),
                    name: shown(other),
                })
            }
        }
    }
    let Some(statement) = statement else {
        return Err(PolicyError::MissingElement {
            path: "Policy".to_owned(),
            name: "Statement",
        });
    };
    let nodes: Vec<&Node> = match statement {
        Node::Array(items) => items.iter().collect(),
        Node::Object(_) => vec![statement],
        other => {
            return Err(invalid(
                "Statement",
                format!(
                    "expected an object or an array, found {}",
                    other.type_name()
                ),
            ))
        }
    };
    if nodes.is_empty() {
        return Err(invalid("Statement", "empty list"));
    }
    if nodes.len() > MAX_STATEMENTS {
        return Err(PolicyError::TooMany {
            path: "Statement".to_owned(),
            what: "statements",
            limit: MAX_STATEMENTS,
        });
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| statement_at(&format!("Statement[{i}]"), node, kind, version))
        .collect()
}

fn statement_at(
    path: &str,
    node: &Node,
    kind: Kind,
    version: Version,
) -> Result<Statement, PolicyError> {
    let Node::Object(members) = node else {
        return Err(invalid(
            path,
            format!("expected an object, found {}", node.type_name()),
        ));
    };
    let mut effect = None;
    let mut principal = None;
    let mut action = None;
    let mut resource = None;
    let mut conditions = Vec::new();
    for (name, value) in members {
        let at = format!("{path}.{name}");
        match name.as_str() {
            "Sid" => {
                string(&at, value)?;
            }
            "Effect" => {
                effect = Some(match string(&at, value)? {
                    "Allow" => Effect::Allow,
                    "Deny" => Effect::Deny,
                    other => {
                        return Err(invalid(
                            &at,
                            format!("expected Allow or Deny, found {:?}", shown(other)),
                        ))
                    }
                })
            }
            "Principal" if kind == Kind::Identity => {
                return Err(invalid(
                    &at,
                    "an identity policy must not specify a Principal",
                ))
            }
            "Principal" => principal = Some(principals(&at, value)?),
            "NotPrincipal" => {
                return Err(PolicyError::Unsupported {
                    path: at,
                    what: "NotPrincipal",
                })
            }
            "Action" | "NotAction" => {
                if action.is_some() {
                    return Err(invalid(path, "has both Action and NotAction"));
                }
                action = Some(actions(&at, value, name == "NotAction")?);
            }
            "Resource" | "NotResource" => {
                if resource.is_some() {
                    return Err(invalid(path, "has both Resource and NotResource"));
                }
                resource = Some(resources(&at, value, name == "NotResource", version)?);
            }
            "Condition" => conditions = Condition::parse_block(&at, value, version)?,
            other => {
                return Err(PolicyError::UnknownElement {
                    path: path.to_owned(),
                    name: shown(other),
                })
            }
        }
    }
    let missing = |name| PolicyError::MissingElement {
        path: path.to_owned(),
        name,
    };
    let effect = effect.ok_or_else(|| missing("Effect"))?;
    if kind == Kind::Key && principal.is_none() {
        return Err(missing("Principal"));
    }
    Ok(Statement {
        effect,
        principal,
        action: action.ok_or_else(|| missing("Action"))?,
        resource: resource.ok_or_else(|| missing("Resource"))?,
        conditions,
    })
}

fn principals(path: &str, node: &Node) -> Result<Principals, PolicyError> {
    let value = match node {
        Node::String(s) if s == "*" => return Ok(Principals::Everyone),
        Node::Object(members) => match members.as_slice() {
            [(kind, value)] if kind == "AWS" => value,
            [(kind, _)] if matches!(kind.as_str(), "Service" | "Federated" | "CanonicalUser") => {
                return Err(PolicyError::Unsupported {
                    path: format!("{path}.{}", shown(kind)),
                    what: "this principal type",
                })
            }
            [(kind, _)] => {
                return Err(PolicyError::UnknownElement {
                    path: path.to_owned(),
                    name: shown(kind),
                })
            }
            _ => return Err(invalid(path, "expected exactly one principal type, AWS")),
        },
        other => {
            return Err(invalid(
                path,
                format!(
                    "expected \"*\" or {{\"AWS\": ...}}, found {}",
                    other.type_name()
                ),
            ))
        }
    };
    let path = format!("{path}.AWS");
    let values = strings(&path, value)?;
    if values.contains(&"*") {
        return Ok(Principals::Everyone);
    }
    values
        .into_iter()
        .map(|v| principal_id(&path, v))
        .collect::<Result<_, _>>()
        .map(Principals::Listed)
}

/// Whether `id` has the shape of a principal's unique id: `AIDA` and 16 to 32 base32 letters.
pub fn is_unique_id(id: &str) -> bool {
    id.strip_prefix("AIDA").is_some_and(|rest| {
        (16..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `123456789012`, `arn:aws:iam::<account>:root`, `arn:aws:iam::<account>:user/<path/name>` or
/// `arn:aws:iam::<account>:role/<path/name>`. No wildcards (as AWS).
fn principal_id(path: &str, value: &str) -> Result<PrincipalId, PolicyError> {
    if is_account_id(value) {
        return Ok(PrincipalId::AccountRoot(value.to_owned()));
    }
    if is_unique_id(value) {
        return Ok(PrincipalId::UniqueId);
    }
    let bad = || {
        invalid(
            path,
            format!(
                "invalid principal {:?} (expected \"*\", an account id, or an arn:aws:iam:: root, user or role ARN)",
                shown(value)
            ),
        )
    };
    let Some(rest) = value.strip_prefix("arn:aws:iam::") else {
        return Err(bad());
    };
    let Some((account, resource)) = rest.split_once(':') else {
        return Err(bad());
    };
    if !is_account_id(account) {
        return Err(bad());
    }
    if resource == "root" {
        return Ok(PrincipalId::AccountRoot(account.to_owned()));
    }
    let name = resource
        .strip_prefix("user/")
        .or_else(|| resource.strip_prefix("role/"))
        .ok_or_else(bad)?;
    // IAM names and paths: alphanumerics and +=,.@_-/ (so no wildcards).
    let valid = !name.is_empty()
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
    if !valid {
        return Err(bad());
    }
    Ok(PrincipalId::Arn(value.to_owned()))
}

/// `*`, or `service:pattern` (service alphanumeric and `-`, pattern alphanumeric, `*`, `?`).
fn actions(path: &str, node: &Node, negated: bool) -> Result<Matcher, PolicyError> {
    let patterns = strings(path, node)?
        .into_iter()
        .map(|a| {
            let valid = a == "*"
                || a.split_once(':').is_some_and(|(service, action)| {
                    !service.is_empty()
                        && service
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !action.is_empty()
                        && action
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
                });
            if valid {
                Ok(a.to_ascii_lowercase())
            } else {
                Err(invalid(
                    path,
                    format!("invalid action {:?} (expected \"kms:<Action>\")", shown(a)),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Matcher { negated, patterns })
}

/// `*` or an ARN pattern.
fn resources(
    path: &str,
    node: &Node,
    negated: bool,
    version: Version,
) -> Result<Matcher, PolicyError> {
    let patterns = strings(path, node)?
        .into_iter()
        .map(|r| {
            no_policy_variable(path, version, r)?;
            if r == "*" || r.starts_with("arn:") {
                Ok(r.to_owned())
            } else {
                Err(invalid(
                    path,
                    format!("invalid resource {:?} (expected \"*\" or an ARN)", shown(r)),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Matcher { negated, patterns })
}
