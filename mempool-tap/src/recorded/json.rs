//! Reading (optionally gzipped) JSON files with errors that name the file and the field.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use flate2::read::GzDecoder;
use serde::de::DeserializeOwned;

use super::error::{LoadError, LoadErrorKind};

/// Reads `path` (gunzipping when it ends in `.gz`) into bytes.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, LoadError> {
    let file = File::open(path).map_err(|e| LoadError::new(path, e.into()))?;
    let mut bytes = Vec::new();
    let read = if path.extension().is_some_and(|ext| ext == "gz") {
        GzDecoder::new(BufReader::new(file)).read_to_end(&mut bytes)
    } else {
        BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(|e| LoadError::new(path, e.into()))?;
    Ok(bytes)
}

/// Parses `bytes` (the content of `path`) as `T`; an error names the JSON path of the field.
pub(crate) fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, LoadError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        if field == "." || field.is_empty() {
            LoadError::new(path, LoadErrorKind::Json(message))
        } else {
            LoadError::at(path, field, LoadErrorKind::Json(message))
        }
    })
}

/// Reads and parses a JSON file.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    parse(path, &read_bytes(path)?)
}
