//! The outbox's schema and its version. The install script is read out of `docs/outbox.md`
//! when the crate is built, so the document is the one place it is written down and what a
//! node runs cannot drift from it. [`ensure`] installs it when missing and refuses a newer
//! version than this build knows.

use tokio_postgres::Client;

use super::OutboxError;

/// The schema version this build reads and writes (docs/outbox.md, "Versions and migrations").
pub const VERSION: i32 = 1;

/// The contract, as written.
const DOC: &str = include_str!("../../../docs/outbox.md");

/// First line of version 1's install script inside its ```sql block.
const INSTALL_V1: &str = "-- switchyard outbox schema v1: install\n";

/// The NOTIFY channel every node listens on.
pub const CHANNEL: &str = "switchyard_outbox";

/// The text of the ```sql block that starts with `first_line`.
fn block(first_line: &str) -> Option<&'static str> {
    let start = DOC.find(&format!("```sql\n{first_line}"))? + "```sql\n".len();
    let len = DOC[start..].find("\n```")?;
    Some(&DOC[start..start + len + 1])
}

/// Version 1's install script.
pub fn install_script() -> &'static str {
    // Checked by a unit test: the document holds the block.
    block(INSTALL_V1).unwrap_or("SELECT 'docs/outbox.md lost its install script'::int")
}

/// Makes sure the outbox exists at this build's version: installs it when there is none,
/// and fails when the database holds a version this build does not know.
pub async fn ensure(client: &Client) -> Result<(), OutboxError> {
    let found: Option<i32> =
        if client.query_one("SELECT to_regclass('switchyard_outbox_meta') IS NOT NULL", &[]).await?.get(0) {
            client.query_opt("SELECT version FROM switchyard_outbox_meta", &[]).await?.map(|row| row.get(0))
        } else {
            None
        };
    match found {
        Some(VERSION) => Ok(()),
        Some(version) if version > VERSION => Err(OutboxError::Schema(format!(
            "the outbox table is schema version {version}; this Switchyard knows up to {VERSION}: upgrade Switchyard"
        ))),
        Some(version) => Err(OutboxError::Schema(format!(
            "the outbox table is schema version {version}, which no release of Switchyard wrote"
        ))),
        None => {
            // One message: the script runs in one transaction, behind its advisory lock.
            client.batch_execute(&format!("BEGIN;\n{}\nCOMMIT;", install_script())).await?;
            tracing::info!(version = VERSION, "outbox tables installed");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_holds_the_install_script() {
        let script = install_script();
        assert!(script.starts_with(INSTALL_V1));
        assert!(script.contains("CREATE TABLE IF NOT EXISTS switchyard_outbox ("));
        assert!(script.trim_end().ends_with("$$;"), "the block ends with the trigger DO block");
        assert!(!script.contains("```"));
    }
}
