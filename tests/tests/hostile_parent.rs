//! A hostile parent can deny service and nothing more.
//!
//! The parent (relay + store) and the mock enclave run as processes of their own, with the
//! hostile proxy of [`ekms_tests::hostile`] on the store channel between them. A seeded
//! workload (keys, aliases, principals, grants, disabled and schedule-deleted keys, rotations,
//! ciphertexts) runs while the proxy misbehaves on commits; the enclave is restarted while the
//! proxy answers the unseal's load from mixes of old and current snapshots, altered, dropped,
//! repeated or truncated. After each unseal the invariants are checked against what clients
//! were told:
//!
//! 1. no tampered record loads silently: a load that is no state the enclave sealed is refused
//!    (by name), or records of it are (status, audit log);
//! 2. no acknowledged write is lost unless the enclave says so: refused records, or an audit
//!    chain that shows the gap (`ekms audit verify`, with `--endpoint` before the restart);
//! 3. nothing deleted, destroyed or superseded comes back (deleted principals do not
//!    authenticate, deleted aliases do not resolve, revoked grants do not allow, disabled keys
//!    stay disabled, schedule-deleted keys stay pending deletion) unless the whole store was
//!    rolled back, which the audit chain must then show;
//! 4. a commit the parent fails or garbles stops the enclave, which names why; one it answers
//!    `Unavailable` (a full audit disk), or a channel it closes (a parent restarting), makes the
//!    enclave take the store's state again in place, and stop rather than take an older state
//!    than it knows durable;
//! 5. the enclave never panics, and its resident memory stays bounded.
//!
//! Seeds are fixed here; `scripts/hostile-campaign.sh` runs the ignored campaign test with
//! random ones (`EKMS_HOSTILE_SEED`, `EKMS_HOSTILE_ROUNDS`) and prints any failing seed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantOperation, KeyState};
use ekms_tests::hostile::{CommitPlan, HostileProxy, LoadPlan, LoadReport, Rng};
use ekms_tests::{ekms_cli, ekms_status, error_code, sdk_client_once, CliOutput, Deployment};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Resident memory the enclave may reach (debug build, small stores): far above what it
/// needs, far below what a leak per request or per load would reach.
const RSS_LIMIT_KIB: u64 = 400 * 1024;
/// How long an enclave whose store failed may take to stop.
const FAIL_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an enclave whose store channel closed may take to serve again on a new one.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);
/// Time for the enclave's idle checkpoint to cover the last audit records.
const SETTLE: Duration = Duration::from_millis(250);

/// What clients were told about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Enabled,
    Disabled,
    PendingDeletion,
}

#[derive(Debug, Clone)]
struct KeyFact {
    /// `None`: a change to it was not acknowledged either way.
    state: Option<Expect>,
}

#[derive(Debug, Clone)]
struct AliasFact {
    /// `Some(None)`: deleted; `None`: unknown.
    target: Option<Option<String>>,
}

#[derive(Debug, Clone)]
struct PrincipalFact {
    access_key_id: String,
    secret: String,
    alive: Option<bool>,
}

#[derive(Debug, Clone)]
struct GrantFact {
    key: String,
    grantee: String,
    alive: Option<bool>,
}

#[derive(Debug, Clone)]
struct Ciphertext {
    key: String,
    plaintext: Vec<u8>,
    blob: Vec<u8>,
}

/// Everything clients were told succeeded, as it must be after any restart.
#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<String, KeyFact>,
    aliases: BTreeMap<String, AliasFact>,
    principals: BTreeMap<String, PrincipalFact>,
    grants: BTreeMap<String, GrantFact>,
    ciphertexts: Vec<Ciphertext>,
    acknowledged: usize,
    failed: usize,
}

impl Model {
    fn keys_in(&self, state: Expect) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(_, k)| k.state == Some(state))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn live_aliases(&self) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(_, a)| matches!(a.target, Some(Some(_))))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn live_principals(&self) -> Vec<String> {
        self.principals
            .iter()
            .filter(|(_, p)| p.alive == Some(true))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn live_grants(&self) -> Vec<String> {
        self.grants
            .iter()
            .filter(|(_, g)| g.alive == Some(true))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// What an unseal did.
#[derive(Debug)]
enum Unsealed {
    /// The load was refused: the enclave stays sealed (the CLI's output).
    Refused(CliOutput),
    /// Loaded, with this many records refused.
    Loaded { refused: u64 },
}

/// What a check saw the enclave serve.
#[derive(Debug, Default)]
struct Observed {
    /// Key id to its state (`Some(None)`: another state); `None`: not found.
    keys: BTreeMap<String, Option<Option<Expect>>>,
    /// Alias to the key it names, `None`: not found.
    aliases: BTreeMap<String, Option<String>>,
    /// Principal to whether its access key authenticates.
    principals: BTreeMap<String, bool>,
    /// Grant to whether its key lists it.
    grants: BTreeMap<String, bool>,
    /// Ciphertexts (by index) that no longer decrypt.
    bad_ciphertexts: std::collections::BTreeSet<usize>,
}

/// What a check found wrong with what clients were told.
#[derive(Debug, Default)]
struct Findings {
    /// Acknowledged changes missing.
    lost: Vec<String>,
    /// Deleted, destroyed or superseded state back.
    back: Vec<String>,
}

/// The deployment behind the proxy, and what clients were told.
struct Stack {
    d: Deployment,
    proxy: HostileProxy,
    admin: (String, String),
    rng: Rng,
    model: Model,
    label: String,
    names: usize,
    peak_rss_kib: u64,
    /// Why the last witness (`audit verify --endpoint` before a restart) failed, if it did.
    witness_failed: Option<String>,
    /// The audit log verified at the last check.
    audit_ok: bool,
    /// The proxy's first session of this boot of the enclave (a boot spans several when the
    /// enclave recovers on a new connection).
    boot_from: usize,
}

/// What the proxy did over one boot of the enclave (its sessions together).
#[derive(Debug, Default)]
struct Boot {
    altered: usize,
    faked: usize,
    fatal: Vec<String>,
    lost: Vec<String>,
}

/// The first line of a command's error output (without any backtrace after it).
fn first_line(text: &str) -> String {
    text.trim().lines().next().unwrap_or_default().to_owned()
}

fn account() -> &'static str {
    ekms_tests::ACCOUNT
}

impl Stack {
    /// Parent, proxy (honest) and enclave; `ekms init` 1-of-1 through the proxy.
    fn start(label: &str, seed: u64) -> Stack {
        let mut d = Deployment::new();
        d.pin_enclave_binary();
        d.start_parent();
        let proxy = HostileProxy::start(
            &d.dir().join("hostile-store.sock"),
            &d.store_address(),
            seed,
        );
        d.start_enclave_via(proxy.address());
        let admin = d.init_1_of_1();
        Stack {
            d,
            proxy,
            admin,
            rng: Rng::new(seed ^ 0x5EED_0FC1_1E47),
            model: Model::default(),
            label: format!("{label} (seed {seed})"),
            names: 0,
            peak_rss_kib: 0,
            witness_failed: None,
            audit_ok: true,
            boot_from: 0,
        }
    }

    /// The proxy's sessions of this boot, together.
    fn boot(&self) -> Boot {
        let mut boot = Boot::default();
        for s in self.proxy.sessions().into_iter().skip(self.boot_from) {
            boot.altered += s.altered;
            boot.faked += s.faked.len();
            boot.fatal.extend(s.fatal);
            boot.lost.extend(s.lost);
        }
        boot
    }

    /// A channel the proxy closed (as a parent that restarts does): the enclave takes the
    /// store's state again on a new connection, and serves. Waits for that (or for it to
    /// stop: a store older than what it knows durable), commits forwarded honestly.
    async fn await_recovery(&mut self) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            if !self.enclave_running() {
                return;
            }
            let last = self.proxy.last_session();
            if last.lost.is_empty() {
                let out = ekms_cli(["status", "--endpoint", &self.d.endpoint]);
                let serving = out.success()
                    && out.json()["State"] == "Unsealed"
                    && self.admin().list_keys().send().await.is_ok();
                if serving {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the enclave neither recovered nor stopped after {:?}{}",
                last.lost,
                self.context()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn admin(&self) -> aws_sdk_kms::Client {
        sdk_client_once(&self.d.endpoint, &self.admin.0, &self.admin.1)
    }

    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}-{}", self.names)
    }

    /// The current enclave's log so far (empty without one).
    fn enclave_log(&self) -> String {
        self.d
            .enclave
            .as_ref()
            .map(ekms_tests::Daemon::log_text)
            .unwrap_or_default()
    }

    fn enclave_running(&mut self) -> bool {
        self.d.enclave.as_mut().is_some_and(|e| e.running())
    }

    /// For failure messages: the seed, what the proxy did, the enclave's last lines.
    fn context(&self) -> String {
        let mut out = format!("\n--- {} ---\nproxy:\n", self.label);
        for s in self.proxy.sessions() {
            out.push_str(&format!(
                "  connection {}: {} commits, load {:?}, fatal {:?}, faked {:?}\n",
                s.id,
                s.commits,
                s.load.as_ref().map(|l| &l.description),
                s.fatal,
                s.faked
            ));
            for e in s.events.iter().rev().take(12).rev() {
                out.push_str(&format!("    {e}\n"));
            }
        }
        if let Some(e) = &self.d.enclave {
            out.push_str(&format!("enclave log (tail):\n{}\n", e.log_tail(25)));
        }
        out
    }

    /// Samples the enclave's resident memory (and keeps the peak), asserting the bound.
    fn sample_rss(&mut self) {
        let Some(pid) = self.d.enclave.as_ref().map(ekms_tests::Daemon::pid) else {
            return;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        else {
            return;
        };
        self.peak_rss_kib = self.peak_rss_kib.max(kib);
        assert!(
            kib < RSS_LIMIT_KIB,
            "the enclave's resident memory reached {kib} KiB (limit {RSS_LIMIT_KIB}){}",
            self.context()
        );
    }

    /// No enclave log of this deployment shows a panic.
    fn assert_no_panic(&mut self) {
        let mut logs: Vec<_> = std::fs::read_dir(self.d.dir())
            .expect("the deployment dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("enclave-") && n.ends_with(".log"))
            })
            .collect();
        logs.sort();
        for log in &logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                !text.contains("panicked"),
                "the enclave panicked ({}):\n{}{}",
                log.display(),
                text.lines()
                    .filter(|l| l.contains("panicked"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.context()
            );
        }
    }

    /// `ekms audit verify` on the parent's audit log (after the last records settled), with
    /// the enclave's durable head when `endpoint`.
    fn audit_verify(&self, endpoint: bool) -> CliOutput {
        std::thread::sleep(SETTLE);
        let mut args: Vec<std::ffi::OsString> = vec![
            "audit".into(),
            "verify".into(),
            self.d.dir().join("store").join("audit.jsonl").into(),
            "--expect-pcrs".into(),
            self.d.pcrs().into(),
            "--root".into(),
            self.d.root().into(),
        ];
        if endpoint {
            args.push("--endpoint".into());
            args.push(self.d.endpoint.clone().into());
        }
        ekms_cli(args)
    }

    /// The audit log's lines around the line `why` names (`line N: ...`), shortened.
    fn audit_excerpt(&self, why: &str) -> String {
        let Some(n) = why
            .split("line ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.trim().parse::<usize>().ok())
        else {
            return String::new();
        };
        let text = std::fs::read_to_string(self.d.dir().join("store").join("audit.jsonl"))
            .unwrap_or_default();
        text.lines()
            .enumerate()
            .skip(n.saturating_sub(6))
            .take(8)
            .map(|(i, l)| {
                let v: Value = serde_json::from_str(l).unwrap_or_default();
                format!(
                    "  line {}: {} seq {} {}\n",
                    i + 1,
                    v["type"],
                    v["seq"],
                    v["record"]["eventName"]
                )
            })
            .collect()
    }

    // ----- the workload -----

    async fn principal_call(&self, target: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .d
            .call_signed(
                target,
                body.to_string().as_bytes(),
                &self.admin.0,
                &self.admin.1,
            )
            .await
            .map_err(|e| e.to_string())?;
        if response.status == 200 {
            serde_json::from_slice(&response.body).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "{} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ))
        }
    }

    fn acknowledged(&mut self, ok: bool) {
        if ok {
            self.model.acknowledged += 1;
        } else {
            self.model.failed += 1;
        }
    }

    async fn create_key(&mut self) -> Option<String> {
        let out = self
            .admin()
            .create_key()
            .description("hostile")
            .send()
            .await;
        let id = out
            .ok()
            .and_then(|o| o.key_metadata().map(|m| m.key_id().to_owned()));
        self.acknowledged(id.is_some());
        if let Some(id) = &id {
            self.model.keys.insert(
                id.clone(),
                KeyFact {
                    state: Some(Expect::Enabled),
                },
            );
        }
        id
    }

    async fn encrypt(&mut self, key: &str, rotate_first: bool) {
        let client = self.admin();
        if rotate_first {
            let rotated = client.rotate_key_on_demand().key_id(key).send().await;
            self.acknowledged(rotated.is_ok());
        }
        let plaintext = format!("{} {}", self.label, self.rng.next_u64()).into_bytes();
        let out = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(plaintext.clone()))
            .send()
            .await;
        self.acknowledged(out.is_ok());
        if let Ok(out) = out {
            let blob = out
                .ciphertext_blob()
                .expect("Encrypt returns a ciphertext")
                .as_ref()
                .to_vec();
            self.model.ciphertexts.push(Ciphertext {
                key: key.to_owned(),
                plaintext,
                blob,
            });
        }
    }

    async fn set_key_state(&mut self, key: &str, to: Expect) {
        let client = self.admin();
        let from = self.model.keys[key].state;
        let ok = match (from, to) {
            (Some(Expect::Enabled), Expect::Disabled) => {
                client.disable_key().key_id(key).send().await.is_ok()
            }
            (Some(Expect::Disabled), Expect::Enabled) => {
                client.enable_key().key_id(key).send().await.is_ok()
            }
            (Some(Expect::Enabled | Expect::Disabled), Expect::PendingDeletion) => client
                .schedule_key_deletion()
                .key_id(key)
                .pending_window_in_days(7)
                .send()
                .await
                .is_ok(),
            // AWS: a cancelled deletion leaves the key disabled.
            (Some(Expect::PendingDeletion), Expect::Disabled) => client
                .cancel_key_deletion()
                .key_id(key)
                .send()
                .await
                .is_ok(),
            _ => return,
        };
        self.acknowledged(ok);
        self.model.keys.get_mut(key).expect("a known key").state = ok.then_some(to);
    }

    async fn create_alias(&mut self, key: &str) -> String {
        let name = format!("alias/{}", self.name("hostile"));
        let ok = self
            .admin()
            .create_alias()
            .alias_name(&name)
            .target_key_id(key)
            .send()
            .await
            .is_ok();
        self.acknowledged(ok);
        self.model.aliases.insert(
            name.clone(),
            AliasFact {
                target: ok.then(|| Some(key.to_owned())),
            },
        );
        name
    }

    async fn update_alias(&mut self, alias: &str, key: &str) {
        let ok = self
            .admin()
            .update_alias()
            .alias_name(alias)
            .target_key_id(key)
            .send()
            .await
            .is_ok();
        self.acknowledged(ok);
        self.model
            .aliases
            .get_mut(alias)
            .expect("a known alias")
            .target = ok.then(|| Some(key.to_owned()));
    }

    async fn delete_alias(&mut self, alias: &str) {
        let ok = self
            .admin()
            .delete_alias()
            .alias_name(alias)
            .send()
            .await
            .is_ok();
        self.acknowledged(ok);
        self.model
            .aliases
            .get_mut(alias)
            .expect("a known alias")
            .target = ok.then_some(None);
    }

    async fn create_principal(&mut self) -> Option<String> {
        let name = self.name("hostile-user");
        let out = self
            .principal_call("Ekms.CreatePrincipal", &json!({ "UserName": name }))
            .await;
        self.acknowledged(out.is_ok());
        let out = out.ok()?;
        self.model.principals.insert(
            name.clone(),
            PrincipalFact {
                access_key_id: out["AccessKeyId"].as_str()?.to_owned(),
                secret: out["SecretAccessKey"].as_str()?.to_owned(),
                alive: Some(true),
            },
        );
        Some(name)
    }

    async fn delete_principal(&mut self, name: &str) {
        let ok = self
            .principal_call("Ekms.DeletePrincipal", &json!({ "UserName": name }))
            .await
            .is_ok();
        self.acknowledged(ok);
        self.model
            .principals
            .get_mut(name)
            .expect("a known principal")
            .alive = ok.then_some(false);
    }

    async fn create_grant(&mut self, key: &str, grantee: &str) -> Option<String> {
        let out = self
            .admin()
            .create_grant()
            .key_id(key)
            .grantee_principal(format!("arn:aws:iam::{}:user/{grantee}", account()))
            .operations(GrantOperation::Encrypt)
            .send()
            .await;
        self.acknowledged(out.is_ok());
        let id = out.ok()?.grant_id()?.to_owned();
        self.model.grants.insert(
            id.clone(),
            GrantFact {
                key: key.to_owned(),
                grantee: grantee.to_owned(),
                alive: Some(true),
            },
        );
        Some(id)
    }

    async fn revoke_grant(&mut self, grant: &str) {
        let key = self.model.grants[grant].key.clone();
        let ok = self
            .admin()
            .revoke_grant()
            .key_id(&key)
            .grant_id(grant)
            .send()
            .await
            .is_ok();
        self.acknowledged(ok);
        self.model
            .grants
            .get_mut(grant)
            .expect("a known grant")
            .alive = ok.then_some(false);
    }

    /// `ops` random operations (fewer if the enclave stops).
    async fn workload(&mut self, ops: usize) {
        for _ in 0..ops {
            if !self.enclave_running() {
                return;
            }
            let enabled = self.model.keys_in(Expect::Enabled);
            let roll = self.rng.below(100);
            let pick = |rng: &mut Rng, v: &[String]| rng.pick(v).cloned();
            match roll {
                _ if enabled.len() < 2 || roll < 12 => {
                    self.create_key().await;
                }
                12..=23 => {
                    if let Some(k) = pick(&mut self.rng, &enabled) {
                        self.encrypt(&k, false).await;
                    }
                }
                24..=27 => {
                    if let Some(k) = pick(&mut self.rng, &enabled) {
                        self.encrypt(&k, true).await;
                    }
                }
                28..=37 => {
                    if let Some(k) = pick(&mut self.rng, &enabled) {
                        self.create_alias(&k).await;
                    }
                }
                38..=43 => {
                    let aliases = self.model.live_aliases();
                    if let (Some(a), Some(k)) =
                        (pick(&mut self.rng, &aliases), pick(&mut self.rng, &enabled))
                    {
                        self.update_alias(&a, &k).await;
                    }
                }
                44..=49 => {
                    let aliases = self.model.live_aliases();
                    if let Some(a) = pick(&mut self.rng, &aliases) {
                        self.delete_alias(&a).await;
                    }
                }
                50..=55 => {
                    if let Some(k) = pick(&mut self.rng, &enabled) {
                        self.set_key_state(&k, Expect::Disabled).await;
                    }
                }
                56..=58 => {
                    let disabled = self.model.keys_in(Expect::Disabled);
                    if let Some(k) = pick(&mut self.rng, &disabled) {
                        self.set_key_state(&k, Expect::Enabled).await;
                    }
                }
                59..=63 => {
                    if let Some(k) = pick(&mut self.rng, &enabled) {
                        self.set_key_state(&k, Expect::PendingDeletion).await;
                    }
                }
                64..=65 => {
                    let pending = self.model.keys_in(Expect::PendingDeletion);
                    if let Some(k) = pick(&mut self.rng, &pending) {
                        self.set_key_state(&k, Expect::Disabled).await;
                    }
                }
                66..=74 => {
                    self.create_principal().await;
                }
                75..=80 => {
                    let principals = self.model.live_principals();
                    if let Some(p) = pick(&mut self.rng, &principals) {
                        self.delete_principal(&p).await;
                    }
                }
                81..=91 => {
                    let principals = self.model.live_principals();
                    if let (Some(k), Some(p)) = (
                        pick(&mut self.rng, &enabled),
                        pick(&mut self.rng, &principals),
                    ) {
                        self.create_grant(&k, &p).await;
                    }
                }
                _ => {
                    let grants = self.model.live_grants();
                    if let Some(g) = pick(&mut self.rng, &grants) {
                        self.revoke_grant(&g).await;
                    }
                }
            }
        }
        self.sample_rss();
    }

    // ----- restarts -----

    /// Ends this boot of the enclave: the witness first (`audit verify --endpoint`, commits
    /// forwarded honestly), if it still runs; then `kill -9`. A boot that stopped by itself
    /// must have been told to (the proxy failed, dropped or garbled a commit) and must name
    /// why.
    async fn end_boot(&mut self) {
        self.proxy.set_commit_plan(CommitPlan::honest());
        if !self.boot().lost.is_empty() {
            self.await_recovery().await;
        }
        let session = self.boot();
        let running = self.enclave_running();
        if session.altered > 0 || session.faked > 0 || !session.fatal.is_empty() {
            // Commits reordered, duplicated, altered or never written: the log may no longer
            // verify, and need not.
            self.audit_ok = false;
        }
        if running && !session.fatal.is_empty() {
            // A failed commit stops the enclave: give it the time to.
            let enclave = self.d.enclave.as_mut().expect("an enclave");
            assert!(
                enclave.wait_exit(FAIL_STOP_TIMEOUT).is_some(),
                "the enclave kept running after {:?}{}",
                session.fatal,
                self.context()
            );
        }
        if self.enclave_running() && (session.altered > 0 || session.faked > 0) {
            // A commit acknowledged and not written holds every later answer until a later
            // commit is durable: one audited request, forwarded honestly, releases them.
            let _ = self.admin().list_keys().send().await;
        }
        let mut state = None;
        if self.enclave_running() {
            let out = ekms_cli(["status", "--endpoint", &self.d.endpoint]);
            if out.success() {
                state = out.json()["State"].as_str().map(str::to_owned);
            } else {
                // Only an enclave that is stopping (an answer it did not expect from the
                // store, say) fails to answer its status.
                let enclave = self.d.enclave.as_mut().expect("an enclave");
                assert!(
                    enclave.wait_exit(FAIL_STOP_TIMEOUT).is_some(),
                    "`ekms status` failed ({}) and the enclave keeps running{}",
                    first_line(&out.stderr),
                    self.context()
                );
            }
        }
        if self.enclave_running() && state.as_deref() != Some("Unsealed") {
            // Sealed (its load refused): nothing to witness.
            self.witness_failed = None;
            self.d
                .enclave
                .as_mut()
                .expect("an enclave")
                .stop_with(Signal::SIGKILL);
        } else if self.enclave_running() {
            self.sample_rss();
            // The witness, where it can tell something: after commits the proxy altered or
            // acknowledged without forwarding, or (one boot in four) to show that it passes
            // otherwise.
            let id = self.proxy.last_session().id;
            if session.altered == 0 && session.fatal.is_empty() && !id.is_multiple_of(4) {
                self.witness_failed = None;
                self.d
                    .enclave
                    .as_mut()
                    .expect("an enclave")
                    .stop_with(Signal::SIGKILL);
                self.assert_no_panic();
                return;
            }
            let witness = self.audit_verify(true);
            self.witness_failed = (!witness.success()).then(|| first_line(&witness.stderr));
            if self.audit_ok {
                // A sound log, and every commit of this boot forwarded as it was: the log
                // reaches the head.
                assert!(
                    witness.success(),
                    "`ekms audit verify --endpoint` failed with every commit of this boot \
                     forwarded as it was: {witness:?}{}",
                    self.context()
                );
            }
            self.d
                .enclave
                .as_mut()
                .expect("an enclave")
                .stop_with(Signal::SIGKILL);
        } else {
            let log = self.enclave_log();
            assert!(
                log.contains("durable store failed"),
                "the enclave stopped without naming a store failure{}",
                self.context()
            );
            eprintln!(
                "{}: the enclave stopped by itself after {:?}: {}",
                self.label,
                session.fatal,
                log.lines()
                    .find(|l| l.contains("durable store failed"))
                    .unwrap_or_default()
                    .trim()
            );
            self.witness_failed = None;
        }
        self.assert_no_panic();
    }

    /// Starts the enclave again with the proxy answering the load as `load` says, and
    /// unseals.
    async fn restart(&mut self, load: LoadPlan) -> Unsealed {
        self.end_boot().await;
        self.proxy.set_commit_plan(CommitPlan::honest());
        self.proxy.set_load_plan(load);
        let via = self.proxy.address().to_owned();
        self.boot_from = self.proxy.sessions().len();
        self.d.start_enclave_via(&via);
        let out = self.d.unseal();
        self.proxy.set_load_plan(LoadPlan::Honest);
        let status = ekms_status(&self.d.endpoint);
        if out.success() {
            assert_eq!(status["State"], "Unsealed", "{status}{}", self.context());
            Unsealed::Loaded {
                refused: status["RefusedRecordCount"].as_u64().unwrap_or(u64::MAX),
            }
        } else {
            assert_eq!(
                status["State"],
                "Sealed",
                "an unseal that failed left the enclave {status}: {out:?}{}",
                self.context()
            );
            Unsealed::Refused(out)
        }
    }

    // ----- the checks -----

    /// What the enclave now serves, against what clients were told; and what it serves.
    async fn findings(&self) -> (Findings, Observed) {
        let admin = self.admin();
        let mut f = Findings::default();
        let mut seen = Observed::default();
        for (id, fact) in &self.model.keys {
            match admin.describe_key().key_id(id).send().await {
                Ok(out) => {
                    let state = out.key_metadata().and_then(|m| m.key_state()).cloned();
                    let now = match state {
                        Some(KeyState::Enabled) => Some(Expect::Enabled),
                        Some(KeyState::Disabled) => Some(Expect::Disabled),
                        Some(KeyState::PendingDeletion) => Some(Expect::PendingDeletion),
                        _ => None,
                    };
                    seen.keys.insert(id.clone(), Some(now));
                    match fact.state {
                        Some(expected) if now != Some(expected) => {
                            let text =
                                format!("key {id}: {state:?}, clients were told {expected:?}");
                            if expected == Expect::Enabled {
                                f.lost.push(text);
                            } else {
                                f.back.push(text);
                            }
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    let code = error_code(e);
                    if code == "NotFoundException" {
                        seen.keys.insert(id.clone(), None);
                    }
                    f.lost.push(format!("key {id}: {code}"));
                }
            }
        }
        for (i, c) in self.model.ciphertexts.iter().enumerate() {
            if self.model.keys[&c.key].state != Some(Expect::Enabled)
                || seen.keys.get(&c.key) != Some(&Some(Some(Expect::Enabled)))
            {
                continue;
            }
            let wrong = match admin
                .decrypt()
                .ciphertext_blob(Blob::new(c.blob.clone()))
                .send()
                .await
            {
                Ok(out) if out.plaintext().map(Blob::as_ref) == Some(&c.plaintext[..]) => None,
                Ok(_) => Some("decrypts to something else".to_owned()),
                Err(e) => Some(format!("does not decrypt: {}", error_code(e))),
            };
            if let Some(why) = wrong {
                seen.bad_ciphertexts.insert(i);
                f.lost.push(format!("a ciphertext of {} {why}", c.key));
            }
        }
        for (name, fact) in &self.model.aliases {
            let found = match admin.describe_key().key_id(name).send().await {
                Ok(out) => Some(
                    out.key_metadata()
                        .map(|m| m.key_id().to_owned())
                        .unwrap_or_default(),
                ),
                Err(e) => {
                    let code = error_code(e);
                    if code != "NotFoundException" {
                        f.lost.push(format!("{name}: {code}"));
                        continue;
                    }
                    None
                }
            };
            seen.aliases.insert(name.clone(), found.clone());
            match (&fact.target, &found) {
                (Some(None), Some(k)) => f.back.push(format!("deleted {name} resolves to {k}")),
                (Some(Some(k)), Some(now)) if k != now => f.back.push(format!(
                    "{name} resolves to {now}, clients were told it names {k}"
                )),
                (Some(Some(k)), None) => f.lost.push(format!("{name} (to {k}) is gone")),
                _ => {}
            }
        }
        for (name, fact) in &self.model.principals {
            let client = sdk_client_once(&self.d.endpoint, &fact.access_key_id, &fact.secret);
            let authenticates = match client.list_keys().send().await {
                Ok(_) => true,
                Err(e) => match error_code(e).as_str() {
                    "AccessDeniedException" => true,
                    "UnrecognizedClientException" | "InvalidSignatureException" => false,
                    other => {
                        f.lost
                            .push(format!("principal {name}: inconclusive ({other})"));
                        continue;
                    }
                },
            };
            seen.principals.insert(name.clone(), authenticates);
            match (fact.alive, authenticates) {
                (Some(false), true) => f.back.push(format!(
                    "deleted principal {name}'s access key {} authenticates",
                    fact.access_key_id
                )),
                (Some(true), false) => f.lost.push(format!(
                    "principal {name}'s access key {} does not authenticate",
                    fact.access_key_id
                )),
                _ => {}
            }
        }
        let mut listed: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
        for fact in self.model.grants.values() {
            if listed.contains_key(&fact.key) {
                continue;
            }
            let ids = match admin
                .list_grants()
                .key_id(&fact.key)
                .limit(100)
                .send()
                .await
            {
                Ok(o) => Some(
                    o.grants()
                        .iter()
                        .filter_map(|g| g.grant_id().map(str::to_owned))
                        .collect(),
                ),
                Err(e) => {
                    let code = error_code(e);
                    if seen.keys.get(&fact.key).is_some_and(Option::is_some) {
                        f.lost.push(format!("ListGrants of {}: {code}", fact.key));
                    }
                    None
                }
            };
            listed.insert(fact.key.clone(), ids);
        }
        for (id, fact) in &self.model.grants {
            let Some(Some(ids)) = listed.get(&fact.key) else {
                continue;
            };
            let now = ids.contains(id);
            seen.grants.insert(id.clone(), now);
            match (fact.alive, now) {
                (Some(false), true) => f.back.push(format!(
                    "revoked grant {id} (key {}, to {}) is listed",
                    fact.key, fact.grantee
                )),
                (Some(true), false) => f.lost.push(format!(
                    "grant {id} (key {}, to {}) is gone",
                    fact.key, fact.grantee
                )),
                _ => {}
            }
        }
        // A revoked grant does not allow: its grantee, alive, with no other grant on the key
        // that is live or unknown, cannot encrypt under it.
        for (id, fact) in &self.model.grants {
            if fact.alive != Some(false) {
                continue;
            }
            let others = self.model.grants.iter().any(|(other, g)| {
                other != id
                    && g.key == fact.key
                    && g.grantee == fact.grantee
                    && g.alive != Some(false)
            });
            let grantee = &self.model.principals[&fact.grantee];
            if others
                || grantee.alive != Some(true)
                || seen.principals.get(&fact.grantee) != Some(&true)
                || seen.keys.get(&fact.key) != Some(&Some(Some(Expect::Enabled)))
            {
                continue;
            }
            let client = sdk_client_once(&self.d.endpoint, &grantee.access_key_id, &grantee.secret);
            if client
                .encrypt()
                .key_id(&fact.key)
                .plaintext(Blob::new("x"))
                .send()
                .await
                .is_ok()
            {
                f.back.push(format!(
                    "revoked grant {id}: {} still encrypts under {}",
                    fact.grantee, fact.key
                ));
            }
        }
        (f, seen)
    }

    /// Checks the invariants after an unseal: `outcome`, what the proxy served, what the
    /// enclave serves now. Returns whether the state loaded (and was checked).
    async fn check(&mut self, outcome: &Unsealed) -> bool {
        self.sample_rss();
        let report: Option<LoadReport> = self.proxy.last_session().load;
        let report = report.unwrap_or_else(|| {
            panic!(
                "the unseal loaded nothing: {outcome:?}, status {}{}",
                ekms_status(&self.d.endpoint),
                self.context()
            )
        });
        let broken_frame = matches!(report.plan, LoadPlan::Truncate | LoadPlan::Garble);
        let refused = match outcome {
            Unsealed::Refused(out) => {
                // A refused load names what was wrong: to the operator when the records are
                // wrong; in the enclave's log when the channel broke (the operator sees an
                // internal error).
                let text = format!("{}{}", out.stdout, out.stderr);
                let log = self.enclave_log();
                assert!(
                    text.contains("cannot be trusted")
                        || (broken_frame
                            && log.contains("loading the sealed store failed")
                            && log.contains("store channel")),
                    "the refused unseal does not say why: {out:?}{}",
                    self.context()
                );
                // A state the enclave sealed, served whole, loads.
                assert!(
                    report.tampered() || broken_frame,
                    "a load of sealed state #{:?} exactly was refused: {out:?}{}",
                    report.sealed_state,
                    self.context()
                );
                eprintln!(
                    "{}: load refused ({}): {}",
                    self.label,
                    report.description,
                    text.trim().lines().last().unwrap_or_default()
                );
                return false;
            }
            Unsealed::Loaded { refused } => *refused,
        };
        assert!(
            !broken_frame,
            "the unseal loaded from a broken frame ({}){}",
            report.description,
            self.context()
        );
        // 1. No tampered record loads silently.
        assert!(
            !report.tampered() || refused > 0,
            "a load that is no state the enclave sealed loaded silently ({}): status shows no \
             refused record{}",
            report.description,
            self.context()
        );
        if refused > 0 {
            // On the record: the unseal's audit record counts them.
            std::thread::sleep(SETTLE);
            let log = std::fs::read_to_string(self.d.dir().join("store").join("audit.jsonl"))
                .unwrap_or_default();
            assert!(
                log.contains(&format!("\"refusedRecordCount\":{refused}")),
                "{refused} records refused, but no audit record says so{}",
                self.context()
            );
        }
        let (findings, seen) = self.findings().await;
        let after = self.audit_verify(true);
        let chain_shows = (!after.success()).then(|| first_line(&after.stderr));
        let audit_evidence = chain_shows.clone().or_else(|| self.witness_failed.clone());
        eprintln!(
            "{}: loaded ({}), {refused} refused, {} lost, {} back; audit: {}",
            self.label,
            report.description,
            findings.lost.len(),
            findings.back.len(),
            audit_evidence.as_deref().map_or("ok", str::trim)
        );
        if std::env::var_os("EKMS_HOSTILE_VERBOSE").is_some() {
            eprintln!("  lost {:?}\n  back {:?}", findings.lost, findings.back);
            let log = std::fs::read_to_string(self.d.dir().join("store").join("audit.jsonl"))
                .unwrap_or_default();
            if let Some(line) = log.lines().rev().find(|l| l.contains("refusedRecords")) {
                eprintln!("  {line}");
            }
        }
        // 2. An acknowledged write lost shows: refused records, or the audit chain's gap.
        assert!(
            findings.lost.is_empty() || refused > 0 || audit_evidence.is_some(),
            "acknowledged writes lost silently: {:?}{}",
            findings.lost,
            self.context()
        );
        // 3. Deleted, destroyed or superseded state back only with a rollback the audit chain
        // shows.
        assert!(
            findings.back.is_empty() || audit_evidence.is_some(),
            "deleted or superseded state came back: {:?}{}",
            findings.back,
            self.context()
        );
        if !report.tampered() && !report.rolled_back() && refused == 0 {
            // Exactly the last state sealed, loaded whole: nothing may be amiss.
            assert!(
                findings.lost.is_empty() && findings.back.is_empty(),
                "the last sealed state, loaded whole, differs from what clients were told: lost \
                 {:?}, back {:?}{}",
                findings.lost,
                findings.back,
                self.context()
            );
            assert!(
                chain_shows.is_none() || !self.audit_ok,
                "the audit log was sound and no longer verifies: {chain_shows:?}\n{}{}",
                self.audit_excerpt(chain_shows.as_deref().unwrap_or_default()),
                self.context()
            );
        }
        self.audit_ok = chain_shows.is_none();
        self.rebaseline(&seen, refused);
        true
    }

    /// What the enclave serves after a checked load is what is known from now on (a loss the
    /// enclave showed is not reported again at every later load). Absence is known only from
    /// a load that refused nothing: a record refused once may load again later.
    fn rebaseline(&mut self, seen: &Observed, refused: u64) {
        let clean = refused == 0;
        let model = &mut self.model;
        for (id, now) in &seen.keys {
            match now {
                Some(state) => {
                    if let Some(k) = model.keys.get_mut(id) {
                        k.state = *state;
                    }
                }
                None => {
                    model.keys.remove(id);
                }
            }
        }
        let mut i = 0;
        model.ciphertexts.retain(|c| {
            let keep = !seen.bad_ciphertexts.contains(&i) && model.keys.contains_key(&c.key);
            i += 1;
            keep
        });
        for (name, a) in &mut model.aliases {
            a.target = match seen.aliases.get(name) {
                Some(Some(k)) => Some(Some(k.clone())),
                Some(None) if clean => Some(None),
                _ => None,
            };
        }
        for (name, p) in &mut model.principals {
            p.alive = match seen.principals.get(name) {
                Some(true) => Some(true),
                Some(false) if clean => Some(false),
                _ => None,
            };
        }
        for (id, g) in &mut model.grants {
            g.alive = match seen.grants.get(id) {
                Some(true) => Some(true),
                Some(false) if clean => Some(false),
                _ => None,
            };
        }
    }
}

/// One round of a campaign: the workload under hostile commits, a restart under a hostile
/// load, the checks; an honest restart after a refused load.
async fn round(stack: &mut Stack, commits: CommitPlan, load: LoadPlan, ops: usize) {
    stack.proxy.set_commit_plan(commits);
    stack.workload(ops).await;
    let s = stack.proxy.last_session();
    eprintln!(
        "{}: {} commits, {} altered, faked {:?}, fatal {:?}",
        stack.label, s.commits, s.altered, s.faked, s.fatal
    );
    let outcome = stack.restart(load).await;
    if !stack.check(&outcome).await {
        let outcome = stack.restart(LoadPlan::Honest).await;
        assert!(
            stack.check(&outcome).await,
            "an honest load after a refused one was refused too: {outcome:?}{}",
            stack.context()
        );
    }
}

/// A random load plan.
fn random_load(rng: &mut Rng, mark: Option<usize>) -> LoadPlan {
    match rng.below(12) {
        0 | 1 => LoadPlan::Honest,
        2..=4 => LoadPlan::RandomMix,
        5 => LoadPlan::CorruptRecords {
            count: 1 + rng.below(3),
        },
        6 => LoadPlan::OldVersions {
            count: 1 + rng.below(3),
        },
        7 => LoadPlan::DropRecords {
            count: 1 + rng.below(3),
        },
        8 => LoadPlan::Repeat,
        9 => match mark {
            Some(old) => LoadPlan::IssueMix { old },
            None => LoadPlan::RandomMix,
        },
        // Rarely: the audit chain shows a rollback from then on, which every later loss may
        // lean on.
        10 if rng.chance(300) => match mark {
            Some(to) => LoadPlan::Rollback { to },
            None => LoadPlan::Truncate,
        },
        10 => LoadPlan::OldVersions { count: 1 },
        _ => {
            if rng.chance(500) {
                LoadPlan::Truncate
            } else {
                LoadPlan::Garble
            }
        }
    }
}

/// A campaign of `rounds` rounds from `seed`: each round a workload under a random commit
/// plan, then a restart under a random load plan, then the checks.
async fn campaign(label: &str, seed: u64, rounds: usize, unstored: bool) {
    let started = Instant::now();
    let mut stack = Stack::start(label, seed);
    stack.proxy.set_mix_unstored(unstored);
    let mut rng = Rng::new(seed.rotate_left(17) ^ 0xC0FF_EE00);
    stack.workload(25).await;
    let mut mark = None;
    for r in 0..rounds {
        let mut commits = match rng.below(4) {
            0 => CommitPlan::honest(),
            1 | 2 => CommitPlan::diverging(1 + u32::try_from(rng.below(4)).unwrap_or(0)),
            _ => CommitPlan::everything(1 + u32::try_from(rng.below(3)).unwrap_or(0)),
        };
        if unstored && commits != CommitPlan::honest() {
            // Replays of commits the parent never stored: off unless asked (slow to converge).
            commits.replay_unstored = 20;
        }
        let load = random_load(&mut rng, mark);
        eprintln!(
            "{}: round {r}: commits {commits:?}, load {load:?}",
            stack.label
        );
        round(&mut stack, commits, load, 20 + rng.below(20)).await;
        if rng.chance(500) {
            mark = Some(stack.proxy.mark());
        }
    }
    stack.end_boot().await;
    let (pages, versions) = stack.proxy.seen();
    eprintln!(
        "{}: {rounds} rounds in {:?}: {} acknowledged, {} failed; proxy saw {pages} pages, \
         {versions} record versions; enclave peak RSS {} KiB",
        stack.label,
        started.elapsed(),
        stack.model.acknowledged,
        stack.model.failed,
        stack.peak_rss_kib
    );
}

/// Issue 17's attack: after a principal, an alias, a grant and a key's enabled state were
/// superseded, the parent answers the unseal's load with the old snapshot's root, pages and
/// buckets, then the current store, then the records only the old snapshot has. The load is
/// refused, by name; honestly served, the store loads with none of it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_snapshot_mix_is_refused_by_name() {
    let mut stack = Stack::start("issue 17 snapshot mix", 17);
    let key = stack.create_key().await.expect("CreateKey");
    let other = stack.create_key().await.expect("CreateKey");
    let doomed = stack.create_principal().await.expect("CreatePrincipal");
    let grantee = stack.create_principal().await.expect("CreatePrincipal");
    let alias = stack.create_alias(&key).await;
    let moved = stack.create_alias(&key).await;
    let grant = stack
        .create_grant(&key, &grantee)
        .await
        .expect("CreateGrant");
    stack.encrypt(&key, false).await;
    let doomed_key = stack.create_key().await.expect("CreateKey");
    // The snapshot the parent keeps: everything above alive.
    let old = stack.proxy.mark();
    stack.delete_principal(&doomed).await;
    stack.delete_alias(&alias).await;
    stack.update_alias(&moved, &other).await;
    stack.revoke_grant(&grant).await;
    stack.set_key_state(&key, Expect::Disabled).await;
    stack
        .set_key_state(&doomed_key, Expect::PendingDeletion)
        .await;
    assert_eq!(
        stack.model.failed,
        0,
        "the workload failed with an honest parent{}",
        stack.context()
    );

    let outcome = stack.restart(LoadPlan::IssueMix { old }).await;
    let Unsealed::Refused(out) = &outcome else {
        panic!(
            "the issue 17 mix loaded: {outcome:?}; {:?}{}",
            stack.findings().await.0,
            stack.context()
        );
    };
    assert!(
        out.stderr.contains("cannot be trusted")
            && (out.stderr.contains("out of order") || out.stderr.contains("mixed")),
        "the refusal does not name what was wrong: {out:?}"
    );
    let log = stack.enclave_log();
    assert!(
        log.contains("load refused"),
        "the enclave's log does not record the refused load:\n{log}"
    );
    assert!(!stack.check(&outcome).await);

    // Served honestly, the store loads whole, with none of it back.
    let outcome = stack.restart(LoadPlan::Honest).await;
    assert!(
        matches!(outcome, Unsealed::Loaded { refused: 0 }),
        "{outcome:?}{}",
        stack.context()
    );
    assert!(stack.check(&outcome).await);
    let (findings, _) = stack.findings().await;
    assert!(
        findings.lost.is_empty() && findings.back.is_empty(),
        "{findings:?}{}",
        stack.context()
    );
    stack.end_boot().await;
}

/// Every kind of hostile load, one after another on one deployment, each followed by the
/// checks: random mixes, altered, older, dropped and repeated records, a truncated and a
/// garbled answer, the issue 17 mix and a whole-store rollback (which the audit chain names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_loads_are_refused_or_seen() {
    let seed = 0x004C_0AD5;
    let mut stack = Stack::start("hostile loads", seed);
    stack.workload(30).await;
    let mark = stack.proxy.mark();
    stack.workload(25).await;
    assert_eq!(
        stack.model.failed,
        0,
        "the workload failed with an honest parent{}",
        stack.context()
    );
    let plans = [
        LoadPlan::RandomMix,
        LoadPlan::CorruptRecords { count: 2 },
        LoadPlan::OldVersions { count: 2 },
        LoadPlan::DropRecords { count: 2 },
        LoadPlan::Repeat,
        LoadPlan::Truncate,
        LoadPlan::Garble,
        LoadPlan::IssueMix { old: mark },
        LoadPlan::RandomMix,
    ];
    for plan in plans {
        let outcome = stack.restart(plan).await;
        if stack.check(&outcome).await {
            stack.workload(5).await;
        }
    }
    // The last: a whole-store rollback loads (one enclave cannot tell), and the audit chain
    // names it once the enclave writes.
    let outcome = stack.restart(LoadPlan::Rollback { to: mark }).await;
    assert!(
        matches!(outcome, Unsealed::Loaded { refused: 0 }),
        "{outcome:?}{}",
        stack.context()
    );
    let (back, _) = stack.findings().await;
    assert!(
        !back.lost.is_empty() || !back.back.is_empty(),
        "the rollback changed nothing clients were told: the scenario tests nothing{}",
        stack.context()
    );
    assert!(stack.check(&outcome).await);
    let verify = stack.audit_verify(false);
    assert!(
        !verify.success()
            && (verify.stderr.contains("rolled back") || verify.stderr.contains("reordered")),
        "the audit chain does not show the rollback: {verify:?}"
    );
    stack.end_boot().await;
}

/// Commits failed, faked, reordered, altered, replayed, duplicated, dropped, truncated and
/// garbled while clients work; restarts under hostile loads; the checks after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_commits_and_loads_campaign() {
    campaign("hostile commits and loads", 0x00C0_4417, 3, false).await;
}

/// Fake acknowledgements only: every answer clients got is either back after the restart or
/// missing with the gap in the audit chain (the witness before the restart, or the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_acknowledgements_show_in_the_audit_chain() {
    let mut stack = Stack::start("fake acknowledgements", 0xFA4E);
    stack.workload(10).await;
    stack.proxy.set_commit_plan(CommitPlan {
        fake_ack: 300,
        ..CommitPlan::honest()
    });
    // Until a commit with records (not only a checkpoint) was acknowledged and never written.
    let mut faked = 0;
    for _ in 0..5 {
        stack.workload(15).await;
        let session = stack.proxy.last_session();
        faked = stack
            .proxy
            .commits()
            .iter()
            .filter(|c| {
                c.session == session.id && !c.puts.is_empty() && session.faked.contains(&c.seq)
            })
            .count();
        if faked > 0 {
            break;
        }
    }
    assert!(faked > 0, "no acknowledgement was faked{}", stack.context());
    let outcome = stack.restart(LoadPlan::Honest).await;
    assert!(
        stack.witness_failed.is_some(),
        "{faked} commits acknowledged and never written, and `ekms audit verify --endpoint` \
         passed{}",
        stack.context()
    );
    stack.check(&outcome).await;
    stack.end_boot().await;
}

/// The longer random campaign `scripts/hostile-campaign.sh` runs: seed from
/// `EKMS_HOSTILE_SEED` (default: from the clock, printed), rounds from `EKMS_HOSTILE_ROUNDS`
/// (default 6); `EKMS_HOSTILE_UNSTORED=1` also stores records of commits the parent refused
/// (the generation-reuse bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long random campaign: scripts/hostile-campaign.sh"]
async fn random_campaign() {
    let seed = std::env::var("EKMS_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    let rounds = std::env::var("EKMS_HOSTILE_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(6);
    let unstored = std::env::var_os("EKMS_HOSTILE_UNSTORED").is_some_and(|v| v == "1");
    eprintln!(
        "EKMS_HOSTILE_SEED={seed} EKMS_HOSTILE_ROUNDS={rounds} EKMS_HOSTILE_UNSTORED={unstored}"
    );
    campaign("random campaign", seed, rounds, unstored).await;
}

/// A commit the parent refuses is sealed all the same: its records carry its sequence number
/// as their generation. The enclave stops and restarts from the last durable commit. Its next
/// commit once reused that number, so a parent that kept the refused commit's records could
/// serve them in place of the acknowledged ones (every generation matched): a deleted principal
/// authenticated again. Each boot now starts its commits at a random distance past the root it
/// loaded. Here the refused commit gave principal P a second access key, the acknowledged one
/// deleted P; the parent serves the store with the refused commit's page, bucket and principal
/// record in place: the load must refuse them, and P stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commits_records_do_not_replace_those_of_the_commit_that_reused_its_number() {
    let mut stack = Stack::start("generation reuse", 0x6E4E);
    stack.create_key().await.expect("CreateKey");
    let principal = stack.create_principal().await.expect("CreatePrincipal");

    // Boot A: its first commit (a second access key for P) is refused; the enclave stops.
    let outcome = stack.restart(LoadPlan::Honest).await;
    assert!(
        matches!(outcome, Unsealed::Loaded { refused: 0 }),
        "{outcome:?}"
    );
    let boot_a = stack.proxy.last_session().id;
    stack.proxy.set_commit_plan(CommitPlan {
        fail: 1000,
        ..CommitPlan::honest()
    });
    let refused = stack
        .principal_call("Ekms.CreateAccessKey", &json!({ "UserName": principal }))
        .await;
    assert!(
        refused.is_err(),
        "a refused commit was answered: {refused:?}"
    );

    // Boot B: P is deleted, acknowledged, in its first commit: the same number.
    let outcome = stack.restart(LoadPlan::Honest).await;
    assert!(
        matches!(outcome, Unsealed::Loaded { refused: 0 }),
        "{outcome:?}"
    );
    let boot_b = stack.proxy.last_session().id;
    stack.delete_principal(&principal).await;
    assert!(stack.check(&outcome).await);
    assert_eq!(
        stack.model.principals[&principal].alive,
        Some(false),
        "DeletePrincipal failed{}",
        stack.context()
    );
    let commits = stack.proxy.commits();
    let (a_index, a) = commits
        .iter()
        .enumerate()
        .find(|(_, c)| c.session == boot_a && !c.stored && !c.puts.is_empty())
        .expect("boot A's refused commit");
    let b = commits
        .iter()
        .find(|c| c.session == boot_b && c.stored && !c.deletes.is_empty())
        .expect("boot B's DeletePrincipal commit");
    assert_ne!(
        a.seq,
        b.seq,
        "boot B's commit reused the refused commit's number{}",
        stack.context()
    );

    // Boot C: the store, with the refused commit's records in place.
    let outcome = stack.restart(LoadPlan::Overlay { commit: a_index }).await;
    let (findings, _) = match &outcome {
        Unsealed::Loaded { .. } => stack.findings().await,
        Unsealed::Refused(_) => (Findings::default(), Observed::default()),
    };
    let audit = stack.audit_verify(true);
    assert!(
        findings.back.is_empty(),
        "{outcome:?}: {:?}; `ekms audit verify --endpoint`: {}{}",
        findings.back,
        if audit.success() {
            "ok".to_owned()
        } else {
            first_line(&audit.stderr)
        },
        stack.context()
    );
    assert!(
        matches!(
            outcome,
            Unsealed::Refused(_) | Unsealed::Loaded { refused: 1.. }
        ),
        "the refused commit's records loaded silently: {outcome:?}{}",
        stack.context()
    );
    stack.check(&outcome).await;
    stack.end_boot().await;
}

/// A store channel the parent closes (as a parent that stops or restarts does) is recovered in
/// place: the same enclave process takes the store's state again on a new connection, with
/// every acknowledged change, and serves; no custodian takes part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_channel_is_recovered_in_place() {
    let mut stack = Stack::start("channel closed", 0xC705);
    stack.workload(20).await;
    assert_eq!(stack.model.failed, 0, "an honest parent{}", stack.context());
    let pid = stack.d.enclave.as_ref().expect("an enclave").pid();

    stack.proxy.set_commit_plan(CommitPlan {
        drop_close: 1000,
        ..CommitPlan::honest()
    });
    let dropped = stack.admin().list_keys().send().await;
    assert!(dropped.is_err(), "answered without a durable audit record");
    assert!(
        !stack.boot().lost.is_empty(),
        "the proxy closed the channel"
    );
    stack.proxy.set_commit_plan(CommitPlan::honest());
    stack.await_recovery().await;
    assert_eq!(
        stack.d.enclave.as_ref().expect("an enclave").pid(),
        pid,
        "the same process serves again"
    );
    let log = stack.enclave_log();
    assert!(log.contains("recovered"), "{}", stack.context());
    let (found, _) = stack.findings().await;
    assert!(
        found.lost.is_empty() && found.back.is_empty(),
        "lost {:?}, back {:?}{}",
        found.lost,
        found.back,
        stack.context()
    );
    stack.workload(10).await;
    assert_eq!(stack.model.failed, 0, "serving again{}", stack.context());
    // The chain went on across the sessions: the log verifies to the enclave's head.
    let witness = stack.audit_verify(true);
    assert!(witness.success(), "{witness:?}{}", stack.context());
    stack.end_boot().await;
}

/// A parent that answers a commit `Unavailable` (as a store with a full audit disk does), then
/// serves an older state (a whole-store rollback, which a fresh unseal cannot tell): the
/// enclave, which knows its last durable commit, refuses it and stops rather than serve it.
/// Restarted and unsealed on the current store, nothing acknowledged is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_stops_rather_than_take_an_older_store() {
    let mut stack = Stack::start("recovery rollback", 0x2EC0);
    stack.workload(10).await;
    let mark = stack.proxy.mark();
    stack.workload(15).await;
    assert_eq!(stack.model.failed, 0, "an honest parent{}", stack.context());

    stack.proxy.set_load_plan(LoadPlan::Rollback { to: mark });
    stack.proxy.set_commit_plan(CommitPlan {
        unavailable: 1000,
        ..CommitPlan::honest()
    });
    let refused = stack.admin().list_keys().send().await;
    assert!(refused.is_err(), "answered without a durable audit record");
    let enclave = stack.d.enclave.as_mut().expect("an enclave");
    let stopped = tokio::task::block_in_place(|| enclave.wait_exit(FAIL_STOP_TIMEOUT));
    assert!(
        stopped.is_some(),
        "the enclave did not stop{}",
        stack.context()
    );
    let log = stack.enclave_log();
    assert!(
        log.contains("older than what this enclave knows durable"),
        "{}",
        stack.context()
    );
    let outcome = stack.restart(LoadPlan::Honest).await;
    assert!(
        matches!(outcome, Unsealed::Loaded { refused: 0 }),
        "{outcome:?}{}",
        stack.context()
    );
    assert!(stack.check(&outcome).await);
    stack.end_boot().await;
}
