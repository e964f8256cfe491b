//! Built-in commands, answered by Switchyard without a backend.

use serde_json::Value;

use super::Caller;
use crate::protocol::CommandError;

/// A built-in command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `"pong"`.
    Ping,
    /// The argument, back.
    Echo,
    /// The socket's user, or null.
    Whoami,
}

impl Builtin {
    /// The built-in with this name.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "ping" => Some(Self::Ping),
            "echo" => Some(Self::Echo),
            "whoami" => Some(Self::Whoami),
            _ => None,
        }
    }

    /// Runs the command.
    pub fn run(self, args: Value, caller: &Caller) -> Result<Value, CommandError> {
        Ok(match self {
            Self::Ping => Value::from("pong"),
            Self::Echo => args,
            Self::Whoami => serde_json::to_value(caller.user.as_deref()).unwrap_or(Value::Null),
        })
    }
}
