//! Errors of the recorded-traffic loader: each names the file and, where known, the field.

use std::{fmt, path::PathBuf};

use revm::primitives::B256;

/// Loading recorded traffic failed. Always an environment failure, never a bug: the message
/// names the file and the field so the operator can fix the data.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// The file (or folder) that is missing or wrong.
    pub file: PathBuf,
    /// The field inside the file, as a JSON path (`transactions[3].gas`), when known.
    pub field: Option<String>,
    /// What is wrong (boxed: the error stays small on the happy path's `Result`s).
    #[source]
    pub kind: Box<LoadErrorKind>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What is wrong with a recorded-traffic file.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// The file cannot be read (absent, unreadable, not gzip).
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not the JSON the format expects.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The fork name is not one prescient knows.
    #[error("unknown fork `{0}`")]
    UnknownFork(String),
    /// An account refers to code the bytecode table does not have.
    #[error("code hash {0} is not in the bytecode table")]
    MissingBytecode(B256),
    /// A hash recomputed from the content differs from the one recorded.
    #[error("{what} hashes to {computed}, but the file says {recorded}")]
    HashMismatch {
        /// What was hashed: "bytecode", "transaction", "header".
        what: &'static str,
        /// The hash the file records.
        recorded: B256,
        /// The hash of the content.
        computed: B256,
    },
    /// The block is not in the dataset.
    #[error("block {0} is not in this dataset")]
    UnknownBlock(u64),
    /// The block is listed but some of its code is missing, so it cannot be replayed.
    #[error("block {number} is incomplete: {missing} code hashes are missing")]
    Incomplete {
        /// The block number.
        number: u64,
        /// How many code hashes are missing.
        missing: usize,
    },
    /// A value is well-formed JSON but not acceptable (wrong length, out of range).
    #[error("{0}")]
    Invalid(String),
}

impl LoadError {
    /// An error about a whole file.
    pub fn new(file: impl Into<PathBuf>, kind: LoadErrorKind) -> Self {
        Self { file: file.into(), field: None, kind: Box::new(kind) }
    }

    /// An error about one field of a file.
    pub fn at(file: impl Into<PathBuf>, field: impl Into<String>, kind: LoadErrorKind) -> Self {
        Self { file: file.into(), field: Some(field.into()), kind: Box::new(kind) }
    }

    /// Whether the file or folder simply does not exist (as opposed to being wrong).
    pub fn is_not_found(&self) -> bool {
        matches!(&*self.kind, LoadErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}
