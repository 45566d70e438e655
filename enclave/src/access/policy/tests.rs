//! Policy evaluation as a table of policies x requests, malformed documents with their exact
//! messages, the lockout check, and grants.

use std::collections::BTreeMap;

use super::grants::{
    child_constraints_allowed, grant_allows, may_retire, validate_constraints, validate_operations,
    Grant, GrantConstraints, GrantError, GrantOperation,
};
use super::{
    authorize, lockout_check, parse, parse_identity, Decision, IdentityPolicy, Policy, PolicyError,
    RequestContext, ALLOW_ALL_IDENTITY_POLICY, LOCKOUT_MESSAGE,
};

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "444455556666";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const CAROL: &str = "arn:aws:iam::444455556666:user/carol";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const KEY_ELSEWHERE: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// 2024-05-01T12:00:00Z.
const NOW: i64 = 1_714_564_800_000;
const DAY: i64 = 86_400_000;

use Decision::{Allow, ExplicitDeny, ImplicitDeny};

/// One request, owning what its [`RequestContext`] borrows.
#[derive(Clone)]
struct Req {
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    now: i64,
    context: Option<BTreeMap<String, String>>,
    algorithm: Option<&'static str>,
    grant_operations: Option<Vec<String>>,
    grant_for_aws: Option<bool>,
    pcrs: Option<BTreeMap<u8, Vec<u8>>>,
    image: Option<Vec<u8>>,
}

fn req(principal: &'static str, action: &'static str) -> Req {
    Req {
        principal,
        action,
        resource: KEY,
        now: NOW,
        context: None,
        algorithm: None,
        grant_operations: None,
        grant_for_aws: None,
        pcrs: None,
        image: None,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Req {
    fn ec(mut self, pairs: &[(&str, &str)]) -> Req {
        self.context = Some(map(pairs));
        self
    }
    fn at(mut self, now: i64) -> Req {
        self.now = now;
        self
    }
    fn on(mut self, resource: &'static str) -> Req {
        self.resource = resource;
        self
    }
    fn algorithm(mut self, algorithm: &'static str) -> Req {
        self.algorithm = Some(algorithm);
        self
    }
    fn grant_ops(mut self, ops: &[&str]) -> Req {
        self.grant_operations = Some(ops.iter().map(|o| o.to_string()).collect());
        self
    }
    fn for_aws(mut self, b: bool) -> Req {
        self.grant_for_aws = Some(b);
        self
    }
    fn pcr(mut self, n: u8, value: Vec<u8>) -> Req {
        self.pcrs.get_or_insert_with(BTreeMap::new).insert(n, value);
        self
    }
    fn image(mut self, value: Vec<u8>) -> Req {
        self.image = Some(value);
        self
    }
    fn ctx(&self) -> RequestContext<'_> {
        let account = self
            .principal
            .split(':')
            .nth(4)
            .expect("test principals are IAM ARNs");
        RequestContext {
            principal_arn: self.principal,
            account,
            action: self.action,
            resource: self.resource,
            now_millis: self.now,
            encryption_context: self.context.as_ref(),
            encryption_algorithm: self.algorithm,
            grant_operations: self.grant_operations.as_deref(),
            grant_is_for_aws_resource: self.grant_for_aws,
            recipient_pcrs: self.pcrs.as_ref(),
            recipient_image_sha384: self.image.as_deref(),
        }
    }
}

fn key_policy(json: &str) -> Policy {
    match parse(json, ACCOUNT) {
        Ok(p) => p,
        Err(e) => panic!("test policy must parse: {e}\n{json}"),
    }
}

fn identity(json: &str) -> IdentityPolicy {
    match parse_identity(json) {
        Ok(p) => p,
        Err(e) => panic!("test identity policy must parse: {e}\n{json}"),
    }
}

/// A key policy with one statement, besides an admin statement for alice.
fn with_statement(statement: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"Admin","Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:*","Resource":"*"}},
            {statement}]}}"#
    )
}

/// A statement allowing bob `actions` under `condition`.
fn bob_allowed(actions: &str, condition: &str) -> String {
    with_statement(&format!(
        r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":{actions},"Resource":"*","Condition":{condition}}}"#
    ))
}

struct Case {
    name: &'static str,
    key_policy: String,
    identity: Option<String>,
    requests: Vec<(Req, Decision)>,
}

fn cases() -> Vec<Case> {
    let payroll = bob_allowed(
        r#"["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey*"]"#,
        r#"{"StringEquals":{"kms:EncryptionContext:Department":"Payroll"}}"#,
    );
    vec![
        Case {
            name: "default key policy: root delegation needs an identity allow",
            key_policy: Policy::default_key_policy(ACCOUNT),
            identity: Some(ALLOW_ALL_IDENTITY_POLICY.to_owned()),
            requests: vec![
                (req(ALICE, "kms:Encrypt"), Allow),
                (req(ALICE, "kms:PutKeyPolicy"), Allow),
            ],
        },
        Case {
            name: "default key policy without an identity policy denies",
            key_policy: Policy::default_key_policy(ACCOUNT),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
                (req(ALICE, "kms:DescribeKey"), ImplicitDeny),
            ],
        },
        Case {
            name: "default key policy: the identity policy decides which actions",
            key_policy: Policy::default_key_policy(ACCOUNT),
            identity: Some(
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Decrypt","kms:Describe*"],"Resource":"arn:aws:kms:us-east-1:111122223333:key/*"}}"#
                    .to_owned(),
            ),
            requests: vec![
                (req(BOB, "kms:Decrypt"), Allow),
                (req(BOB, "kms:DescribeKey"), Allow),
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
                (req(BOB, "kms:Decrypt").on(KEY_ELSEWHERE), ImplicitDeny),
            ],
        },
        Case {
            name: "an identity-policy deny wins over a key-policy allow",
            key_policy: with_statement(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            identity: Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}]}"#
                    .to_owned(),
            ),
            requests: vec![
                (req(BOB, "kms:Encrypt"), ExplicitDeny),
                (req(ALICE, "kms:Encrypt"), ExplicitDeny),
                (req(ALICE, "kms:Decrypt"), Allow),
            ],
        },
        Case {
            name: "a key policy naming the principal allows it directly",
            key_policy: with_statement(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/ops/bob"},"Action":"kms:DescribeKey","Resource":"*"}"#,
            ),
            identity: None,
            requests: vec![
                (req(ALICE, "kms:ScheduleKeyDeletion"), Allow),
                (req("arn:aws:iam::111122223333:user/ops/bob", "kms:DescribeKey"), Allow),
                (req(BOB, "kms:DescribeKey"), ImplicitDeny),
            ],
        },
        Case {
            name: "an encryption-context condition allows only that context",
            key_policy: payroll.clone(),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("Department", "Payroll")]), Allow),
                (
                    req(BOB, "kms:Decrypt").ec(&[("Department", "Payroll"), ("Extra", "x")]),
                    Allow,
                ),
                (req(BOB, "kms:Encrypt").ec(&[("Department", "HR")]), ImplicitDeny),
                (req(BOB, "kms:Encrypt").ec(&[("Department", "payroll")]), ImplicitDeny),
                // The <key> of kms:EncryptionContext:<key> is case-sensitive.
                (req(BOB, "kms:Encrypt").ec(&[("department", "Payroll")]), ImplicitDeny),
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
                (req(BOB, "kms:Encrypt").ec(&[]), ImplicitDeny),
                // Action wildcards and case-insensitive action names.
                (
                    req(BOB, "kms:GenerateDataKeyWithoutPlaintext").ec(&[("Department", "Payroll")]),
                    Allow,
                ),
                (req(BOB, "KMS:ENCRYPT").ec(&[("Department", "Payroll")]), Allow),
                (req(BOB, "kms:ReEncryptFrom").ec(&[("Department", "Payroll")]), ImplicitDeny),
                // Not for other principals in the account, even with an identity allow.
                (
                    req("arn:aws:iam::111122223333:user/eve", "kms:Encrypt")
                        .ec(&[("Department", "Payroll")]),
                    ImplicitDeny,
                ),
            ],
        },
        Case {
            name: "condition key names are case-insensitive, the context key is not",
            key_policy: bob_allowed(
                r#""kms:Encrypt""#,
                r#"{"StringEquals":{"KMS:encryptioncontext:Department":"Payroll"}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("Department", "Payroll")]), Allow),
                (req(BOB, "kms:Encrypt").ec(&[("department", "Payroll")]), ImplicitDeny),
            ],
        },
        Case {
            name: "explicit deny wins over a direct allow",
            key_policy: with_statement(
                r#"{"Sid":"NoDeletion","Effect":"Deny","Principal":"*","Action":["kms:ScheduleKeyDeletion","kms:Disable*"],"Resource":"*"}"#,
            ),
            identity: Some(ALLOW_ALL_IDENTITY_POLICY.to_owned()),
            requests: vec![
                (req(ALICE, "kms:ScheduleKeyDeletion"), ExplicitDeny),
                (req(ALICE, "kms:DisableKeyRotation"), ExplicitDeny),
                (req(ALICE, "kms:Encrypt"), Allow),
            ],
        },
        Case {
            name: "a deny naming the account root applies to every principal of the account",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:Encrypt","Resource":"*"}},
                   {{"Effect":"Deny","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"kms:Encrypt","Resource":"*",
                     "Condition":{{"StringNotEquals":{{"kms:EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}}}}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").algorithm("SYMMETRIC_DEFAULT"), Allow),
                (req(BOB, "kms:Encrypt").algorithm("RSAES_OAEP_SHA_256"), ExplicitDeny),
                // A negated operator on a missing key holds (IAM).
                (req(BOB, "kms:Encrypt"), ExplicitDeny),
                (req(ALICE, "kms:Encrypt"), ExplicitDeny),
            ],
        },
        Case {
            name: "NotAction",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":["{BOB}"]}},"NotAction":["kms:PutKeyPolicy","kms:ScheduleKeyDeletion","kms:Disable*"],"Resource":"*"}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt"), Allow),
                (req(BOB, "kms:CreateGrant"), Allow),
                (req(BOB, "kms:PutKeyPolicy"), ImplicitDeny),
                (req(BOB, "kms:DisableKey"), ImplicitDeny),
            ],
        },
        Case {
            name: "Principal * narrowed by aws:PrincipalArn, NotResource",
            key_policy: with_statement(
                r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Encrypt","NotResource":"arn:aws:kms:eu-west-1:*",
                    "Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/app-*"},
                                 "StringEquals":{"kms:CallerAccount":"111122223333"}}}"#,
            ),
            identity: None,
            requests: vec![
                (req("arn:aws:iam::111122223333:user/app-1", "kms:Encrypt"), Allow),
                (
                    req("arn:aws:iam::111122223333:user/app-1", "kms:Encrypt").on(KEY_ELSEWHERE),
                    ImplicitDeny,
                ),
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
            ],
        },
        Case {
            name: "resource patterns",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:Encrypt","Resource":"arn:aws:kms:us-east-1:111122223333:key/*"}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt"), Allow),
                (req(BOB, "kms:Encrypt").on(KEY_ELSEWHERE), ImplicitDeny),
            ],
        },
        Case {
            name: "cross-account: the other account's identity policy must allow too",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":["arn:aws:iam::{OTHER_ACCOUNT}:root"]}},"Action":"kms:Decrypt","Resource":"*"}}"#
            )),
            identity: Some(ALLOW_ALL_IDENTITY_POLICY.to_owned()),
            requests: vec![
                (req(CAROL, "kms:Decrypt"), Allow),
                (req(CAROL, "kms:Encrypt"), ImplicitDeny),
            ],
        },
        Case {
            name: "cross-account without an identity policy is denied even when named",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":["{CAROL}"]}},"Action":"kms:Decrypt","Resource":"*"}}"#
            )),
            identity: None,
            requests: vec![(req(CAROL, "kms:Decrypt"), ImplicitDeny)],
        },
        Case {
            name: "the key's own account root does not let another account in",
            key_policy: Policy::default_key_policy(ACCOUNT),
            identity: Some(ALLOW_ALL_IDENTITY_POLICY.to_owned()),
            requests: vec![(req(CAROL, "kms:Decrypt"), ImplicitDeny)],
        },
        Case {
            name: "IfExists: a missing key passes, a present one must match",
            key_policy: bob_allowed(
                r#""kms:Encrypt""#,
                r#"{"StringEqualsIfExists":{"kms:EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt"), Allow),
                (req(BOB, "kms:Encrypt").algorithm("SYMMETRIC_DEFAULT"), Allow),
                (req(BOB, "kms:Encrypt").algorithm("RSAES_OAEP_SHA_1"), ImplicitDeny),
            ],
        },
        Case {
            name: "Null: false requires the key, true its absence",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:Encrypt","Resource":"*","Condition":{{"Null":{{"kms:EncryptionContextKeys":"false"}}}}}},
                   {{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{{"Null":{{"kms:EncryptionContext:tenant":true}}}}}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("tenant", "a")]), Allow),
                (req(BOB, "kms:Encrypt").ec(&[("other", "a")]), ExplicitDeny),
                (req(BOB, "kms:Encrypt").ec(&[]), ExplicitDeny),
                (req(BOB, "kms:Encrypt"), ExplicitDeny),
            ],
        },
        Case {
            name: "ForAllValues on kms:EncryptionContextKeys (true on an empty set)",
            key_policy: bob_allowed(
                r#""kms:Encrypt""#,
                r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("Department", "x")]), Allow),
                (req(BOB, "kms:Encrypt").ec(&[("Department", "x"), ("Project", "y")]), Allow),
                (
                    req(BOB, "kms:Encrypt").ec(&[("Department", "x"), ("Other", "y")]),
                    ImplicitDeny,
                ),
                (req(BOB, "kms:Encrypt"), Allow),
                (req(BOB, "kms:Encrypt").ec(&[]), Allow),
            ],
        },
        Case {
            name: "ForAllValues with Null false requires a non-empty context",
            key_policy: bob_allowed(
                r#""kms:Encrypt""#,
                r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]},
                    "Null":{"kms:EncryptionContextKeys":"false"}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("Project", "y")]), Allow),
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
            ],
        },
        Case {
            name: "ForAnyValue on kms:EncryptionContextKeys, and its negation",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:Encrypt","Resource":"*","Condition":{{"ForAnyValue:StringLike":{{"kms:EncryptionContextKeys":"proj*"}}}}}},
                   {{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{{"ForAnyValue:StringNotEquals":{{"kms:EncryptionContextKeys":["project","owner"]}}}}}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Encrypt").ec(&[("project", "y")]), Allow),
                (req(BOB, "kms:Encrypt").ec(&[("project", "y"), ("owner", "z")]), Allow),
                (req(BOB, "kms:Encrypt").ec(&[("owner", "z")]), ImplicitDeny),
                (req(BOB, "kms:Encrypt").ec(&[("project", "y"), ("zz", "z")]), ExplicitDeny),
                (req(BOB, "kms:Encrypt"), ImplicitDeny),
            ],
        },
        Case {
            name: "date conditions on aws:CurrentTime, time injected",
            key_policy: bob_allowed(
                r#""kms:Decrypt""#,
                r#"{"DateLessThan":{"aws:CurrentTime":"2024-06-01T00:00:00Z"},
                    "DateGreaterThan":{"aws:CurrentTime":"1714521600"}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Decrypt"), Allow),
                (req(BOB, "kms:Decrypt").at(NOW + 31 * DAY), ImplicitDeny),
                (req(BOB, "kms:Decrypt").at(NOW - DAY), ImplicitDeny),
                // 2024-05-01T00:00:00Z exactly is not after itself.
                (req(BOB, "kms:Decrypt").at(1_714_521_600_000), ImplicitDeny),
                (req(BOB, "kms:Decrypt").at(1_714_521_600_001), Allow),
            ],
        },
        Case {
            name: "numeric conditions compare numbers, not strings",
            key_policy: bob_allowed(
                r#""kms:Decrypt""#,
                r#"{"NumericLessThanEquals":{"kms:EncryptionContext:level":3}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Decrypt").ec(&[("level", "3")]), Allow),
                (req(BOB, "kms:Decrypt").ec(&[("level", "2.5")]), Allow),
                (req(BOB, "kms:Decrypt").ec(&[("level", "10")]), ImplicitDeny),
                (req(BOB, "kms:Decrypt").ec(&[("level", "abc")]), ImplicitDeny),
                (req(BOB, "kms:Decrypt"), ImplicitDeny),
            ],
        },
        Case {
            name: "StringEqualsIgnoreCase and StringNotEqualsIgnoreCase",
            key_policy: with_statement(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:Decrypt","Resource":"*","Condition":{{"StringEqualsIgnoreCase":{{"kms:EncryptionContext:env":["Prod","Stage"]}}}}}},
                   {{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{{"StringNotEqualsIgnoreCase":{{"kms:EncryptionContext:region":"EU"}}}}}}"#
            )),
            identity: None,
            requests: vec![
                (req(BOB, "kms:Decrypt").ec(&[("env", "PROD"), ("region", "eu")]), Allow),
                (req(BOB, "kms:Decrypt").ec(&[("env", "stage"), ("region", "EU")]), Allow),
                (req(BOB, "kms:Decrypt").ec(&[("env", "dev"), ("region", "EU")]), ImplicitDeny),
                (req(BOB, "kms:Decrypt").ec(&[("env", "prod"), ("region", "us")]), ExplicitDeny),
                (req(BOB, "kms:Decrypt").ec(&[("env", "prod")]), ExplicitDeny),
            ],
        },
        Case {
            name: "Bool on kms:GrantIsForAWSResource",
            key_policy: bob_allowed(
                r#""kms:CreateGrant""#,
                r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:CreateGrant").for_aws(true), Allow),
                (req(BOB, "kms:CreateGrant").for_aws(false), ImplicitDeny),
                (req(BOB, "kms:CreateGrant"), ImplicitDeny),
            ],
        },
        Case {
            name: "ForAllValues on kms:GrantOperations",
            key_policy: bob_allowed(
                r#""kms:CreateGrant""#,
                r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]}}"#,
            ),
            identity: None,
            requests: vec![
                (req(BOB, "kms:CreateGrant").grant_ops(&["Encrypt"]), Allow),
                (req(BOB, "kms:CreateGrant").grant_ops(&["Decrypt", "Encrypt"]), Allow),
                (
                    req(BOB, "kms:CreateGrant").grant_ops(&["Encrypt", "CreateGrant"]),
                    ImplicitDeny,
                ),
            ],
        },
        Case {
            name: "recipient attestation: PCRs and image digest compare as lowercase hex",
            key_policy: bob_allowed(
                r#""kms:Decrypt""#,
                &format!(
                    r#"{{"StringEquals":{{"kms:RecipientAttestation:PCR0":"{}","kms:recipientattestation:imagesha384":"{}"}}}}"#,
                    "AB".repeat(48),
                    "0f".repeat(48)
                ),
            ),
            identity: None,
            requests: vec![
                (
                    req(BOB, "kms:Decrypt").pcr(0, vec![0xab; 48]).image(vec![0x0f; 48]),
                    Allow,
                ),
                (
                    req(BOB, "kms:Decrypt").pcr(0, vec![0xac; 48]).image(vec![0x0f; 48]),
                    ImplicitDeny,
                ),
                (
                    req(BOB, "kms:Decrypt").pcr(1, vec![0xab; 48]).image(vec![0x0f; 48]),
                    ImplicitDeny,
                ),
                (req(BOB, "kms:Decrypt").pcr(0, vec![0xab; 48]), ImplicitDeny),
            ],
        },
    ]
}

#[test]
fn policies_by_requests() {
    for case in cases() {
        let policy = key_policy(&case.key_policy);
        let identity = case.identity.as_deref().map(identity);
        for (i, (request, want)) in case.requests.iter().enumerate() {
            let got = authorize(&policy, identity.as_ref(), &request.ctx());
            assert_eq!(
                got, *want,
                "{}: request {i} ({} {} {:?})",
                case.name, request.principal, request.action, request.context
            );
        }
    }
}

#[test]
fn evaluation_reports_root_delegation_separately() {
    let policy = key_policy(&Policy::default_key_policy(ACCOUNT));
    let evaluation = policy.evaluate(&req(BOB, "kms:Encrypt").ctx());
    assert_eq!(evaluation.decision, ImplicitDeny);
    assert!(evaluation.root_delegation);

    let policy = key_policy(&with_statement(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#,
    ));
    let evaluation = policy.evaluate(&req(ALICE, "kms:Encrypt").ctx());
    assert_eq!(evaluation.decision, Allow);
    assert!(evaluation.root_delegation);
    // The account root user itself is named directly.
    let root = req("arn:aws:iam::111122223333:root", "kms:Encrypt");
    assert_eq!(policy.evaluate(&root.ctx()).decision, Allow);
}

#[test]
fn default_key_policy_is_aws_shape() {
    let json = Policy::default_key_policy(ACCOUNT);
    let value: serde_json::Value = serde_json::from_str(&json).expect("default policy is JSON");
    assert_eq!(value["Version"], "2012-10-17");
    let statement = &value["Statement"][0];
    assert_eq!(statement["Sid"], "Enable IAM User Permissions");
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(
        statement["Principal"]["AWS"],
        "arn:aws:iam::111122223333:root"
    );
    assert_eq!(statement["Action"], "kms:*");
    assert_eq!(statement["Resource"], "*");
    // A hostile account string stays inside its JSON string (and is then refused as a principal).
    let hostile = Policy::default_key_policy(r#"1","Action":"x"#);
    assert!(serde_json::from_str::<serde_json::Value>(&hostile).is_ok());
    assert!(parse(&hostile, ACCOUNT).is_err());
}

fn malformed(json: &str) -> String {
    match parse(json, ACCOUNT) {
        Ok(_) => panic!("must be refused: {json}"),
        Err(e) => e.to_string(),
    }
}

const OK_STATEMENT: &str =
    r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#;

fn one(statement: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#)
}

fn second(statement: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{OK_STATEMENT},{statement}]}}"#)
}

#[test]
fn malformed_documents_name_the_problem() {
    let cond = |c: &str| {
        second(&format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{c}}}"#
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        (
            cond(r#"{"StringEqualz":{"kms:CallerAccount":"1"}}"#),
            "Statement[1].Condition: unknown operator StringEqualz",
        ),
        (
            cond(r#"{"NullIfExists":{"kms:CallerAccount":"true"}}"#),
            "Statement[1].Condition: unknown operator NullIfExists",
        ),
        (
            cond(r#"{"StringEquals":{"kms:EncryptionContextKeyz":"a"}}"#),
            "Statement[1].Condition.StringEquals: unknown condition key kms:EncryptionContextKeyz",
        ),
        (
            cond(r#"{"StringEquals":{"kms:RecipientAttestation:PCR32":"a"}}"#),
            "Statement[1].Condition.StringEquals: unknown condition key kms:RecipientAttestation:PCR32",
        ),
        (
            cond(r#"{"StringEquals":{"kms:RecipientAttestation:PCR01":"a"}}"#),
            "Statement[1].Condition.StringEquals: unknown condition key kms:RecipientAttestation:PCR01",
        ),
        (
            cond(r#"{"StringEquals":{"kms:EncryptionContext:":"a"}}"#),
            "Statement[1].Condition.StringEquals: unknown condition key kms:EncryptionContext:",
        ),
        (
            cond(r#"{"StringEquals":{"kms:EncryptionContextKeys":"a"}}"#),
            "Statement[1].Condition.StringEquals.kms:EncryptionContextKeys: a multi-valued key needs ForAnyValue: or ForAllValues:",
        ),
        (
            cond(r#"{"NumericLessThan":{"kms:EncryptionContext:n":"abc"}}"#),
            "Statement[1].Condition.NumericLessThan.kms:EncryptionContext:n: \"abc\" is not a number",
        ),
        (
            cond(r#"{"DateLessThan":{"aws:CurrentTime":"yesterday"}}"#),
            "Statement[1].Condition.DateLessThan.aws:CurrentTime: \"yesterday\" is not a date (ISO 8601 or epoch seconds)",
        ),
        (
            cond(r#"{"Bool":{"kms:GrantIsForAWSResource":"yes"}}"#),
            "Statement[1].Condition.Bool.kms:GrantIsForAWSResource: \"yes\" is not true or false",
        ),
        (
            cond(r#"{"StringEquals":{"kms:CallerAccount":[]}}"#),
            "Statement[1].Condition.StringEquals.kms:CallerAccount: empty list",
        ),
        (
            cond(r#"{"StringEquals":{"kms:CallerAccount":{"a":"b"}}}"#),
            "Statement[1].Condition.StringEquals.kms:CallerAccount: expected a string, number or boolean, found an object",
        ),
        (
            cond(r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/${aws:username}"}}"#),
            "Statement[1].Condition.StringLike.aws:PrincipalArn: a policy variable (${...}) is not supported",
        ),
        (
            cond(&format!(
                r#"{{"StringEquals":{{"kms:CallerAccount":[{}]}}}}"#,
                vec!["\"1\""; 101].join(",")
            )),
            "Statement[1].Condition.StringEquals.kms:CallerAccount: more than 100 values",
        ),
        (
            second(r#"{"Effect":"Allow","NotPrincipal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#),
            "Statement[1].NotPrincipal: NotPrincipal is not supported",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:*","Resource":"*"}"#),
            "Statement[1].Principal.Service: this principal type is not supported",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"},"Action":"kms:*","Resource":"*"}"#),
            "Statement[1].Principal.AWS: invalid principal \"arn:aws:iam::111122223333:user/*\" (expected \"*\", an account id, or an arn:aws:iam:: root, user or role ARN)",
        ),
        (
            second(r#"{"Principal":"*","Action":"kms:*","Resource":"*"}"#),
            "Statement[1]: missing required element Effect",
        ),
        (
            second(r#"{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}"#),
            "Statement[1].Effect: expected Allow or Deny, found \"allow\"",
        ),
        (
            second(r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#),
            "Statement[1]: missing required element Principal",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Resource":"*"}"#),
            "Statement[1]: missing required element Action",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*"}"#),
            "Statement[1]: missing required element Resource",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Encrypt","Resource":"*"}"#),
            "Statement[1]: has both Action and NotAction",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"Encrypt","Resource":"*"}"#),
            "Statement[1].Action: invalid action \"Encrypt\" (expected \"kms:<Action>\")",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"key/1"}"#),
            "Statement[1].Resource: invalid resource \"key/1\" (expected \"*\" or an ARN)",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Effects":"Deny"}"#),
            "Statement[1]: unknown element Effects",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":[],"Resource":"*"}"#),
            "Statement[1].Action: empty list",
        ),
        (
            second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":[]}"#),
            "Statement[1].Condition: expected an object, found an array",
        ),
        (
            r#"{"Version":"2013-01-01","Statement":[]}"#.to_owned(),
            "Version: unsupported version \"2013-01-01\" (2012-10-17 or 2008-10-17)",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#.to_owned(),
            "Statement: empty list",
        ),
        (
            r#"{"Version":"2012-10-17"}"#.to_owned(),
            "Policy: missing required element Statement",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[],"Extra":1}"#.to_owned(),
            "Policy: unknown element Extra",
        ),
        ("[]".to_owned(), "Policy: expected an object, found an array"),
        (
            format!(
                r#"{{"Statement":[{}]}}"#,
                vec![OK_STATEMENT; 101].join(",")
            ),
            "Statement: more than 100 statements",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(malformed(&json), want, "{json}");
    }
}

#[test]
fn malformed_json_is_refused_without_panicking() {
    // Duplicate keys: two Effects must not mean whichever one a parser keeps.
    let dup = one(
        r#"{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
    );
    let message = malformed(&dup);
    assert!(
        message.starts_with("The policy document is not valid JSON: duplicate key \"Effect\""),
        "{message}"
    );
    assert!(matches!(parse(&dup, ACCOUNT), Err(PolicyError::Syntax(_))));

    for bad in [
        "",
        "{",
        "not json",
        r#"{"Statement":[]} trailing"#,
        &format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
        &format!(r#"{{"Id":{}1{}}}"#, "[".repeat(200), "]".repeat(200)),
    ] {
        let message = malformed(bad);
        assert!(message.starts_with("The policy document"), "{message}");
    }

    let big = format!(r#"{{"Id":"{}","Statement":[]}}"#, "x".repeat(33_000));
    assert!(matches!(
        parse(&big, ACCOUNT),
        Err(PolicyError::TooLarge { len }) if len == big.len()
    ));
    let long_value = one(&format!(
        r#"{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:{}"}}"#,
        "x".repeat(3000)
    ));
    assert_eq!(
        malformed(&long_value),
        "Statement[0].Resource: a value is longer than 2048 characters"
    );
}

#[test]
fn accepted_grammar_variants() {
    // Statement as an object, no Version, bare account id, {"AWS": "*"}, 2008 literal "${".
    for json in [
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}}"#,
        r#"{"Version":"2008-10-17","Id":"x","Statement":[{"Sid":"s","Effect":"Deny","Principal":{"AWS":"*"},"Action":"*","Resource":"arn:aws:kms:*:111122223333:key/${x}"}]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/admin","arn:aws:iam::111122223333:user/a/b/c"]},"Action":["kms:Encrypt*","kms:?ecrypt"],"Resource":["*"],
            "Condition":{"ForAnyValue:StringEqualsIfExists":{"kms:GrantOperations":"Decrypt"},"NumericGreaterThanEquals":{"kms:EncryptionContext:n":["1.5",2,-3]},
                         "DateGreaterThanEquals":{"aws:CurrentTime":"2024-01-01"},"Null":{"kms:GrantOperations":["true","false"]},
                         "StringNotLike":{"kms:RecipientAttestation:PCR31":"00*"}}}]}"#,
    ] {
        if let Err(e) = parse(json, ACCOUNT) {
            panic!("must parse: {e}\n{json}");
        }
    }
}

#[test]
fn identity_policies_have_no_principal() {
    let with_principal = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
    match parse_identity(with_principal) {
        Err(e) => assert_eq!(
            e.to_string(),
            "Statement[0].Principal: an identity policy must not specify a Principal"
        ),
        Ok(_) => panic!("an identity policy with a Principal must be refused"),
    }
    assert!(parse_identity(ALLOW_ALL_IDENTITY_POLICY).is_ok());
}

#[test]
fn lockout_check_refuses_a_policy_that_drops_the_caller() {
    let only_bob = with_statement(&format!(
        r#"{{"Effect":"Allow","Principal":{{"AWS":"{BOB}"}},"Action":"kms:*","Resource":"*"}}"#
    ))
    .replace(ALICE, "arn:aws:iam::111122223333:user/mallory");
    let only_bob = key_policy(&only_bob);
    let err = lockout_check(&only_bob, None, ALICE, KEY, ACCOUNT, NOW)
        .expect_err("alice would be locked out");
    assert!(matches!(err, PolicyError::Lockout));
    assert_eq!(err.to_string(), LOCKOUT_MESSAGE);
    // Bob, who is named, may put it.
    assert!(lockout_check(&only_bob, None, BOB, KEY, ACCOUNT, NOW).is_ok());

    // The default policy keeps a caller whose identity policy allows PutKeyPolicy...
    let default = key_policy(&Policy::default_key_policy(ACCOUNT));
    let admin = identity(ALLOW_ALL_IDENTITY_POLICY);
    assert!(lockout_check(&default, Some(&admin), ALICE, KEY, ACCOUNT, NOW).is_ok());
    // ...but not one without.
    assert!(lockout_check(&default, None, ALICE, KEY, ACCOUNT, NOW).is_err());
    let encrypt_only = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#,
    );
    assert!(lockout_check(&default, Some(&encrypt_only), ALICE, KEY, ACCOUNT, NOW).is_err());

    // An explicit deny of PutKeyPolicy locks out even an admin.
    let deny_put = key_policy(&with_statement(
        r#"{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*"}"#,
    ));
    assert!(lockout_check(&deny_put, Some(&admin), ALICE, KEY, ACCOUNT, NOW).is_err());

    // A time-limited policy is judged at the injected time.
    let until_june = key_policy(&with_statement(
        r#"{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2024-06-01T00:00:00Z"}}}"#,
    ));
    assert!(lockout_check(&until_june, None, ALICE, KEY, ACCOUNT, NOW).is_ok());
    assert!(lockout_check(&until_june, None, ALICE, KEY, ACCOUNT, NOW + 60 * DAY).is_err());
}

// ---- grants ----

fn grant(operations: &[GrantOperation], constraints: Option<GrantConstraints>) -> Grant {
    Grant {
        grant_id: "0123456789abcdef".to_owned(),
        key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
        name: None,
        grantee_principal: BOB.to_owned(),
        retiring_principal: Some(ALICE.to_owned()),
        operations: operations.to_vec(),
        constraints,
        issuing_account: ACCOUNT.to_owned(),
        creation_date: NOW,
    }
}

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn equals(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
    Some(GrantConstraints {
        encryption_context_equals: Some(map(pairs)),
        encryption_context_subset: None,
    })
}

fn subset(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
    Some(GrantConstraints {
        encryption_context_equals: None,
        encryption_context_subset: Some(map(pairs)),
    })
}

#[test]
fn grant_operations_validate_as_aws() {
    let ops = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        validate_operations(&ops(&["Encrypt", "Decrypt", "Encrypt"])).expect("valid"),
        vec![GrantOperation::Encrypt, GrantOperation::Decrypt]
    );
    for op in GrantOperation::ALL {
        assert_eq!(GrantOperation::from_name(op.as_str()), Some(op));
    }
    assert!(matches!(
        validate_operations(&ops(&["encrypt"])),
        Err(GrantError::UnknownOperation(name)) if name == "encrypt"
    ));
    let message = validate_operations(&ops(&["Encrypt", "ReEncrypt"]))
        .expect_err("ReEncrypt is not a grant operation")
        .to_string();
    assert!(
        message.starts_with("1 validation error detected: Value 'ReEncrypt' at 'operations'"),
        "{message}"
    );
    assert!(matches!(
        validate_operations(&[]),
        Err(GrantError::NoOperations)
    ));
    assert!(matches!(
        validate_operations(&vec!["Encrypt".to_owned(); 51]),
        Err(GrantError::TooManyOperations)
    ));
}

#[test]
fn grants_allow_only_their_grantee_key_and_operations() {
    use GrantOperation::*;
    let g = grant(&[Encrypt, GenerateDataKey], None);
    assert!(grant_allows(&g, KEY_ID, BOB, "Encrypt", None));
    assert!(grant_allows(&g, KEY_ID, BOB, "GenerateDataKey", None));
    assert!(!grant_allows(&g, KEY_ID, BOB, "Decrypt", None));
    assert!(!grant_allows(
        &g,
        KEY_ID,
        BOB,
        "GenerateDataKeyWithoutPlaintext",
        None
    ));
    assert!(!grant_allows(&g, KEY_ID, BOB, "encrypt", None));
    assert!(!grant_allows(&g, KEY_ID, BOB, "Nonsense", None));
    assert!(!grant_allows(&g, KEY_ID, ALICE, "Encrypt", None));
    assert!(!grant_allows(&g, "another-key", BOB, "Encrypt", None));
}

#[test]
fn grant_constraint_equals_is_an_exact_match() {
    use GrantOperation::*;
    let g = grant(
        &[Encrypt, Decrypt, DescribeKey],
        equals(&[("Department", "Payroll")]),
    );
    let ok = |pairs: &[(&str, &str)]| grant_allows(&g, KEY_ID, BOB, "Decrypt", Some(&map(pairs)));
    assert!(ok(&[("Department", "Payroll")]));
    // Keys compare case-insensitively, values case-sensitively (AWS GrantConstraints).
    assert!(ok(&[("department", "Payroll")]));
    assert!(!ok(&[("Department", "payroll")]));
    assert!(!ok(&[("Department", "Payroll"), ("Project", "x")]));
    assert!(!ok(&[]));
    assert!(!ok(&[("Department", "Payroll"), ("DEPARTMENT", "Payroll")]));
    assert!(!grant_allows(&g, KEY_ID, BOB, "Decrypt", None));
    // Constraints do not apply to DescribeKey.
    assert!(grant_allows(&g, KEY_ID, BOB, "DescribeKey", None));
}

#[test]
fn grant_constraint_subset_requires_all_its_pairs() {
    use GrantOperation::*;
    let g = grant(
        &[Encrypt, Decrypt],
        subset(&[("Department", "Payroll"), ("Project", "Alpha")]),
    );
    let ok = |pairs: &[(&str, &str)]| grant_allows(&g, KEY_ID, BOB, "Encrypt", Some(&map(pairs)));
    assert!(ok(&[("Department", "Payroll"), ("Project", "Alpha")]));
    assert!(ok(&[
        ("Department", "Payroll"),
        ("Project", "Alpha"),
        ("Extra", "x")
    ]));
    assert!(ok(&[("DEPARTMENT", "Payroll"), ("project", "Alpha")]));
    assert!(!ok(&[("Department", "Payroll")]));
    assert!(!ok(&[("Department", "Payroll"), ("Project", "alpha")]));
    assert!(!ok(&[]));
    assert!(!grant_allows(&g, KEY_ID, BOB, "Encrypt", None));

    let empty_subset = grant(&[Encrypt], subset(&[]));
    assert!(grant_allows(&empty_subset, KEY_ID, BOB, "Encrypt", None));
    let empty_equals = grant(&[Encrypt], equals(&[]));
    assert!(grant_allows(&empty_equals, KEY_ID, BOB, "Encrypt", None));
    assert!(!grant_allows(
        &empty_equals,
        KEY_ID,
        BOB,
        "Encrypt",
        Some(&map(&[("a", "b")]))
    ));
}

#[test]
fn grant_constraints_are_validated() {
    use GrantOperation::*;
    let c = |v: Option<GrantConstraints>| v.expect("test constraint");
    assert!(validate_constraints(
        &[Encrypt, DescribeKey, RetireGrant],
        &c(equals(&[("a", "b")]))
    )
    .is_ok());
    assert!(matches!(
        validate_constraints(&[Encrypt, Sign], &c(subset(&[("a", "b")]))),
        Err(GrantError::ConstraintsNotSupported(Sign))
    ));
    assert!(validate_constraints(&[Sign], &GrantConstraints::default()).is_ok());
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let nine: Vec<(&str, &str)> = nine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(matches!(
        validate_constraints(&[Encrypt], &c(subset(&nine))),
        Err(GrantError::TooManyConstraintPairs)
    ));
    let long = "v".repeat(385);
    assert!(matches!(
        validate_constraints(&[Encrypt], &c(equals(&[("k", &long)]))),
        Err(GrantError::ConstraintValueTooLong)
    ));
    assert!(matches!(
        validate_constraints(&[Encrypt], &c(equals(&[("k", "a"), ("K", "a")]))),
        Err(GrantError::AmbiguousConstraintKeys)
    ));
    // A grant that slipped past validation still fails closed.
    let g = grant(&[Sign], subset(&[("a", "b")]));
    assert!(!grant_allows(
        &g,
        KEY_ID,
        BOB,
        "Sign",
        Some(&map(&[("a", "b")]))
    ));
}

#[test]
fn child_grants_are_at_least_as_strict() {
    let eq = equals(&[("a", "1")]);
    let sub = subset(&[("a", "1")]);
    assert!(child_constraints_allowed(None, None));
    assert!(child_constraints_allowed(None, sub.as_ref()));
    assert!(!child_constraints_allowed(eq.as_ref(), None));
    assert!(child_constraints_allowed(
        eq.as_ref(),
        equals(&[("A", "1")]).as_ref()
    ));
    assert!(!child_constraints_allowed(eq.as_ref(), sub.as_ref()));
    assert!(!child_constraints_allowed(
        eq.as_ref(),
        equals(&[("a", "1"), ("b", "2")]).as_ref()
    ));
    assert!(child_constraints_allowed(sub.as_ref(), sub.as_ref()));
    assert!(child_constraints_allowed(
        sub.as_ref(),
        subset(&[("a", "1"), ("b", "2")]).as_ref()
    ));
    assert!(child_constraints_allowed(
        sub.as_ref(),
        equals(&[("a", "1"), ("b", "2")]).as_ref()
    ));
    assert!(!child_constraints_allowed(
        sub.as_ref(),
        subset(&[("b", "2")]).as_ref()
    ));
    assert!(!child_constraints_allowed(
        sub.as_ref(),
        subset(&[("a", "2")]).as_ref()
    ));
}

#[test]
fn retiring() {
    use GrantOperation::*;
    let g = grant(&[Encrypt], None);
    assert!(may_retire(&g, ALICE));
    assert!(!may_retire(&g, BOB));
    assert!(may_retire(&grant(&[Encrypt, RetireGrant], None), BOB));
    assert!(!may_retire(&g, "arn:aws:iam::111122223333:user/eve"));
}

#[test]
fn grant_constraints_serialize_as_aws() {
    let c = equals(&[("Department", "Payroll")]).expect("test constraint");
    assert_eq!(
        serde_json::to_string(&c).expect("serializes"),
        r#"{"EncryptionContextEquals":{"Department":"Payroll"}}"#
    );
    let back: GrantConstraints =
        serde_json::from_str(r#"{"EncryptionContextSubset":{"a":"b"}}"#).expect("parses");
    assert_eq!(back, subset(&[("a", "b")]).expect("test constraint"));
    assert_eq!(
        serde_json::to_string(&GrantOperation::GenerateDataKeyPairWithoutPlaintext)
            .expect("serializes"),
        r#""GenerateDataKeyPairWithoutPlaintext""#
    );
}
