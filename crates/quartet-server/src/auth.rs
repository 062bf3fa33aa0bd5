//! Tokens: who a client is and what it may do, on a server started with `--auth-secret`.
//!
//! A token is a JSON Web Token (RFC 7519) signed with HMAC-SHA256 (`HS256`): three base64url
//! parts, `header.claims.signature`, where the signature is the HMAC of `header.claims` under
//! the server's secret. Whoever holds the secret (the server, and the service that logs users in
//! and mints their tokens) can make tokens; nobody else can make or alter one.
//!
//! Checked, in this order, each failure a `401` with its code:
//! - the shape (three parts, base64url, JSON) and the header's `alg`, which must be `HS256`
//!   (a token saying `none`, or an algorithm of another family, is refused: the verifier decides
//!   the algorithm, never the token) → `unauthorized`;
//! - the signature, compared in constant time → `unauthorized`;
//! - `exp` (required, Unix seconds), with [`LEEWAY`] for clocks that differ → `token_expired`;
//!   `nbf`, if present → `unauthorized`;
//! - `sub` (required, a user name), `role` and `rooms` (optional) → `unauthorized` if invalid.
//!
//! What the claims grant is a [`Grant`], kept with the session: registering is the only moment a
//! token is read, and the client id the server then hands out is the session's bearer secret.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use quartet_core::{Grant, Role};
use quartet_protocol::{Error, ErrorCode, UserName};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Seconds a token is still taken after its `exp` (or before its `nbf`): clocks of the server
/// and of the service minting tokens differ a little.
pub const LEEWAY: u64 = 30;

/// Longest token read, in bytes: a token's claims are a name, a role and a few room patterns.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Shortest secret that is not called weak, in bytes. HS256 keys shorter than the hash (32
/// bytes) weaken it, and a secret anyone could guess makes every token forgeable. A shorter one
/// is still taken (a test's `--auth-secret s3cret`), with a warning: see [`Auth::is_weak`].
pub const STRONG_SECRET_BYTES: usize = 32;

/// The claims quartet reads (others are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `viewer`, `member` (the default), `host` or `moderator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Room names and `prefix*` patterns the user may join; absent: every room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Mints and checks tokens under one secret.
#[derive(Clone)]
pub struct Auth {
    key: Hmac<Sha256>,
    weak: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(HS256, secret not shown)")
    }
}

impl Auth {
    /// Tokens signed with `secret` (not empty; see [`Auth::is_weak`]).
    pub fn new(secret: &str) -> Result<Auth, String> {
        if secret.is_empty() {
            return Err("the auth secret is empty".into());
        }
        let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Auth { key, weak: secret.len() < STRONG_SECRET_BYTES })
    }

    /// Whether the secret is shorter than [`STRONG_SECRET_BYTES`]: fine for a test, not for a
    /// server people rely on (`openssl rand -base64 48` makes a good one).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// A token carrying `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
        let mut token = encode_part(&header);
        token.push('.');
        token.push_str(&encode_part(claims));
        let signature = self.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }

    /// The user and rights `token` carries, at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<(UserName, Grant), Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthorized("a token is three base64url parts joined by dots"));
        };
        let header: Header = decode_part(header_part, "header")?;
        if header.alg != "HS256" {
            return Err(unauthorized(format!(
                "the token is signed with {:?}; this server takes HS256",
                header.alg
            )));
        }
        let signature =
            URL_SAFE_NO_PAD.decode(signature).map_err(|_| unauthorized("the signature is not base64url"))?;
        let signed = &token[..header_part.len() + 1 + claims_part.len()];
        let mut mac = self.key.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).map_err(|_| unauthorized("bad signature"))?;
        let claims: Claims = decode_part(claims_part, "claims")?;
        if now > claims.exp.saturating_add(LEEWAY) {
            return Err(Error::new(
                ErrorCode::TokenExpired,
                format!("the token expired {} s ago: get a new one", now - claims.exp),
            ));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY)) {
            return Err(unauthorized("the token is not valid yet (nbf)"));
        }
        let user = UserName::parse(&claims.sub).map_err(|e| unauthorized(format!("sub: {}", e.message)))?;
        let role =
            claims.role.as_deref().map(Role::parse).transpose().map_err(|e| unauthorized(e.message))?;
        let grant = Grant::new(role.unwrap_or_default(), claims.rooms)
            .map_err(|e| unauthorized(format!("rooms: {}", e.message)))?;
        Ok((user, grant))
    }

    fn sign(&self, signed: &[u8]) -> Vec<u8> {
        let mut mac = self.key.clone();
        mac.update(signed);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Who a new client is and what it may do: on an open server (`auth` is `None`), `name` (or
/// `guest`) with every right; with a secret, the user of the token `token` yields (its error
/// when there is none) with the token's rights, and a `name`, if given, must be that user.
pub(crate) fn identity<'a>(
    auth: Option<&Auth>,
    name: Option<String>,
    token: impl FnOnce() -> Result<&'a str, Error>,
) -> Result<(String, Grant), Error> {
    let Some(auth) = auth else {
        return Ok((name.unwrap_or_else(|| "guest".to_owned()), Grant::open()));
    };
    let (user, grant) = auth.verify(token()?, now())?;
    if let Some(name) = name.filter(|name| name != user.as_str()) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!("the token is for user {user}, not {name}: leave `name` out or make it match"),
        ));
    }
    Ok((user.to_string(), grant))
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn unauthorized(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Unauthorized, message)
}

fn encode_part(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("token parts serialise"))
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, Error> {
    let bytes =
        URL_SAFE_NO_PAD.decode(part).map_err(|_| unauthorized(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| unauthorized(format!("the {what} is not what a token holds: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            nbf: None,
            role: Some("host".into()),
            rooms: Some(vec!["live-*".into()]),
        }
    }

    #[test]
    fn a_minted_token_verifies_and_carries_its_grant() {
        let auth = Auth::new(SECRET).unwrap();
        let (user, grant) = auth.verify(&auth.mint(&claims(2_000)), 1_000).unwrap();
        assert_eq!(user.as_str(), "alice");
        assert_eq!(grant, Grant::new(Role::Host, Some(vec!["live-*".into()])).unwrap());
    }

    #[test]
    fn forged_altered_expired_and_malformed_tokens_are_refused_with_their_code() {
        let auth = Auth::new(SECRET).unwrap();
        let other = Auth::new("another-secret-of-at-least-32-bytes!").unwrap();
        let token = auth.mint(&claims(2_000));
        let code = |token: &str, now: u64| auth.verify(token, now).unwrap_err().code;
        assert_eq!(code(&other.mint(&claims(2_000)), 1_000), ErrorCode::Unauthorized, "other secret");
        // The claims changed (a viewer making itself host), the signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            encode_part(&Claims { sub: "mallory".into(), ..claims(2_000) }),
            parts[2]
        );
        assert_eq!(code(&forged, 1_000), ErrorCode::Unauthorized, "altered claims");
        let none = format!("{}.{}.", encode_part(&Header { alg: "none".into(), typ: None }), parts[1]);
        assert_eq!(code(&none, 1_000), ErrorCode::Unauthorized, "alg none");
        assert_eq!(code(&token, 2_000 + LEEWAY + 1), ErrorCode::TokenExpired);
        assert!(auth.verify(&token, 2_000 + LEEWAY).is_ok(), "within the leeway");
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert_eq!(code(bad, 1_000), ErrorCode::Unauthorized, "{bad:?}");
        }
        let bad_role = auth.mint(&Claims { role: Some("admin".into()), ..claims(2_000) });
        assert_eq!(code(&bad_role, 1_000), ErrorCode::Unauthorized, "unknown role");
        let not_yet = auth.mint(&Claims { nbf: Some(5_000), ..claims(9_000) });
        assert_eq!(code(&not_yet, 1_000), ErrorCode::Unauthorized, "nbf");
    }

    #[test]
    fn short_secrets_are_called_weak_and_empty_ones_refused() {
        assert!(Auth::new("").is_err());
        assert!(Auth::new("s3cret").unwrap().is_weak());
        assert!(!Auth::new(SECRET).unwrap().is_weak());
    }
}
