//! Authorization attacks, end to end against one shared `ekms dev`: a principal that may use
//! only its own keys (or nothing at all) tries to reach a victim's key by shaping the request
//! (ill-typed or extra key-bearing members, a key of its own in a member the operation does
//! not read, alias operations naming two keys, ReEncrypt across keys), by administering a
//! principal outside its resource scope, by inheriting a grant through a re-created name, and
//! by replaying a signature that leaves `X-Amz-Target` unsigned.
//!
//! Every test also does the same things as the owner (and as the attacker on its own keys),
//! which must work, so that no refusal passes vacuously. Checks are collected, and a failing
//! test lists every check that failed, with the answer the server gave.
//!
//! The fixture: `victim` has an identity policy allowing `kms:*` on `*` and creates its keys
//! (default key policy: delegation to the account, so access is by identity policy);
//! `attacker` has `kms:*` only on two keys made for it and on `alias/attacker-*`; `nobody`
//! has no identity policy.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ekms_tests::{alias_arn, key_arn, send_raw, unique, Ekms, RawResponse, SignWith, ACCOUNT};
use serde_json::{json, Value};

const ACCESS_DENIED: &str = "AccessDeniedException";
const SERIALIZATION: &str = "SerializationException";
const SECRET: &[u8] = b"the victim's secret";

/// The members that name a key in some KMS operation.
const KEY_MEMBERS: [&str; 5] = [
    "KeyId",
    "TargetKeyId",
    "DestinationKeyId",
    "SourceKeyId",
    "AliasName",
];

/// Members Decrypt does not define, each with a value of a type no operation accepts for it.
fn ill_typed_extras() -> [(&'static str, Value); 4] {
    [
        ("Operations", json!(1)),
        ("TargetKeyId", json!(false)),
        ("DestinationKeyId", json!(7)),
        ("AliasName", json!([])),
    ]
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `body` with `member` set to `value`.
fn with(body: &Value, member: &str, value: Value) -> Value {
    let mut body = body.clone();
    body[member] = value;
    body
}

fn user_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{name}")
}

/// A key policy that gives `arn` everything and nobody else anything (a takeover).
fn policy_for_only(arn: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": arn},
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
    .to_string()
}

/// The default key policy: delegation to the account.
fn delegating_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
    .to_string()
}

/// One answer, as `Ok(body)` for a 200 or `Err(error code)`, for messages and matching.
fn outcome(r: &RawResponse) -> Result<Value, String> {
    if r.status == 200 {
        Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    } else {
        Err(r
            .error_code()
            .unwrap_or_else(|| format!("HTTP {} without __type", r.status)))
    }
}

fn shown(r: &RawResponse) -> String {
    let body = String::from_utf8_lossy(&r.body);
    let body: String = body.chars().take(300).collect();
    format!("HTTP {} {body}", r.status)
}

/// Soft assertions: every failure is kept, and [`Checks::finish`] reports them all.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    count: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.count += 1;
        if !ok {
            self.failures.push(what());
        }
    }

    /// The answer must be a success; its body when it is.
    fn ok(&mut self, r: &RawResponse, what: &str) -> Option<Value> {
        let got = outcome(r);
        self.check(got.is_ok(), || {
            format!(
                "[positive control] {what}: expected success, got {}",
                shown(r)
            )
        });
        got.ok()
    }

    /// The answer must be an error with one of `codes`, and carry no `Plaintext`,
    /// `CiphertextBlob` or `SecretAccessKey`.
    fn code(&mut self, r: &RawResponse, codes: &[&str], what: &str) {
        let got = outcome(r);
        self.check(
            matches!(&got, Err(code) if codes.contains(&code.as_str())),
            || format!("{what}: expected {codes:?}, got {}", shown(r)),
        );
        let leaked = ["Plaintext", "CiphertextBlob", "SecretAccessKey"]
            .into_iter()
            .find(|m| got.as_ref().is_ok_and(|v| v.get(*m).is_some()));
        if let Some(member) = leaked {
            self.failures
                .push(format!("{what}: the answer carries {member}: {}", shown(r)));
        }
    }

    fn denied(&mut self, r: &RawResponse, what: &str) {
        self.code(r, &[ACCESS_DENIED], what);
    }

    fn same(&mut self, got: &Value, want: &Value, what: &str) {
        self.check(got == want, || {
            format!("{what}: changed\n  before: {want}\n  after:  {got}")
        });
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n- {}",
            self.failures.len(),
            self.count,
            self.failures.join("\n- ")
        );
    }
}

/// A principal made for one test.
struct Principal {
    name: String,
    arn: String,
    access_key_id: String,
    secret: String,
}

impl Principal {
    fn sign(&self) -> SignWith {
        SignWith::Custom {
            access_key_id: self.access_key_id.clone(),
            secret: self.secret.clone(),
            time: SystemTime::now(),
        }
    }

    /// `TrentService.<op>` (or `Ekms.<op>` when `op` starts with `Ekms.`) with `body`,
    /// signed by this principal.
    async fn call(&self, ekms: &Ekms, op: &str, body: &Value) -> RawResponse {
        let target = if op.starts_with("Ekms.") {
            op.to_owned()
        } else {
            format!("TrentService.{op}")
        };
        ekms.raw(Some(&target), body.to_string().as_bytes(), self.sign())
            .await
    }

    /// [`Principal::call`] that must succeed (fixture set-up).
    async fn must(&self, ekms: &Ekms, op: &str, body: &Value) -> Value {
        let r = self.call(ekms, op, body).await;
        outcome(&r).unwrap_or_else(|_| {
            panic!("set-up: {op} {body} as {} failed: {}", self.name, shown(&r))
        })
    }

    async fn create_key(&self, ekms: &Ekms) -> String {
        let out = self
            .must(ekms, "CreateKey", &json!({"Description": "authz_attacks"}))
            .await;
        out["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("CreateKey answers a KeyId")
            .to_owned()
    }

    async fn encrypt(&self, ekms: &Ekms, key: &str, plaintext: &[u8]) -> String {
        let out = self
            .must(
                ekms,
                "Encrypt",
                &json!({"KeyId": key, "Plaintext": b64(plaintext)}),
            )
            .await;
        out["CiphertextBlob"]
            .as_str()
            .expect("Encrypt answers a CiphertextBlob")
            .to_owned()
    }
}

/// The dev principal (allowed everything, administers principals).
fn dev(ekms: &Ekms) -> Principal {
    Principal {
        name: "dev".to_owned(),
        arn: user_arn("dev"),
        access_key_id: ekms.access_key_id.clone(),
        secret: ekms.secret.clone(),
    }
}

/// `Ekms.CreatePrincipal` as dev, with `policy` as its identity policy (none when `None`).
async fn create_principal(ekms: &Ekms, name: &str, policy: Option<&Value>) -> Principal {
    let mut body = json!({"UserName": name});
    if let Some(policy) = policy {
        body["Policy"] = json!(policy.to_string());
    }
    let out = dev(ekms).must(ekms, "Ekms.CreatePrincipal", &body).await;
    assert_eq!(out["Arn"], user_arn(name), "{out}");
    Principal {
        name: name.to_owned(),
        arn: user_arn(name),
        access_key_id: out["AccessKeyId"].as_str().expect("AccessKeyId").to_owned(),
        secret: out["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .to_owned(),
    }
}

fn identity_policy(resources: &[String], action: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resources}],
    })
}

/// The victim, its key, alias and ciphertext; the attacker, its two keys, alias and
/// ciphertext; and a principal with no policy.
struct Fixture {
    ekms: &'static Ekms,
    victim: Principal,
    victim_key: String,
    /// `alias/app-…` → `victim_key`.
    victim_alias: String,
    /// `SECRET` under `victim_key`, base64.
    victim_ciphertext: String,
    attacker: Principal,
    attacker_key: String,
    attacker_key2: String,
    /// `alias/attacker-…` → `attacker_key`, made by the attacker.
    attacker_alias: String,
    /// Under `attacker_key`, base64.
    attacker_ciphertext: String,
    nobody: Principal,
}

impl Fixture {
    async fn new() -> Fixture {
        let ekms = Ekms::shared();
        let admin = dev(ekms);
        let victim = create_principal(
            ekms,
            &unique("victim"),
            Some(&identity_policy(&["*".to_owned()], "kms:*")),
        )
        .await;
        let victim_key = victim.create_key(ekms).await;
        let victim_alias = format!("alias/{}", unique("app"));
        victim
            .must(
                ekms,
                "CreateAlias",
                &json!({"AliasName": victim_alias, "TargetKeyId": victim_key}),
            )
            .await;
        let victim_ciphertext = victim.encrypt(ekms, &victim_key, SECRET).await;

        // The attacker's keys are made by the admin; its identity policy names them.
        let attacker_key = admin.create_key(ekms).await;
        let attacker_key2 = admin.create_key(ekms).await;
        let attacker = create_principal(
            ekms,
            &unique("attacker"),
            Some(&identity_policy(
                &[
                    key_arn(&attacker_key),
                    key_arn(&attacker_key2),
                    alias_arn("alias/attacker-*"),
                ],
                "kms:*",
            )),
        )
        .await;
        let attacker_alias = format!("alias/{}", unique("attacker"));
        attacker
            .must(
                ekms,
                "CreateAlias",
                &json!({"AliasName": attacker_alias, "TargetKeyId": attacker_key}),
            )
            .await;
        let attacker_ciphertext = attacker
            .encrypt(ekms, &attacker_key, b"the attacker's own data")
            .await;
        let nobody = create_principal(ekms, &unique("nobody"), None).await;
        Fixture {
            ekms,
            victim,
            victim_key,
            victim_alias,
            victim_ciphertext,
            attacker,
            attacker_key,
            attacker_key2,
            attacker_alias,
            attacker_ciphertext,
            nobody,
        }
    }

    /// The attacker and the principal without a policy.
    fn intruders(&self) -> [&Principal; 2] {
        [&self.attacker, &self.nobody]
    }

    /// Everything about the victim's key that an attack could change, as the victim sees it.
    async fn victim_key_state(&self) -> Value {
        let ekms = self.ekms;
        let key = json!({"KeyId": self.victim_key});
        let read = |r: RawResponse, member: &str| match outcome(&r) {
            Ok(v) => v[member].clone(),
            Err(code) => json!(format!("<{code}>")),
        };
        let meta = read(
            self.victim.call(ekms, "DescribeKey", &key).await,
            "KeyMetadata",
        );
        let policy = read(
            self.victim
                .call(
                    ekms,
                    "GetKeyPolicy",
                    &with(&key, "PolicyName", json!("default")),
                )
                .await,
            "Policy",
        );
        let grants = read(self.victim.call(ekms, "ListGrants", &key).await, "Grants");
        let aliases = match read(self.victim.call(ekms, "ListAliases", &key).await, "Aliases") {
            Value::Array(aliases) => aliases
                .iter()
                .map(|a| json!([a["AliasName"], a["TargetKeyId"]]))
                .collect(),
            other => other,
        };
        json!({"KeyMetadata": meta, "Policy": policy, "Grants": grants, "Aliases": aliases})
    }

    /// The key an alias points to, as the victim's DescribeKey of the alias says.
    async fn alias_target(&self, alias: &str) -> Result<String, String> {
        let r = self
            .victim
            .call(self.ekms, "DescribeKey", &json!({"KeyId": alias}))
            .await;
        outcome(&r).map(|v| v["KeyMetadata"]["KeyId"].as_str().unwrap_or("?").to_owned())
    }

    /// Whether Decrypt of the victim's ciphertext as the victim still gives `SECRET`.
    async fn victim_can_decrypt(&self, checks: &mut Checks, what: &str) {
        let r = self
            .victim
            .call(
                self.ekms,
                "Decrypt",
                &json!({"CiphertextBlob": self.victim_ciphertext}),
            )
            .await;
        if let Some(v) = checks.ok(&r, what) {
            checks.check(v["Plaintext"] == b64(SECRET), || {
                format!("{what}: wrong plaintext {v}")
            });
        }
    }
}

// ---- 1. Ill-typed members the operation does not define ----

#[tokio::test]
async fn an_ill_typed_extra_member_does_not_skip_authorization_of_decrypt() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let decrypt = json!({"CiphertextBlob": f.victim_ciphertext});
    for who in f.intruders() {
        let r = who.call(f.ekms, "Decrypt", &decrypt).await;
        checks.denied(
            &r,
            &format!("Decrypt of the victim's ciphertext as {}", who.name),
        );
        for (member, value) in ill_typed_extras() {
            let body = with(&decrypt, member, value.clone());
            let r = who.call(f.ekms, "Decrypt", &body).await;
            checks.denied(
                &r,
                &format!(
                    "Decrypt of the victim's ciphertext as {} with extra {member}: {value}",
                    who.name
                ),
            );
        }
    }
    // Positive controls: the members are ignored for callers who are allowed.
    for (member, value) in ill_typed_extras() {
        let what = format!("the victim's Decrypt with extra {member}: {value}");
        let r = f
            .victim
            .call(f.ekms, "Decrypt", &with(&decrypt, member, value.clone()))
            .await;
        if let Some(v) = checks.ok(&r, &what) {
            checks.check(v["Plaintext"] == b64(SECRET), || format!("{what}: {v}"));
        }
        let own = json!({"CiphertextBlob": f.attacker_ciphertext});
        let r = f
            .attacker
            .call(f.ekms, "Decrypt", &with(&own, member, value))
            .await;
        checks.ok(
            &r,
            &format!("the attacker's Decrypt of its own ciphertext with extra {member}"),
        );
    }
    checks.finish();
}

#[tokio::test]
async fn an_ill_typed_extra_member_does_not_skip_authorization_of_put_key_policy() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let before = f.victim_key_state().await;
    for who in f.intruders() {
        let takeover = json!({"KeyId": f.victim_key, "Policy": policy_for_only(&who.arn)});
        let r = who.call(f.ekms, "PutKeyPolicy", &takeover).await;
        checks.denied(
            &r,
            &format!("PutKeyPolicy on the victim's key as {}", who.name),
        );
        for (member, value) in ill_typed_extras() {
            let r = who
                .call(
                    f.ekms,
                    "PutKeyPolicy",
                    &with(&takeover, member, value.clone()),
                )
                .await;
            checks.denied(
                &r,
                &format!(
                    "PutKeyPolicy on the victim's key as {} with extra {member}: {value}",
                    who.name
                ),
            );
        }
    }
    checks.same(&f.victim_key_state().await, &before, "the victim's key");
    f.victim_can_decrypt(&mut checks, "the victim's Decrypt after the attempts")
        .await;
    // Positive controls: owners put a policy, with the same extra members.
    for (member, value) in ill_typed_extras() {
        let r = f
            .victim
            .call(
                f.ekms,
                "PutKeyPolicy",
                &json!({"KeyId": f.victim_key, "Policy": delegating_policy(), member: value}),
            )
            .await;
        checks.ok(
            &r,
            &format!("the victim's PutKeyPolicy with extra {member}"),
        );
        let r = f
            .attacker
            .call(
                f.ekms,
                "PutKeyPolicy",
                &json!({"KeyId": f.attacker_key, "Policy": delegating_policy(), member: value}),
            )
            .await;
        checks.ok(
            &r,
            &format!("the attacker's PutKeyPolicy on its own key with extra {member}"),
        );
    }
    checks.finish();
}

// ---- 2. Defined members of the wrong type ----

#[tokio::test]
async fn a_defined_member_of_the_wrong_type_is_a_serialization_error_for_everyone() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let before = f.victim_key_state().await;
    // The whole body is parsed into the operation's request type before anything else, so a
    // member it defines with the wrong type is a SerializationException for everyone, as AWS
    // answers.
    let strict = [
        (
            "Decrypt",
            json!({"CiphertextBlob": f.victim_ciphertext, "KeyId": 7}),
        ),
        (
            "Decrypt",
            json!({"CiphertextBlob": f.victim_ciphertext, "EncryptionContext": "x"}),
        ),
        (
            "Encrypt",
            json!({"KeyId": f.victim_key, "Plaintext": b64(b"x"), "EncryptionContext": "x"}),
        ),
    ];
    let also = [
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": f.victim_key, "PendingWindowInDays": "7"}),
        ),
        ("DisableKey", json!({"KeyId": [f.victim_key]})),
        (
            "PutKeyPolicy",
            json!({"KeyId": f.victim_key, "Policy": {"Version": "2012-10-17"}}),
        ),
        (
            "UpdateAlias",
            json!({"AliasName": f.victim_alias, "TargetKeyId": {"KeyId": f.attacker_key}}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": f.victim_key, "GranteePrincipal": f.attacker.arn, "Operations": "Decrypt"}),
        ),
    ];
    for who in [&f.victim, &f.attacker, &f.nobody] {
        for (op, body) in &strict {
            let r = who.call(f.ekms, op, body).await;
            checks.code(
                &r,
                &[SERIALIZATION],
                &format!("{op} {body} as {}", who.name),
            );
        }
        for (op, body) in &also {
            let r = who.call(f.ekms, op, body).await;
            checks.code(
                &r,
                &[SERIALIZATION],
                &format!("{op} {body} as {}", who.name),
            );
        }
    }
    checks.same(&f.victim_key_state().await, &before, "the victim's key");
    // Positive controls: the same requests, well typed, work for the victim.
    f.victim_can_decrypt(&mut checks, "the victim's well-typed Decrypt")
        .await;
    let r = f
        .victim
        .call(
            f.ekms,
            "Encrypt",
            &json!({"KeyId": f.victim_key, "Plaintext": b64(b"x"), "EncryptionContext": {"a": "x"}}),
        )
        .await;
    checks.ok(&r, "the victim's well-typed Encrypt");
    checks.finish();
}

// ---- 3. Decrypt naming the attacker's own key ----

#[tokio::test]
async fn decrypt_naming_the_attackers_own_key_does_not_open_the_victims_ciphertext() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let decrypt = json!({"CiphertextBlob": f.victim_ciphertext});
    let own = [
        f.attacker_key.clone(),
        key_arn(&f.attacker_key),
        f.attacker_alias.clone(),
    ];
    for member in KEY_MEMBERS {
        for key in &own {
            let body = with(&decrypt, member, json!(key));
            let r = f.attacker.call(f.ekms, "Decrypt", &body).await;
            checks.code(
                &r,
                &[ACCESS_DENIED, "IncorrectKeyException"],
                &format!("the attacker's Decrypt of the victim's ciphertext with {member}: {key}"),
            );
        }
    }
    let mut all = decrypt.clone();
    for member in KEY_MEMBERS {
        all[member] = json!(f.attacker_key);
    }
    let r = f.attacker.call(f.ekms, "Decrypt", &all).await;
    checks.code(
        &r,
        &[ACCESS_DENIED, "IncorrectKeyException"],
        "the attacker's Decrypt of the victim's ciphertext with every key member naming its key",
    );
    // Positive controls.
    let r = f
        .attacker
        .call(
            f.ekms,
            "Decrypt",
            &json!({"CiphertextBlob": f.attacker_ciphertext, "KeyId": f.attacker_key}),
        )
        .await;
    checks.ok(
        &r,
        "the attacker's Decrypt of its own ciphertext naming its key",
    );
    let r = f
        .victim
        .call(
            f.ekms,
            "Decrypt",
            &with(&decrypt, "KeyId", json!(f.victim_key)),
        )
        .await;
    checks.ok(&r, "the victim's Decrypt naming its key");
    checks.finish();
}

// ---- 4. UpdateAlias ----

#[tokio::test]
async fn update_alias_cannot_repoint_the_victims_alias_at_the_attackers_key() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    for target in [f.attacker_key.clone(), key_arn(&f.attacker_key)] {
        let r = f
            .attacker
            .call(
                f.ekms,
                "UpdateAlias",
                &json!({"AliasName": f.victim_alias, "TargetKeyId": target}),
            )
            .await;
        checks.denied(
            &r,
            &format!("the attacker's UpdateAlias of the victim's alias to its own key {target}"),
        );
        let r = f
            .attacker
            .call(
                f.ekms,
                "UpdateAlias",
                &json!({"AliasName": f.victim_alias, "TargetKeyId": target, "KeyId": target}),
            )
            .await;
        checks.denied(
            &r,
            "the attacker's UpdateAlias of the victim's alias with an extra KeyId of its own",
        );
    }
    // Nor its own alias at the victim's key (kms:UpdateAlias on the new key), with or
    // without an extra KeyId naming its own key.
    let repoint = json!({"AliasName": f.attacker_alias, "TargetKeyId": f.victim_key});
    for body in [
        repoint.clone(),
        with(&repoint, "KeyId", json!(f.attacker_key)),
    ] {
        let r = f.attacker.call(f.ekms, "UpdateAlias", &body).await;
        checks.denied(
            &r,
            &format!("the attacker's UpdateAlias {body} of its own alias to the victim's key"),
        );
    }
    let target = f.alias_target(&f.victim_alias).await;
    checks.check(target.as_ref() == Ok(&f.victim_key), || {
        format!(
            "the victim's alias now points to {target:?}, not {}",
            f.victim_key
        )
    });
    let target = f.alias_target(&f.attacker_alias).await;
    checks.check(target.as_ref() == Ok(&f.attacker_key), || {
        format!("the attacker's alias now points to {target:?}")
    });
    // Positive controls: each owner repoints its own alias between its own keys.
    let victim_key2 = f.victim.create_key(f.ekms).await;
    let r = f
        .victim
        .call(
            f.ekms,
            "UpdateAlias",
            &json!({"AliasName": f.victim_alias, "TargetKeyId": victim_key2}),
        )
        .await;
    checks.ok(&r, "the victim's UpdateAlias to its second key");
    let r = f
        .attacker
        .call(
            f.ekms,
            "UpdateAlias",
            &json!({"AliasName": f.attacker_alias, "TargetKeyId": f.attacker_key2}),
        )
        .await;
    checks.ok(
        &r,
        "the attacker's UpdateAlias of its alias to its second key",
    );
    let target = f.alias_target(&f.victim_alias).await;
    checks.check(target.as_ref() == Ok(&victim_key2), || {
        format!("after the victim's UpdateAlias: {target:?}")
    });
    checks.finish();
}

// ---- 5. CreateAlias / DeleteAlias with an extra KeyId ----

#[tokio::test]
async fn create_and_delete_alias_are_authorized_on_the_victims_key_despite_an_extra_key_id() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    // Each attempt on an alias of its own, so that one that gets through does not hide the next.
    for extra in [
        None,
        Some("KeyId"),
        Some("SourceKeyId"),
        Some("DestinationKeyId"),
    ] {
        let stolen = format!("alias/{}", unique("attacker"));
        let mut create = json!({"AliasName": stolen, "TargetKeyId": f.victim_key});
        if let Some(member) = extra {
            create[member] = json!(f.attacker_key);
        }
        let r = f.attacker.call(f.ekms, "CreateAlias", &create).await;
        checks.denied(
            &r,
            &format!("the attacker's CreateAlias {create} to the victim's key"),
        );
        let target = f.alias_target(&stolen).await;
        checks.check(target == Err("NotFoundException".to_owned()), || {
            format!("{stolen} was created: {target:?}")
        });
    }

    let mut victim_aliases = Vec::new();
    for extra in [
        None,
        Some("KeyId"),
        Some("TargetKeyId"),
        Some("SourceKeyId"),
        Some("DestinationKeyId"),
    ] {
        let alias = format!("alias/{}", unique("app"));
        f.victim
            .must(
                f.ekms,
                "CreateAlias",
                &json!({"AliasName": alias, "TargetKeyId": f.victim_key}),
            )
            .await;
        let mut delete = json!({"AliasName": alias});
        if let Some(member) = extra {
            delete[member] = json!(f.attacker_key);
        }
        let r = f.attacker.call(f.ekms, "DeleteAlias", &delete).await;
        checks.denied(
            &r,
            &format!("the attacker's DeleteAlias {delete} of the victim's alias"),
        );
        let target = f.alias_target(&alias).await;
        checks.check(target.as_ref() == Ok(&f.victim_key), || {
            format!("the victim's {alias} is gone or moved: {target:?}")
        });
        victim_aliases.push(alias);
    }

    // Positive controls: the attacker makes and removes an alias of its own (with the same
    // extra member), and the victim removes its aliases.
    let own = format!("alias/{}", unique("attacker"));
    let r = f
        .attacker
        .call(
            f.ekms,
            "CreateAlias",
            &json!({"AliasName": own, "TargetKeyId": f.attacker_key2, "KeyId": f.attacker_key}),
        )
        .await;
    checks.ok(&r, "the attacker's CreateAlias to its own key");
    let r = f
        .attacker
        .call(
            f.ekms,
            "DeleteAlias",
            &json!({"AliasName": own, "KeyId": f.attacker_key}),
        )
        .await;
    checks.ok(&r, "the attacker's DeleteAlias of its own alias");
    for alias in victim_aliases.iter().chain([&f.victim_alias]) {
        // One an attack removed is reported above.
        if f.alias_target(alias).await.is_err() {
            continue;
        }
        let r = f
            .victim
            .call(f.ekms, "DeleteAlias", &json!({"AliasName": alias}))
            .await;
        checks.ok(&r, &format!("the victim's DeleteAlias of {alias}"));
    }
    checks.finish();
}

// ---- 6. ReEncrypt ----

#[tokio::test]
async fn re_encrypt_needs_re_encrypt_from_on_the_source_and_re_encrypt_to_on_the_destination() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    // The victim's ciphertext to the attacker's key: kms:ReEncryptFrom on the victim's key.
    let out_of = json!({"CiphertextBlob": f.victim_ciphertext, "DestinationKeyId": f.attacker_key});
    let r = f.attacker.call(f.ekms, "ReEncrypt", &out_of).await;
    checks.denied(
        &r,
        "the attacker's ReEncrypt of the victim's ciphertext to its own key",
    );
    let r = f
        .attacker
        .call(
            f.ekms,
            "ReEncrypt",
            &with(&out_of, "SourceKeyId", json!(f.attacker_key)),
        )
        .await;
    checks.code(
        &r,
        &[ACCESS_DENIED, "IncorrectKeyException"],
        "the attacker's ReEncrypt of the victim's ciphertext naming its own key as SourceKeyId",
    );
    for (member, value) in [
        ("KeyId", json!(7)),
        ("KeyId", json!(f.attacker_key)),
        ("Operations", json!(1)),
        ("AliasName", json!([])),
    ] {
        let r = f
            .attacker
            .call(f.ekms, "ReEncrypt", &with(&out_of, member, value.clone()))
            .await;
        checks.denied(
            &r,
            &format!(
                "the attacker's ReEncrypt of the victim's ciphertext with extra {member}: {value}"
            ),
        );
    }
    // The attacker's ciphertext to the victim's key: kms:ReEncryptTo on the victim's key.
    let into = json!({"CiphertextBlob": f.attacker_ciphertext, "DestinationKeyId": f.victim_key});
    let r = f.attacker.call(f.ekms, "ReEncrypt", &into).await;
    checks.denied(
        &r,
        "the attacker's ReEncrypt of its own ciphertext to the victim's key",
    );
    for (member, value) in [
        ("KeyId", json!(f.attacker_key)),
        ("TargetKeyId", json!(f.attacker_key)),
        ("SourceKeyId", json!(f.attacker_key)),
        ("Operations", json!(1)),
        ("KeyId", json!(7)),
    ] {
        let r = f
            .attacker
            .call(f.ekms, "ReEncrypt", &with(&into, member, value.clone()))
            .await;
        checks.denied(
            &r,
            &format!("the attacker's ReEncrypt to the victim's key with extra {member}: {value}"),
        );
    }
    for body in [&out_of, &into] {
        let r = f.nobody.call(f.ekms, "ReEncrypt", body).await;
        checks.denied(
            &r,
            &format!("ReEncrypt {body} as the principal without a policy"),
        );
    }
    // Positive controls: each re-encrypts between its own keys.
    let r = f
        .attacker
        .call(
            f.ekms,
            "ReEncrypt",
            &json!({"CiphertextBlob": f.attacker_ciphertext, "DestinationKeyId": f.attacker_key2, "SourceKeyId": f.attacker_key}),
        )
        .await;
    checks.ok(&r, "the attacker's ReEncrypt between its own keys");
    let r = f
        .victim
        .call(
            f.ekms,
            "ReEncrypt",
            &json!({"CiphertextBlob": f.victim_ciphertext, "DestinationKeyId": f.victim_alias}),
        )
        .await;
    checks.ok(&r, "the victim's ReEncrypt to its own key");
    checks.finish();
}

// ---- 7 and 8. Key operations whatever other members name; the owners may ----

/// The operations of scenario 7, read-only ones first (the owners' positive controls run them
/// in this order, and the last two disable the key).
const KEY_OPERATIONS: [&str; 8] = [
    "DescribeKey",
    "GetKeyPolicy",
    "Encrypt",
    "GenerateDataKey",
    "CreateGrant",
    "PutKeyPolicy",
    "DisableKey",
    "ScheduleKeyDeletion",
];

/// A request for `op` on `key`; a grant goes to `grantee`, a new policy is `policy`.
fn key_operation(op: &str, key: &str, grantee: &str, policy: &str) -> Value {
    match op {
        "GetKeyPolicy" => json!({"KeyId": key, "PolicyName": "default"}),
        "Encrypt" => json!({"KeyId": key, "Plaintext": b64(b"x")}),
        "GenerateDataKey" => json!({"KeyId": key, "KeySpec": "AES_256"}),
        "CreateGrant" => json!({
            "KeyId": key,
            "GranteePrincipal": grantee,
            "Operations": ["Decrypt", "Encrypt", "ReEncryptFrom"],
        }),
        "PutKeyPolicy" => json!({"KeyId": key, "PolicyName": "default", "Policy": policy}),
        "ScheduleKeyDeletion" => json!({"KeyId": key, "PendingWindowInDays": 7}),
        _ => json!({"KeyId": key}),
    }
}

#[tokio::test]
async fn key_operations_on_the_victims_key_are_refused_whatever_other_members_name() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let before = f.victim_key_state().await;
    let takeover = policy_for_only(&f.attacker.arn);
    // The extra members, each naming the attacker's own key; then all of them at once.
    let other_members: Vec<(&str, String)> = KEY_MEMBERS[1..]
        .iter()
        .map(|m| {
            let own = if *m == "AliasName" {
                f.attacker_alias.clone()
            } else {
                f.attacker_key.clone()
            };
            (*m, own)
        })
        .collect();
    for op in KEY_OPERATIONS {
        // Aliases name keys only where AWS accepts them.
        let mut victim_forms = vec![f.victim_key.clone(), key_arn(&f.victim_key)];
        if matches!(op, "DescribeKey" | "Encrypt" | "GenerateDataKey") {
            victim_forms.push(f.victim_alias.clone());
        }
        for victim_key in &victim_forms {
            let plain = key_operation(op, victim_key, &f.attacker.arn, &takeover);
            let mut variants = vec![("no extra member".to_owned(), plain.clone())];
            let mut all = plain.clone();
            for (member, own) in &other_members {
                variants.push((
                    format!("extra {member}: {own}"),
                    with(&plain, member, json!(own)),
                ));
                all[*member] = json!(own);
            }
            variants.push(("every other key member naming its own key".to_owned(), all));
            for (extra, body) in &variants {
                let r = f.attacker.call(f.ekms, op, body).await;
                checks.denied(
                    &r,
                    &format!("the attacker's {op} on the victim's key {victim_key} with {extra}"),
                );
            }
            let r = f.nobody.call(f.ekms, op, &plain).await;
            checks.denied(
                &r,
                &format!("{op} on the victim's key {victim_key} as the principal without a policy"),
            );
        }
    }
    checks.same(&f.victim_key_state().await, &before, "the victim's key");
    f.victim_can_decrypt(&mut checks, "the victim's Decrypt after the attempts")
        .await;

    // Positive controls: each owner does every operation on its own key, the attacker with the
    // same extra members (naming its second key).
    let delegating = delegating_policy();
    for op in KEY_OPERATIONS {
        let mut body = key_operation(op, &f.attacker_key, &f.attacker.arn, &delegating);
        for (member, _) in &other_members {
            body[*member] = json!(if *member == "AliasName" {
                f.attacker_alias.clone()
            } else {
                f.attacker_key2.clone()
            });
        }
        let r = f.attacker.call(f.ekms, op, &body).await;
        checks.ok(
            &r,
            &format!("the attacker's {op} on its own key with extra members"),
        );
        let body = key_operation(op, &f.victim_key, &f.victim.arn, &delegating);
        let r = f.victim.call(f.ekms, op, &body).await;
        checks.ok(&r, &format!("the victim's {op} on its own key"));
    }
    checks.finish();
}

// ---- 9. Principal administration scoped by resource ----

/// The access key ids of principal `name`, as dev's ListPrincipals shows them.
async fn access_keys_of(ekms: &Ekms, name: &str) -> Value {
    let out = dev(ekms)
        .must(ekms, "Ekms.ListPrincipals", &json!({"Limit": 1000}))
        .await;
    out["Principals"]
        .as_array()
        .expect("Principals")
        .iter()
        .find(|p| p["UserName"] == name)
        .map_or(Value::Null, |p| p["AccessKeyIds"].clone())
}

#[tokio::test]
async fn principal_administration_is_scoped_by_the_principal_resource() {
    let ekms = Ekms::shared();
    let mut checks = Checks::default();
    let operator = create_principal(
        ekms,
        &unique("operator"),
        Some(&identity_policy(
            &[format!("arn:aws:iam::{ACCOUNT}:user/app-*")],
            "ekms:CreateAccessKey",
        )),
    )
    .await;
    let app = create_principal(ekms, &unique("app"), None).await;
    let other = create_principal(ekms, &unique("ops"), None).await;
    let dev_keys = access_keys_of(ekms, "dev").await;
    let other_keys = access_keys_of(ekms, &other.name).await;

    for name in ["dev", other.name.as_str()] {
        let r = operator
            .call(ekms, "Ekms.CreateAccessKey", &json!({"UserName": name}))
            .await;
        checks.denied(&r, &format!("the operator's CreateAccessKey for {name}"));
    }
    // Actions the policy does not name are refused even on app-*.
    for (op, body) in [
        ("Ekms.DeletePrincipal", json!({"UserName": app.name})),
        (
            "Ekms.PutPrincipalPolicy",
            json!({"UserName": app.name, "Policy": identity_policy(&["*".to_owned()], "*").to_string()}),
        ),
    ] {
        let r = operator.call(ekms, op, &body).await;
        checks.denied(&r, &format!("the operator's {op} for {}", app.name));
    }
    checks.same(
        &access_keys_of(ekms, "dev").await,
        &dev_keys,
        "dev's access keys",
    );
    checks.same(
        &access_keys_of(ekms, &other.name).await,
        &other_keys,
        "the other principal's access keys",
    );

    // Positive control: an access key for app-*, which then authenticates as app.
    let r = operator
        .call(ekms, "Ekms.CreateAccessKey", &json!({"UserName": app.name}))
        .await;
    if let Some(out) = checks.ok(
        &r,
        &format!("the operator's CreateAccessKey for {}", app.name),
    ) {
        let new = Principal {
            name: app.name.clone(),
            arn: app.arn.clone(),
            access_key_id: out["AccessKeyId"].as_str().unwrap_or_default().to_owned(),
            secret: out["SecretAccessKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        // Authenticated as app (no policy: denied, but not UnrecognizedClient).
        let r = new
            .call(ekms, "GenerateRandom", &json!({"NumberOfBytes": 8}))
            .await;
        checks.denied(&r, "GenerateRandom with app's new access key");
    }
    checks.finish();
}

// ---- 10. A re-created principal does not inherit its namesake's grants ----

#[tokio::test]
async fn a_recreated_principal_does_not_inherit_the_grants_of_its_namesake() {
    let f = Fixture::new().await;
    let admin = dev(f.ekms);
    let mut checks = Checks::default();
    let name = unique("p");
    let first = create_principal(f.ekms, &name, None).await;
    f.victim
        .must(
            f.ekms,
            "CreateGrant",
            &json!({"KeyId": f.victim_key, "GranteePrincipal": first.arn, "Operations": ["Encrypt"]}),
        )
        .await;
    let encrypt = json!({"KeyId": f.victim_key, "Plaintext": b64(b"x")});
    // Positive control: the grant works for the principal it was made for.
    let r = first.call(f.ekms, "Encrypt", &encrypt).await;
    checks.ok(&r, "Encrypt by the grantee");

    admin
        .must(f.ekms, "Ekms.DeletePrincipal", &json!({"UserName": name}))
        .await;
    let second = create_principal(f.ekms, &name, None).await;
    let r = second.call(f.ekms, "Encrypt", &encrypt).await;
    checks.denied(&r, "Encrypt by a new principal with the grantee's name");
    let r = first.call(f.ekms, "Encrypt", &encrypt).await;
    checks.code(
        &r,
        &["UnrecognizedClientException"],
        "Encrypt with the deleted principal's access key",
    );
    checks.finish();
}

// ---- 11. X-Amz-Target must be signed ----

#[tokio::test]
async fn a_signature_that_leaves_x_amz_target_unsigned_is_refused() {
    let f = Fixture::new().await;
    let mut checks = Checks::default();
    let body = json!({"KeyId": f.victim_key}).to_string();
    // Signed by the victim with content-type, host and x-amz-date only (as a DescribeKey
    // would be, had the target not been signed), then sent as DisableKey.
    let request = f.ekms.raw_request(None, body.as_bytes(), &f.victim.sign());
    let text = String::from_utf8(request).expect("an ASCII request");
    let authorization = text
        .lines()
        .find(|l| l.starts_with("authorization:"))
        .expect("a signed request");
    assert!(
        authorization.contains("SignedHeaders=content-type;host;x-amz-date,"),
        "{authorization}"
    );
    let (first_line, rest) = text.split_once("\r\n").expect("a request line");
    let replayed = format!("{first_line}\r\nx-amz-target: TrentService.DisableKey\r\n{rest}");
    let r = send_raw(f.ekms.addr, replayed.as_bytes())
        .await
        .expect("a response");
    checks.code(
        &r,
        &[
            "InvalidSignatureException",
            "IncompleteSignature",
            "IncompleteSignatureException",
        ],
        "DisableKey signed without x-amz-target in SignedHeaders",
    );
    let state = f.victim_key_state().await;
    checks.check(state["KeyMetadata"]["KeyState"] == "Enabled", || {
        format!(
            "the victim's key after the replay: {}",
            state["KeyMetadata"]
        )
    });
    // Positive control: signed with the target, the same body works.
    let r = f
        .ekms
        .raw(
            Some("TrentService.DescribeKey"),
            body.as_bytes(),
            f.victim.sign(),
        )
        .await;
    checks.ok(&r, "DescribeKey signed with x-amz-target");
    checks.finish();
}
