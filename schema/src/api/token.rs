//! `api_token.schema.json`: a control API token and the role that says what it may do.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What a token may do. Every role may do what the roles after it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, `/v1/tokens` included.
    Admin,
    /// Tunnels, hostnames, policies and tunnel tokens; not `/v1/tokens`.
    Editor,
    /// Every `GET` except tunnel tokens and `/v1/tokens`.
    Viewer,
}

impl Role {
    /// The role's name in the API: `admin`, `editor`, `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role's name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether this role may do everything `other` may.
    pub fn includes(self, other: Role) -> bool {
        self <= other
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client writes for a token: the body of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenSpec {
    /// What the token is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// RFC 3339: refused after this moment; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A token as the edge returns it; `secret` only in the answer to its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Assigned by the edge (a UUID).
    pub id: String,
    /// What the token is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// RFC 3339: refused after this moment; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The token itself: only in the answer to `POST /v1/tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_weaker_ones() {
        assert!(Role::Admin.includes(Role::Editor));
        assert!(Role::Editor.includes(Role::Viewer));
        assert!(Role::Editor.includes(Role::Editor));
        assert!(!Role::Viewer.includes(Role::Editor));
        assert!(!Role::Editor.includes(Role::Admin));
        for role in [Role::Admin, Role::Editor, Role::Viewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).ok(), Some(role.as_str().into()));
        }
    }

    #[test]
    fn a_token_debug_hides_its_secret() {
        let token = ApiToken {
            id: "0".into(),
            name: "ci".into(),
            role: Role::Editor,
            expires_at: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            secret: Some(Secret::new("pst_very-secret")),
        };
        assert!(!format!("{token:?}").contains("very-secret"));
    }
}
