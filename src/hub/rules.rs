//! Channel rules, compiled once from `[[channels]]`: which rule a channel falls under, and
//! whether a user may subscribe or publish there.
//!
//! Two lookups, because of personal channels. A channel's *room* (history, presence, slow
//! reader) follows the first rule whose pattern fits the channel's shape for any user
//! ([`Rules::for_channel`]); a *permission* follows the first rule that matches for the
//! asking user, `{user_id}` bound to their id ([`Rules::for_user`]). So with
//! `user:{user_id}` first and `user:*` (staff) second, user 42 subscribes to `user:42` under
//! the first and a staff member reads `user:42` under the second.

use std::sync::Arc;
use std::time::Duration;

use super::outbox::Policy;
use crate::config::{ChannelConfig, ChannelPattern, Permission};
use crate::django::User;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The pattern, as written.
    pub pattern: ChannelPattern,
    /// Who may subscribe.
    pub subscribe: Permission,
    /// Who may publish from a socket.
    pub publish: Permission,
    /// The Django view asked for "backend" permissions.
    pub authorize: Option<String>,
    /// How long its answers are reused.
    pub authorize_ttl: Duration,
    /// Events kept (0: none).
    pub history_size: usize,
    /// How long they are kept.
    pub history_ttl: Duration,
    /// Whether join/leave frames are sent.
    pub presence: bool,
    /// What a full queue does, and this channel's own bounds in a queue.
    pub policy: Policy,
}

/// What a permission says for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// No: nobody may, or this user lacks the rights.
    Deny,
    /// Ask the rule's `authorize` view.
    AskBackend,
}

/// Which action a permission is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `subscribe`, `presence`, `history`.
    Subscribe,
    /// `publish` from a socket.
    Publish,
}

impl Action {
    /// The name sent to `authorize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        }
    }
}

/// The rules in config order.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    list: Arc<Vec<Arc<Rule>>>,
}

impl Rules {
    /// Compiles `[[channels]]`.
    pub fn new(config: &[ChannelConfig]) -> Self {
        let list = config.iter().map(|c| Arc::new(Rule::new(c))).collect();
        Self { list: Arc::new(list) }
    }

    /// The rule a channel's room follows, whoever subscribes.
    pub fn for_channel(&self, channel: &str) -> Option<Arc<Rule>> {
        self.list.iter().find(|r| r.pattern.matches_any_user(channel)).cloned()
    }

    /// The rule that decides for `user` on `channel`.
    pub fn for_user(&self, channel: &str, user: Option<&User>) -> Option<Arc<Rule>> {
        let id = user.map(|u| u.id.as_str());
        self.list.iter().find(|r| r.pattern.matches(channel, id)).cloned()
    }
}

impl Rule {
    fn new(c: &ChannelConfig) -> Self {
        Self {
            pattern: c.pattern.clone(),
            subscribe: c.subscribe,
            publish: c.publish,
            authorize: c.authorize.as_ref().map(|u| u.0.clone()),
            authorize_ttl: c.authorize_ttl,
            history_size: c.history_size,
            history_ttl: c.history_ttl,
            presence: c.presence,
            policy: Policy { slow_reader: c.slow_reader, max_messages: c.outbox_messages, max_bytes: c.outbox_bytes },
        }
    }

    /// What this rule says about `user` doing `action`.
    pub fn verdict(&self, action: Action, user: Option<&User>) -> Verdict {
        let permission = match action {
            Action::Subscribe => self.subscribe,
            Action::Publish => self.publish,
        };
        let allowed = match (permission, user) {
            (Permission::Backend, _) => return Verdict::AskBackend,
            (Permission::Nobody, _) => false,
            (Permission::Anyone, _) => true,
            (_, None) => false,
            (Permission::Authenticated, Some(_)) => true,
            (Permission::Staff, Some(u)) => u.is_staff || u.is_superuser,
            (Permission::Superuser, Some(u)) => u.is_superuser,
        };
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlowReader;

    fn rule(pattern: &str, subscribe: Permission) -> ChannelConfig {
        ChannelConfig {
            pattern: ChannelPattern::parse(pattern).unwrap(),
            subscribe,
            authorize: None,
            authorize_ttl: Duration::from_secs(1),
            publish: Permission::Nobody,
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            presence: false,
            slow_reader: SlowReader::Disconnect,
            outbox_messages: None,
            outbox_bytes: None,
        }
    }

    fn user(id: &str, staff: bool) -> User {
        User { id: id.into(), username: "u".into(), is_staff: staff, is_superuser: false }
    }

    #[test]
    fn personal_channels_bind_to_the_user_and_fall_through_for_others() {
        let rules = Rules::new(&[rule("user:{user_id}", Permission::Authenticated), rule("user:*", Permission::Staff)]);
        let owner = user("42", false);
        let staff = user("7", true);
        let first = rules.for_user("user:42", Some(&owner)).unwrap();
        assert_eq!(first.verdict(Action::Subscribe, Some(&owner)), Verdict::Allow);
        let second = rules.for_user("user:42", Some(&user("8", false))).unwrap();
        assert_eq!(second.verdict(Action::Subscribe, Some(&user("8", false))), Verdict::Deny);
        assert_eq!(
            rules.for_user("user:42", Some(&staff)).unwrap().verdict(Action::Subscribe, Some(&staff)),
            Verdict::Allow
        );
        assert_eq!(rules.for_channel("user:42").unwrap().pattern.to_string(), "user:{user_id}");
        assert!(rules.for_user("other", Some(&owner)).is_none());
    }

    #[test]
    fn publish_defaults_to_nobody() {
        let rules = Rules::new(&[rule("news", Permission::Anyone)]);
        let news = rules.for_channel("news").unwrap();
        assert_eq!(news.verdict(Action::Subscribe, None), Verdict::Allow);
        assert_eq!(news.verdict(Action::Publish, Some(&user("1", true))), Verdict::Deny);
    }
}
