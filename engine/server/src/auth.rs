//! Who may do what, on every listener.
//!
//! A request presents a token (HTTP `Authorization: Bearer|Token|Basic`,
//! gRPC `authorization` metadata, the Postgres password, a Flight SQL
//! handshake); [`Authenticator::authenticate`] turns it into a
//! [`Principal`] or an [`AuthError`], and the front end checks the scope its
//! request needs. The listeners differ only in where they find the token
//! and how they say no (`http.rs`/`auth/grpc.rs`/`postgres.rs`).
//!
//! Tokens live hashed (argon2id) in `<data_dir>/tokens.json`, edited by
//! `weir token`, and in `[[auth.tokens]]` of the config file. argon2 is
//! slow on purpose, so a token is hashed once: after it verifies, its
//! SHA-256 is remembered and later requests compare digests in constant
//! time. The file is looked at again at most once a second, so `weir token
//! revoke` takes effect within a second without a restart.
//!
//! Enforcement: on from the start when a token exists or a listener is not
//! on loopback (`serve` refuses the latter without tokens unless told it may
//! be open); on from the first token created while running; never off again
//! until restart, so revoking the last token locks every door rather than
//! opening them.

pub mod grpc;
pub mod http;
mod limiter;
pub mod tokens;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

pub use limiter::LimiterConfig;
pub use tokens::{Scope, TokenEntry};

use limiter::FailureLimiter;

/// How often the tokens file is looked at again.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// argon2 verifications at once: each takes ~19 MiB and a core for tens
/// of milliseconds.
const CONCURRENT_HASHES: usize = 2;

/// `[auth]` resolved.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub data_dir: PathBuf,
    /// `[[auth.tokens]]`: for automation that cannot run `weir token`.
    pub config_tokens: Vec<TokenEntry>,
    /// Enforce from the start, tokens or not (a listener is not on loopback).
    pub required: bool,
    /// `/metrics` without a token (for scrapers that cannot send one).
    pub public_metrics: bool,
    /// The HTML status page without a token.
    pub public_status_page: bool,
    pub failures: LimiterConfig,
}

/// Who is asking: a token's name and scopes, or anyone while nothing is
/// enforced.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `None` when auth is not enforced.
    token: Option<Arc<TokenEntry>>,
}

impl Principal {
    pub fn allows(&self, scope: Scope) -> bool {
        self.token.as_ref().is_none_or(|t| t.allows(scope))
    }

    /// The token's name, for logs.
    pub fn name(&self) -> &str {
        self.token.as_ref().map_or("(no auth)", |t| t.name.as_str())
    }

    /// `Forbidden` unless this principal has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.allows(scope) {
            return Ok(());
        }
        let token = self.token.as_ref().map(|t| (t.name.clone(), t.id.clone()));
        let (name, id) = token.unwrap_or_default();
        warn!(token = %name, token_id = %id, needs = %scope, "refused: the token lacks the scope");
        Err(AuthError::Forbidden { name, scope })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send a token (Authorization: Bearer <token>)")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("too many failed attempts from this address; retry in {}s", retry_after.as_secs().max(1))]
    TooManyFailures { retry_after: Duration },
    #[error("token {name:?} lacks the {scope} scope")]
    Forbidden { name: String, scope: Scope },
}

/// The tokens in force, by id.
#[derive(Default)]
struct TokenSet {
    by_id: HashMap<String, Arc<TokenEntry>>,
}

struct FileStamp {
    checked: Instant,
    seen: Option<(SystemTime, u64)>,
}

pub struct Authenticator {
    config: AuthConfig,
    tokens: RwLock<Arc<TokenSet>>,
    file: Mutex<FileStamp>,
    enforced: AtomicBool,
    /// SHA-256 of tokens argon2 has verified, by id, with the hash they
    /// verified against (a token re-created under the same id is hashed
    /// anew).
    verified: Mutex<HashMap<String, (String, [u8; 32])>>,
    hashing: Arc<Semaphore>,
    limiter: FailureLimiter,
}

impl Authenticator {
    /// Loads the tokens; a tokens file that cannot be read stops start-up.
    pub fn new(config: AuthConfig) -> crate::Result<Self> {
        for entry in &config.config_tokens {
            entry.check()?;
        }
        let path = tokens::tokens_path(&config.data_dir);
        let set = token_set(&config.config_tokens, tokens::load(&path)?);
        let enforced = config.required || !set.by_id.is_empty();
        Ok(Self {
            limiter: FailureLimiter::new(config.failures),
            tokens: RwLock::new(Arc::new(set)),
            file: Mutex::new(FileStamp {
                checked: Instant::now(),
                seen: stamp(&path),
            }),
            enforced: AtomicBool::new(enforced),
            verified: Mutex::new(HashMap::new()),
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            config,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Tokens in force (the file's and the config's).
    pub fn token_count(&self) -> usize {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }

    pub fn enforced(&self) -> bool {
        self.enforced.load(Ordering::Relaxed)
    }

    /// The principal a credential (the token text, as the front end found
    /// it) stands for.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.reload_if_changed();
        if !self.enforced() {
            return Ok(Principal { token: None });
        }
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(AuthError::Missing);
        };
        // A failure is spent up front and given back on success, so neither
        // concurrent attempts nor a request cancelled mid-hash escape it.
        if let Some(peer) = peer
            && let Err(retry_after) = self.limiter.try_spend(peer)
        {
            debug!(%peer, "refused: too many failed attempts");
            return Err(AuthError::TooManyFailures { retry_after });
        }
        match self.verify(token).await {
            Some(entry) => {
                if let Some(peer) = peer {
                    self.limiter.refund(peer);
                }
                Ok(Principal { token: Some(entry) })
            }
            None => {
                let id = tokens::id_of(token).unwrap_or("(not a weir token)");
                warn!(peer = ?peer, token_id = %id, "refused: invalid token");
                Err(AuthError::Invalid)
            }
        }
    }

    async fn verify(&self, token: &str) -> Option<Arc<TokenEntry>> {
        let id = tokens::id_of(token)?;
        let entry = Arc::clone(
            self.tokens
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .by_id
                .get(id)?,
        );
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .ok()?;
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|(hash, _)| *hash == entry.hash)
            .map(|(_, digest)| *digest);
        if let Some(known) = known {
            // The token that verified under this hash is the only one that
            // will (short of an argon2 collision): compare, don't rehash.
            return bool::from(known.ct_eq(&digest)).then_some(entry);
        }
        // The permit goes with the hash: a request dropped while it runs
        // does not free a slot for another hash.
        let permit = Arc::clone(&self.hashing).acquire_owned().await.ok()?;
        let (checked, owned) = (Arc::clone(&entry), token.to_string());
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            checked.verify(&owned)
        })
        .await
        .unwrap_or(false);
        if !verified {
            return None;
        }
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.id.clone(), (entry.hash.clone(), digest));
        Some(entry)
    }

    /// Re-reads the tokens file if it changed since it was last looked at
    /// (at most once per [`RELOAD_EVERY`]). A file that no longer parses
    /// leaves the tokens as they were, with a warning.
    fn reload_if_changed(&self) {
        let path = tokens::tokens_path(&self.config.data_dir);
        // Held through the load and the swap: a slower reload never
        // overwrites a newer one.
        let Ok(mut file) = self.file.try_lock() else {
            return;
        };
        if file.checked.elapsed() < RELOAD_EVERY {
            return;
        }
        file.checked = Instant::now();
        let now = stamp(&path);
        if now == file.seen {
            return;
        }
        match tokens::load(&path) {
            Ok(stored) => {
                // Marked seen only once loaded: a failed read is retried,
                // so a revocation is never skipped.
                file.seen = now;
                let set = token_set(&self.config.config_tokens, stored);
                let count = set.by_id.len();
                *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                if count > 0 && !self.enforced.swap(true, Ordering::Relaxed) {
                    info!(
                        tokens = count,
                        "a token exists now: every listener requires one from here on"
                    );
                } else {
                    info!(tokens = count, "tokens reloaded");
                }
            }
            Err(e) => {
                warn!(error = %e, "the tokens file changed but cannot be read; keeping the tokens as they were")
            }
        }
    }
}

fn token_set(config_tokens: &[TokenEntry], stored: Vec<TokenEntry>) -> TokenSet {
    let by_id = config_tokens
        .iter()
        .cloned()
        .chain(stored)
        .map(|entry| (entry.id.clone(), Arc::new(entry)))
        .collect();
    TokenSet { by_id }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The token in an `Authorization` value: `Bearer T`, `Token T` (InfluxDB's
/// clients) or `Basic base64(user:T)` (Prometheus' `basic_auth`, Flight
/// SQL's handshake, Influx 1.x; the password is the token, or the user name
/// when the password is empty).
pub fn token_from_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if rest.len() > 4 * tokens::MAX_TOKEN_LEN {
            return None;
        }
        // Padded or not: Go's Flight client (ADBC) sends it unpadded.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = lenient.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        return Some(if password.is_empty() { user } else { password }.to_string());
    }
    None
}

/// Scopes a token may be created with, from `write,query` or repeated flags.
pub fn parse_scopes(texts: &[String]) -> crate::Result<BTreeSet<Scope>> {
    texts
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Scope::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, config_tokens: Vec<TokenEntry>) -> AuthConfig {
        AuthConfig {
            data_dir: dir.to_path_buf(),
            config_tokens,
            required: false,
            public_metrics: false,
            public_status_page: false,
            failures: LimiterConfig {
                burst: 3,
                refill: Duration::from_secs(3600),
            },
        }
    }

    /// The token with its last digit changed.
    fn altered(token: &str) -> String {
        let last = if token.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &token[..token.len() - 1])
    }

    #[test]
    fn credentials_are_found_in_every_convention() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            token_from_authorization("Bearer abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_authorization("bearer  abc ").as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_authorization("Token abc").as_deref(),
            Some("abc")
        );
        let basic = format!("Basic {}", b64("user:abc"));
        assert_eq!(token_from_authorization(&basic).as_deref(), Some("abc"));
        let user_only = format!("Basic {}", b64("abc:"));
        assert_eq!(token_from_authorization(&user_only).as_deref(), Some("abc"));
        let unpadded = format!("Basic {}", b64("ingest:abc").trim_end_matches('='));
        assert_eq!(token_from_authorization(&unpadded).as_deref(), Some("abc"));
        for bad in ["", "Bearer", "abc", "Digest abc", "Basic !!!", "Basic"] {
            assert_eq!(token_from_authorization(bad), None, "{bad:?}");
        }
        let huge = format!("Basic {}", b64(&"x".repeat(10_000)));
        assert_eq!(token_from_authorization(&huge), None);
    }

    #[tokio::test]
    async fn nothing_is_enforced_until_a_token_exists_and_then_always() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(config(dir.path(), vec![])).unwrap();
        assert!(
            auth.authenticate(None, None)
                .await
                .unwrap()
                .allows(Scope::Admin)
        );

        let (token, entry) = tokens::generate("q", BTreeSet::from([Scope::Query])).unwrap();
        let id = entry.id.clone();
        tokens::edit(dir.path(), |t| {
            t.push(entry);
            Ok(())
        })
        .unwrap();
        auth.file.lock().unwrap().checked -= RELOAD_EVERY;
        assert!(matches!(
            auth.authenticate(None, None).await,
            Err(AuthError::Missing)
        ));
        let principal = auth.authenticate(Some(&token), None).await.unwrap();
        assert!(principal.allows(Scope::Query) && !principal.allows(Scope::Write));
        assert!(principal.require(Scope::Write).is_err());
        // The second time takes the digest path, and still tells tokens apart.
        assert!(auth.authenticate(Some(&token), None).await.is_ok());
        let forged = altered(&token);
        assert!(matches!(
            auth.authenticate(Some(&forged), None).await,
            Err(AuthError::Invalid)
        ));

        tokens::edit(dir.path(), |t| {
            t.retain(|e| e.id != id);
            Ok(())
        })
        .unwrap();
        auth.file.lock().unwrap().checked -= RELOAD_EVERY;
        assert!(matches!(
            auth.authenticate(Some(&token), None).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.authenticate(None, None).await,
            Err(AuthError::Missing)
        ));
    }

    #[tokio::test]
    async fn a_guessing_peer_is_stopped_before_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let (token, entry) = tokens::generate("w", BTreeSet::from([Scope::Write])).unwrap();
        let auth = Authenticator::new(config(dir.path(), vec![entry])).unwrap();
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for guess in ["nope", "weir_000000000000_x", &altered(&token)] {
            let result = auth.authenticate(Some(guess), Some(guesser)).await;
            assert!(matches!(result, Err(AuthError::Invalid)), "{result:?}");
        }
        let result = auth.authenticate(Some(&token), Some(guesser)).await;
        assert!(
            matches!(result, Err(AuthError::TooManyFailures { .. })),
            "{result:?}"
        );
        assert!(auth.authenticate(Some(&token), Some(other)).await.is_ok());
    }
}
