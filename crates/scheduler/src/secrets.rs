//! Agents' `env` values encrypted at rest: with a server secret (`SUNDIAL_SECRET_KEY`, or a key file), each value is
//! stored as `sundial:v1:<base64 of nonce and ChaCha20-Poly1305 ciphertext>`, bound to its agent and variable name,
//! so a copy of the database (a backup, a stolen disk) does not give the values away. The key is derived from the
//! secret with HKDF-SHA256; the secret itself is never stored.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};

/// How a sealed value starts.
const SEALED_PREFIX: &str = "sundial:v1:";

/// The shortest server secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Seals and opens `env` values with the server's secret.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretBox(…)")
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the env value {name} of agent {agent} cannot be decrypted with this server's secret key")]
pub struct Unreadable {
    /// The agent.
    pub agent: String,
    /// The variable.
    pub name: String,
}

impl SecretBox {
    /// The box for a server secret of at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(secret: &str) -> Result<SecretBox, String> {
        if secret.trim().len() < MIN_SECRET_BYTES {
            return Err(format!("the secret key must be at least {MIN_SECRET_BYTES} bytes"));
        }
        let mut bytes = [0u8; 32];
        Salt::new(HKDF_SHA256, b"sundial env at rest")
            .extract(secret.trim().as_bytes())
            .expand(&[b"chacha20-poly1305 v1"], &CHACHA20_POLY1305)
            .and_then(|okm| okm.fill(&mut bytes))
            .map_err(|_| "cannot derive a key from the secret".to_owned())?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| "cannot make the key".to_owned())?;
        Ok(SecretBox { key: LessSafeKey::new(key) })
    }

    /// `value` sealed for variable `name` of `agent`.
    pub fn seal(&self, agent: &str, name: &str, value: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| format!("no random nonce: {error}"))?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(agent, name), &mut sealed)
            .map_err(|_| "cannot encrypt".to_owned())?;
        let mut framed = nonce.to_vec();
        framed.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(framed)))
    }

    /// The value of a sealed text (see [`is_sealed`]).
    pub fn open(&self, agent: &str, name: &str, text: &str) -> Result<String, Unreadable> {
        let unreadable = || Unreadable { agent: agent.to_owned(), name: name.to_owned() };
        let encoded = text.strip_prefix(SEALED_PREFIX).ok_or_else(unreadable)?;
        let mut framed = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| unreadable())?;
        if framed.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&framed[..NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad(agent, name), &mut framed[NONCE_LEN..])
            .map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// What a sealed value is bound to: its agent and variable name (a value moved elsewhere does not open).
fn aad(agent: &str, name: &str) -> Aad<Vec<u8>> {
    Aad::from(format!("{}:{agent}\u{0}{name}", agent.len()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_agent_and_name() {
        let secrets = SecretBox::new("a long enough server secret").expect("box");
        let sealed = secrets.seal("a", "TOKEN", "s3cret").expect("seal");
        assert!(is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_eq!(secrets.open("a", "TOKEN", &sealed).expect("open"), "s3cret");
        assert_ne!(sealed, secrets.seal("a", "TOKEN", "s3cret").expect("seal"), "a fresh nonce each time");
        assert!(secrets.open("b", "TOKEN", &sealed).is_err(), "moved to another agent");
        assert!(secrets.open("a", "OTHER", &sealed).is_err(), "moved to another variable");
        let other = SecretBox::new("another long server secret").expect("box");
        assert!(other.open("a", "TOKEN", &sealed).is_err(), "another key");
        assert!(SecretBox::new("short").is_err());
    }
}
