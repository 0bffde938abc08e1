//! Access tokens: their text form, their argon2id hashes, and the file in
//! the data directory that `weir token create|list|revoke` edit and the
//! server reads.
//!
//! A token reads `weir_<id>_<secret>`: `id` is 12 hex digits, public (it is
//! what `list` shows, `revoke` takes and logs name), so a presented token
//! is matched against one stored hash, never tried against all of them;
//! `secret` is 32 random bytes in hex. Only the argon2id hash of the whole
//! token is stored, so a copy of the data directory grants nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The tokens file, inside the data directory.
pub const TOKENS_FILE: &str = "tokens.json";
const PREFIX: &str = "weir_";
const ID_HEX: usize = 12;
const SECRET_HEX: usize = 64;
/// Longest credential worth looking at; anything longer is not a token.
pub const MAX_TOKEN_LEN: usize = PREFIX.len() + ID_HEX + 1 + SECRET_HEX;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send data: every write API, events, heartbeats.
    Write,
    /// Read: SQL on every front end, status, alerts, suppressions' lists.
    Query,
    /// Change the server: plugin reload, persist, probes, suppressions.
    /// Includes `write` and `query`.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Write, Scope::Query, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown scope {text:?}: the scopes are write, query, admin"
                ))
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored token: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub id: String,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// argon2id PHC string of the whole token.
    pub hash: String,
    /// RFC 3339; empty for tokens given in the config file.
    #[serde(default)]
    pub created: String,
}

impl TokenEntry {
    /// Checks the entry can be used: a well-formed id, a parseable hash.
    pub fn check(&self) -> Result<()> {
        if !is_id(&self.id) {
            return Err(Error::Config(format!(
                "token {:?}: id {:?} is not {ID_HEX} lowercase hex digits",
                self.name, self.id
            )));
        }
        if self.scopes.is_empty() {
            return Err(Error::Config(format!("token {:?} has no scope", self.name)));
        }
        PasswordHash::new(&self.hash).map_err(|e| {
            Error::Config(format!(
                "token {:?}: hash is not a PHC string: {e}",
                self.name
            ))
        })?;
        Ok(())
    }

    /// The slow, salted check of a presented token against this entry.
    pub fn verify(&self, token: &str) -> bool {
        let Ok(hash) = PasswordHash::new(&self.hash) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(token.as_bytes(), &hash)
            .is_ok()
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// The id a token claims, if it has a token's shape at all.
pub fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_id(id) && secret.len() == SECRET_HEX && secret.bytes().all(is_lower_hex)).then_some(id)
}

fn is_id(id: &str) -> bool {
    id.len() == ID_HEX && id.bytes().all(is_lower_hex)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// A new token: its text (shown once) and the entry that stores its hash.
pub fn generate(name: &str, scopes: BTreeSet<Scope>) -> Result<(String, TokenEntry)> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::Config(
            "a token's name must be 1 to 128 characters, none of them control characters".into(),
        ));
    }
    if scopes.is_empty() {
        return Err(Error::Config(
            "a token needs at least one scope (write, query, admin)".into(),
        ));
    }
    let rng = SystemRandom::new();
    let random = |n: usize| -> Result<Vec<u8>> {
        let mut bytes = vec![0; n];
        rng.fill(&mut bytes)
            .map_err(|_| Error::Internal("the system random generator failed".into()))?;
        Ok(bytes)
    };
    let id = hex::encode(random(ID_HEX / 2)?);
    let token = format!("{PREFIX}{id}_{}", hex::encode(random(SECRET_HEX / 2)?));
    let salt = SaltString::encode_b64(&random(16)?)
        .map_err(|e| Error::Internal(format!("token salt: {e}")))?;
    let hash = argon2::Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map_err(|e| Error::Internal(format!("hashing the token: {e}")))?
        .to_string();
    let entry = TokenEntry {
        id,
        name: name.to_string(),
        scopes,
        hash,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    Ok((token, entry))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensDoc {
    tokens: Vec<TokenEntry>,
}

/// `<data_dir>/tokens.json`.
pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKENS_FILE)
}

/// The tokens stored in the data directory; none if the file is absent.
pub fn load(path: &Path) -> Result<Vec<TokenEntry>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    };
    let doc: TokensDoc = serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    for entry in &doc.tokens {
        entry
            .check()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    }
    Ok(doc.tokens)
}

/// Changes the tokens file under an exclusive lock (two `weir token`
/// commands at once both land), then replaces it atomically: written
/// beside, fsynced, renamed, directory fsynced. Readable by its owner only.
pub fn edit<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut Vec<TokenEntry>) -> Result<T>,
) -> Result<T> {
    let io = |what: String| move |source| Error::Io { what, source };
    std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    let lock_path = data_dir.join("tokens.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;
    let path = tokens_path(data_dir);
    let mut tokens = load(&path)?;
    let answer = change(&mut tokens)?;
    let text = serde_json::to_vec_pretty(&TokensDoc { tokens })
        .map_err(|e| Error::Internal(format!("encoding tokens: {e}")))?;
    let temp = data_dir.join("tokens.json.tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temp)
            .map_err(io(format!("creating {}", temp.display())))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", temp.display())))?;
    }
    std::fs::rename(&temp, &path).map_err(io(format!("replacing {}", path.display())))?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(format!("syncing {}", data_dir.display())))?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_verifies_and_nothing_else_does() {
        let (token, entry) = generate("ci", BTreeSet::from([Scope::Write])).unwrap();
        entry.check().unwrap();
        assert_eq!(id_of(&token), Some(entry.id.as_str()));
        assert!(entry.verify(&token));
        let mut wrong = token.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
        assert!(!entry.verify(std::str::from_utf8(&wrong).unwrap()));
        assert!(!entry.hash.contains(&token[PREFIX.len() + ID_HEX + 1..]));
        assert!(entry.allows(Scope::Write) && !entry.allows(Scope::Query));
    }

    #[test]
    fn only_the_exact_shape_is_a_token() {
        let good = format!("weir_{}_{}", "a".repeat(12), "0".repeat(64));
        assert!(id_of(&good).is_some());
        for bad in [
            String::new(),
            "weir_".into(),
            format!("weir_{}_{}", "A".repeat(12), "0".repeat(64)),
            format!("weir_{}_{}", "a".repeat(11), "0".repeat(64)),
            format!("weir_{}_{}", "a".repeat(12), "0".repeat(63)),
            format!("weir_{}_{}0", "a".repeat(12), "0".repeat(64)),
            format!("weir_{}_{}", "a".repeat(12), "g".repeat(64)),
            format!("xeir_{}_{}", "a".repeat(12), "0".repeat(64)),
            format!("weir_{}-{}", "a".repeat(12), "0".repeat(64)),
        ] {
            assert_eq!(id_of(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn edits_are_kept_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a) = generate("a", BTreeSet::from([Scope::Query])).unwrap();
        let (_, b) = generate("b", BTreeSet::from([Scope::Admin])).unwrap();
        edit(dir.path(), |t| {
            t.push(a.clone());
            t.push(b.clone());
            Ok(())
        })
        .unwrap();
        edit(dir.path(), |t| {
            t.retain(|e| e.id != a.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(load(&tokens_path(dir.path())).unwrap(), vec![b]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tokens_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        std::fs::write(tokens_path(dir.path()), b"{\"tokens\": [{\"id\": 1}]}").unwrap();
        assert!(load(&tokens_path(dir.path())).is_err());
    }
}
