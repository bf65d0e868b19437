//! What a job's code may reach: the authority of the credential that made the job (SPEC §6).
//!
//! A job made with the admin key or an agent key acts for the whole agent. A job made with a user token (or through
//! an MCP tool, or by an agent key that asked for it) acts for its one user, and for the agent's Data and Products
//! only within the token's scopes. Authority only ever narrows: a change by a narrower credential narrows the job to
//! the narrower of the two ([`Authority::narrowest`]); only an agent key widens it, and only when it says so.

use serde_json::{json, Value};

use crate::retry::json_type;
use crate::FieldError;

/// A part of the agent that a user's authority may reach beyond the user's own record, conversation and jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Jobs (creating, listing and changing the user's jobs), executions and schedule previews.
    Jobs,
    /// The agent's Data collections.
    Data,
    /// The agent's product catalogue.
    Products,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 3] = [Scope::Jobs, Scope::Data, Scope::Products];

    /// The wire name (`jobs`, `data`, `products`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Jobs => "jobs",
            Scope::Data => "data",
            Scope::Products => "products",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Jobs => 1,
            Scope::Data => 2,
            Scope::Products => 4,
        }
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: a user token minted without `scopes`.
    pub const ALL: Scopes = Scopes(7);
    /// No scope.
    pub const NONE: Scopes = Scopes(0);

    /// The set holding `scopes`.
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Scopes {
        Scopes(scopes.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in both sets.
    pub fn intersection(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    /// The scopes of the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |scope| self.contains(*scope))
    }

    /// The wire names of the scopes.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// The set as stored (a bit per scope).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set stored as `bits`; `None` for bits no scope has (a corrupt or newer row).
    pub fn from_bits(bits: i64) -> Option<Scopes> {
        u8::try_from(bits).ok().filter(|bits| bits & !Scopes::ALL.0 == 0).map(Scopes)
    }
}

/// What a job's code may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Authority {
    /// The whole agent: every user, its `env`, Data, Products and every job (made with the admin key or an agent
    /// key).
    #[default]
    Agent,
    /// The job's own user: their record, conversation and jobs; the agent's Data and Products only within the
    /// scopes; of the agent's `env`, only the variables the agent exposes to user jobs.
    User(Scopes),
}

impl Authority {
    /// The narrower of two authorities: what a job changed by a narrower credential keeps.
    pub fn narrowest(self, other: Authority) -> Authority {
        match (self, other) {
            (Authority::Agent, other) | (other, Authority::Agent) => other,
            (Authority::User(mine), Authority::User(theirs)) => Authority::User(mine.intersection(theirs)),
        }
    }

    /// Whether this authority reaches nothing that `other` does not.
    pub fn is_within(self, other: Authority) -> bool {
        self.narrowest(other) == self
    }

    /// Whether this is the authority of one user.
    pub fn is_user(self) -> bool {
        matches!(self, Authority::User(_))
    }

    /// Whether the authority reaches `scope` of the agent.
    pub fn reaches(self, scope: Scope) -> bool {
        match self {
            Authority::Agent => true,
            Authority::User(scopes) => scopes.contains(scope),
        }
    }

    /// The stored form: `None` for the agent, the scopes' bits for a user.
    pub fn stored(self) -> Option<i64> {
        match self {
            Authority::Agent => None,
            Authority::User(scopes) => Some(i64::from(scopes.bits())),
        }
    }

    /// Reads the stored form; `None` when the bits name no scope set (a corrupt or newer row).
    pub fn from_stored(stored: Option<i64>) -> Option<Authority> {
        match stored {
            None => Some(Authority::Agent),
            Some(bits) => Scopes::from_bits(bits).map(Authority::User),
        }
    }

    /// Reads an asked-for authority: `"agent"`, or `"user"` (the job's user, with every scope the asking credential
    /// has).
    pub fn parse_request(value: Option<&Value>, field: &str) -> Result<Option<Authority>, FieldError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(kind)) if kind == "agent" => Ok(Some(Authority::Agent)),
            Some(Value::String(kind)) if kind == "user" => Ok(Some(Authority::User(Scopes::ALL))),
            Some(Value::String(_)) => Err(FieldError::new(field, "must be agent or user")),
            Some(other) => Err(FieldError::new(field, format!("must be agent or user, got {}", json_type(other)))),
        }
    }

    /// The wire view: `{kind: "agent"}` or `{kind: "user", userId, scopes}`.
    pub fn view(self, user_id: Option<&str>) -> Value {
        match self {
            Authority::Agent => json!({"kind": "agent"}),
            Authority::User(scopes) => json!({"kind": "user", "userId": user_id, "scopes": scopes.names()}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_only_narrows() {
        let data_only = Authority::User(Scopes::of([Scope::Data]));
        let jobs_data = Authority::User(Scopes::of([Scope::Jobs, Scope::Data]));
        assert_eq!(Authority::Agent.narrowest(jobs_data), jobs_data);
        assert_eq!(jobs_data.narrowest(Authority::Agent), jobs_data);
        assert_eq!(jobs_data.narrowest(data_only), data_only);
        assert_eq!(Authority::Agent.narrowest(Authority::Agent), Authority::Agent);
        assert!(data_only.is_within(jobs_data));
        assert!(!jobs_data.is_within(data_only));
        assert!(jobs_data.is_within(Authority::Agent));
        assert!(!Authority::Agent.is_within(jobs_data));
    }

    #[test]
    fn the_stored_form_reads_back_and_refuses_unknown_bits() {
        for authority in [Authority::Agent, Authority::User(Scopes::NONE), Authority::User(Scopes::ALL)] {
            assert_eq!(Authority::from_stored(authority.stored()), Some(authority));
        }
        assert_eq!(Authority::from_stored(Some(8)), None);
        assert_eq!(Authority::from_stored(Some(-1)), None);
    }
}
