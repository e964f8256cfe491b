//! Helpers for errors that wrap errors: find a cause by type, print the whole chain.

use std::error::Error;
use std::fmt;

/// The first error of type `T` in `err`'s chain of sources (including `err` itself).
pub fn find_cause<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Displays an error and all its sources, "outer: inner: innermost", for log lines.
pub fn error_chain<'a>(err: &'a (dyn Error + 'static)) -> impl fmt::Display + 'a {
    struct Chain<'a>(&'a (dyn Error + 'static));
    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut next = self.0.source();
            while let Some(e) = next {
                write!(f, ": {e}")?;
                next = e.source();
            }
            Ok(())
        }
    }
    Chain(err)
}
