//! How failures reach the log: with their whole chain of causes.
//!
//! Error types here keep their cause as a `source` rather than in their message (a store
//! error says "database error" and carries SQLite's reason as its source), so logging only an
//! error's `Display` would drop the part an operator needs. Log errors as
//! `error = %Causes(&e)`.

use std::fmt;

/// An error and each of its causes, outermost first, joined by `": "`.
pub struct Causes<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open database x.db")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn shows_every_cause() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(
            Causes(&e).to_string(),
            "cannot open database x.db: disk full"
        );
    }
}
