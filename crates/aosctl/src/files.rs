//! Reading manifests from `-f` arguments: files, directories (their `.yaml`, `.yml` and `.json`
//! files, sorted; subdirectories with `-R`) and `-` for stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use aos_api::manifest::{parse, Document};
use aos_api::ValidationErrors;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("no objects found in {0}")]
    Empty(String),
}

fn manifest_files(dir: &Path, recursive: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            if recursive {
                out.extend(manifest_files(&p, true)?);
            }
        } else if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Reads every object of every source. All files are read and checked; every problem of every
/// file is reported together, and nothing is returned if there is any.
/// Directories are read like kubectl does: their own files, subdirectories only if `recursive`.
pub fn read_all(sources: &[String], recursive: bool) -> Result<Vec<Document>, FilesError> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for src in sources {
        let (texts, what) = if src == "-" {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|source| FilesError::Read {
                    path: "stdin".into(),
                    source,
                })?;
            (vec![("stdin".to_string(), t)], "stdin".to_string())
        } else {
            let path = Path::new(src);
            let err = |source| FilesError::Read {
                path: src.clone(),
                source,
            };
            let files = if path.is_dir() {
                manifest_files(path, recursive).map_err(err)?
            } else {
                vec![path.to_path_buf()]
            };
            let mut texts = Vec::new();
            for f in files {
                let t = std::fs::read_to_string(&f).map_err(|source| FilesError::Read {
                    path: f.display().to_string(),
                    source,
                })?;
                texts.push((f.display().to_string(), t));
            }
            (texts, src.clone())
        };
        let before = docs.len() + errors.len();
        for (name, text) in texts {
            match parse(&text, Some(&name)) {
                Ok(d) => docs.extend(d),
                Err(e) => errors.extend(e.0),
            }
        }
        if docs.len() + errors.len() == before {
            return Err(FilesError::Empty(what));
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(FilesError::Invalid(ValidationErrors(errors)))
    }
}
