//! Who may reach what: the one place that decides whether a [`Caller`] — a request's credential, or the code of a
//! running job acting with its job's authority — reaches a user, a job, the agent's Data, Products, or what belongs
//! to the agent as a whole (its variables, settings and keys).
//!
//! The engine asks [`Caller::check`] before every operation on a job ([`crate::Engine::job`]); the host side of a
//! run asks it before every host call ([`crate::host`]), with the running job's authority; the API asks it for the
//! routes about users, Data and Products. A refusal is a [`Denied`], which the API answers as if the thing did not
//! exist (another user's job or record) or with 403 (a scope, the agent's own settings), and which job code receives
//! as an error naming the rule.

use sundial_core::{Authority, Job, Scope};

use crate::engine::Caller;

/// What a caller wants to reach.
#[derive(Clone, Copy, Debug)]
pub enum Reach<'a> {
    /// A user's record or conversation.
    User(&'a str),
    /// One job (to read or change it).
    Job(&'a Job),
    /// The agent's jobs as a whole: listing them, creating one.
    Jobs,
    /// The agent's Data collections.
    Data,
    /// The agent's products.
    Products,
    /// What belongs to the agent alone: its `env` variables, settings, keys and tokens.
    Agent,
}

/// Why a caller may not reach something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Another user's job or record: answered as if it did not exist.
    #[error("{rule}")]
    Hidden {
        /// What it is (`job`, `user`), for the API's `<what>_not_found`.
        what: &'static str,
        /// The rule, for job code.
        rule: String,
    },
    /// Outside the scopes of a user's authority.
    #[error("{rule}")]
    Scope {
        /// The scope it needs.
        scope: Scope,
        /// The rule.
        rule: String,
    },
    /// Only the agent's authority reaches it.
    #[error("{rule}")]
    Agent {
        /// The rule.
        rule: String,
    },
}

impl Caller {
    /// A caller acting for the whole agent.
    pub fn agent(agent_id: impl Into<String>) -> Caller {
        Caller { agent_id: agent_id.into(), user_id: None, authority: Authority::Agent }
    }

    /// A caller acting for the agent on behalf of `user_id` (an agent key with `X-User-Id`): it makes jobs for that
    /// user and does not see other users' jobs, but keeps the agent's authority.
    pub fn agent_for_user(agent_id: impl Into<String>, user_id: Option<String>) -> Caller {
        Caller { agent_id: agent_id.into(), user_id, authority: Authority::Agent }
    }

    /// Whether this caller may reach `reach`.
    pub fn check(&self, reach: Reach<'_>) -> Result<(), Denied> {
        let user = self.user_id.as_deref().unwrap_or_default();
        match (self.authority, reach) {
            // An agent key acting for a user keeps to that user's jobs and the agent's pre-defined ones.
            (Authority::Agent, Reach::Job(job)) if self.user_id.is_some() => {
                if job.dynamic && job.user_id.as_deref() != Some(user) {
                    return Err(Denied::Hidden { what: "job", rule: format!("job {} is not user {user}'s", job.id) });
                }
                Ok(())
            }
            (Authority::Agent, _) => Ok(()),
            (Authority::User(_), Reach::User(other)) if other != user => Err(Denied::Hidden {
                what: "user",
                rule: format!("this acts for user {user}, so it can reach only that user, not {other}"),
            }),
            (Authority::User(_), Reach::User(_)) => Ok(()),
            (Authority::User(_), Reach::Job(job)) if job.user_id.as_deref() != Some(user) => Err(Denied::Hidden {
                what: "job",
                rule: format!("this acts for user {user}, so it can reach only that user's jobs, not job {}", job.id),
            }),
            (Authority::User(_), Reach::Job(_)) => Ok(()),
            (Authority::User(scopes), Reach::Jobs | Reach::Data | Reach::Products) => {
                let scope = match reach {
                    Reach::Jobs => Scope::Jobs,
                    Reach::Data => Scope::Data,
                    _ => Scope::Products,
                };
                if scopes.contains(scope) {
                    return Ok(());
                }
                let held = scopes.names();
                Err(Denied::Scope {
                    scope,
                    rule: format!(
                        "this acts for user {user} with the scopes [{}], which do not include {:?}",
                        held.join(", "),
                        scope.as_str()
                    ),
                })
            }
            (Authority::User(_), Reach::Agent) => Err(Denied::Agent {
                rule: format!("this acts for user {user}: only the agent's authority reaches this"),
            }),
        }
    }

    /// This caller narrowed to `authority` (what a running job acts with).
    pub fn with_authority(mut self, authority: Authority) -> Caller {
        self.authority = self.authority.narrowest(authority);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_core::Scopes;

    fn job(user: Option<&str>) -> Job {
        let now = chrono::Utc::now();
        Job {
            id: "job_1".into(),
            agent_id: "a".into(),
            name: "j".into(),
            description: None,
            dynamic: user.is_some(),
            user_id: user.map(str::to_owned),
            authority: Authority::Agent,
            active: true,
            status: sundial_core::JobStatus::Active,
            metadata: Default::default(),
            policy: Default::default(),
            active_version_id: None,
            anchor_at: now,
            next_run_at: None,
            last_run_at: None,
            consecutive_failures: 0,
            missed_slots: 0,
            created_at: now,
            updated_at: now,
        }
    }

    fn user(scopes: &[Scope]) -> Caller {
        Caller {
            agent_id: "a".into(),
            user_id: Some("u1".into()),
            authority: Authority::User(Scopes::of(scopes.iter().copied())),
        }
    }

    #[test]
    fn a_users_authority_reaches_only_that_user_and_its_scopes() {
        let only_jobs = user(&[Scope::Jobs]);
        assert!(only_jobs.check(Reach::User("u1")).is_ok());
        assert!(matches!(only_jobs.check(Reach::User("u2")), Err(Denied::Hidden { what: "user", .. })));
        assert!(only_jobs.check(Reach::Job(&job(Some("u1")))).is_ok());
        assert!(matches!(only_jobs.check(Reach::Job(&job(Some("u2")))), Err(Denied::Hidden { what: "job", .. })));
        assert!(matches!(only_jobs.check(Reach::Job(&job(None))), Err(Denied::Hidden { what: "job", .. })));
        assert!(only_jobs.check(Reach::Jobs).is_ok());
        assert!(matches!(only_jobs.check(Reach::Data), Err(Denied::Scope { scope: Scope::Data, .. })));
        assert!(matches!(only_jobs.check(Reach::Products), Err(Denied::Scope { scope: Scope::Products, .. })));
        assert!(matches!(only_jobs.check(Reach::Agent), Err(Denied::Agent { .. })));
    }

    #[test]
    fn the_agents_authority_reaches_everything_but_other_users_jobs_when_acting_for_a_user() {
        let agent = Caller::agent("a");
        for reach in [Reach::User("u2"), Reach::Job(&job(Some("u2"))), Reach::Data, Reach::Agent] {
            assert!(agent.check(reach).is_ok());
        }
        let for_u1 = Caller::agent_for_user("a", Some("u1".into()));
        assert!(for_u1.check(Reach::Job(&job(None))).is_ok());
        assert!(for_u1.check(Reach::User("u2")).is_ok());
        assert!(matches!(for_u1.check(Reach::Job(&job(Some("u2")))), Err(Denied::Hidden { .. })));
    }
}
