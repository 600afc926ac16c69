//! Validation errors that name the field (and, when read from a file, the file and line), and
//! the format checks shared by every kind: names, labels, digests.

use std::fmt;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the object root, e.g. `spec.source.registry`.
    pub path: String,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
            file: None,
            line: None,
            column: None,
        }
    }

    /// Places the error at a line and column (1-based) of a file.
    pub fn at(mut self, file: Option<&str>, line: Option<usize>, column: Option<usize>) -> Self {
        if self.file.is_none() {
            self.file = file.map(str::to_string);
        }
        if self.line.is_none() {
            self.line = line;
            self.column = column;
        }
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, None) => {}
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in one object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        ValidationErrors(vec![e])
    }
}

impl ValidationErrors {
    /// `Ok` when the list is empty.
    pub fn check(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

/// `s` quoted for a message, at most 64 characters of it (input can be huge).
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(64) {
        None => format!("{s:?}"),
        Some((i, _)) => format!("{:?}… ({} bytes)", &s[..i], s.len()),
    }
}

/// An object name: a DNS-1123 subdomain (lowercase letters, digits, `-` and `.`, starting and
/// ending with a letter or digit, at most 253 characters).
pub fn check_name(path: &str, name: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(FieldError::new(path, "must not be empty"));
        return;
    }
    if name.len() > 253 {
        errors.push(FieldError::new(path, "must be at most 253 characters"));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.chars().all(ok_char) || !name.starts_with(alnum) || !name.ends_with(alnum) {
        errors.push(FieldError::new(
            path,
            format!(
                "{} is not a valid name: use lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit",
                quoted(name)
            ),
        ));
    }
}

/// A label key (`[prefix/]name`) or value, as Kubernetes accepts them.
pub fn check_label(path: &str, key: &str, value: &str, errors: &mut Vec<FieldError>) {
    let segment_ok = |s: &str, allow_empty: bool| {
        if s.is_empty() {
            return allow_empty;
        }
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let mut sub = Vec::new();
            check_name(path, prefix, &mut sub);
            if !sub.is_empty() {
                errors.push(FieldError::new(
                    format!("{path}.{key}"),
                    "label key prefix must be a DNS subdomain",
                ));
            }
            name
        }
        None => key,
    };
    if !segment_ok(name, false) {
        errors.push(FieldError::new(
            format!("{path}.{key}"),
            "label key must be 1-63 letters, digits, '-', '_' or '.', starting and ending \
             with a letter or digit",
        ));
    }
    if !segment_ok(value, true) {
        errors.push(FieldError::new(
            format!("{path}.{key}"),
            format!("label value {value:?} must be at most 63 letters, digits, '-', '_' or '.'"),
        ));
    }
}

/// A `sha256:<64 lowercase hex>` digest.
pub fn check_digest(path: &str, digest: &str, errors: &mut Vec<FieldError>) {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    });
    if !ok {
        errors.push(FieldError::new(
            path,
            format!("{digest:?} is not a digest of the form sha256:<64 lowercase hex digits>"),
        ));
    }
}

/// A non-empty string.
pub fn check_not_empty(path: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(path, "must not be empty"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_subdomain_rules() {
        for ok in ["a", "web-1", "svc.example", "0abc"] {
            let mut e = Vec::new();
            check_name("metadata.name", ok, &mut e);
            assert!(e.is_empty(), "{ok}: {e:?}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", "a b"] {
            let mut e = Vec::new();
            check_name("metadata.name", bad, &mut e);
            assert_eq!(e.len(), 1, "{bad} should be refused");
            assert_eq!(e[0].path, "metadata.name");
        }
    }

    #[test]
    fn digests_must_be_sha256_with_64_hex_digits() {
        let mut e = Vec::new();
        check_digest("spec.digest", &format!("sha256:{}", "a".repeat(64)), &mut e);
        assert!(e.is_empty());
        check_digest("spec.digest", "sha256:abc", &mut e);
        check_digest("spec.digest", &format!("md5:{}", "a".repeat(64)), &mut e);
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn labels_are_checked_like_kubernetes_labels() {
        let mut e = Vec::new();
        check_label("metadata.labels", "app", "web", &mut e);
        check_label("metadata.labels", "aos.edge/role", "", &mut e);
        assert!(e.is_empty(), "{e:?}");
        check_label("metadata.labels", "bad key", "x", &mut e);
        check_label("metadata.labels", "k", "bad value!", &mut e);
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn an_error_prints_file_line_field_and_message() {
        let e = FieldError::new("spec.version", "must not be empty").at(
            Some("a.yaml"),
            Some(7),
            Some(3),
        );
        assert_eq!(e.to_string(), "a.yaml:7: spec.version: must not be empty");
    }
}
