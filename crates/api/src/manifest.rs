//! Reading manifests: multi-document YAML or JSON (one object, an array, or a `List`) into
//! objects, with every error naming the file, the line and the field.

use serde::de::DeserializeOwned;

use crate::meta::{DynObject, Object, Spec};
use crate::registry::{self, KINDS};
use crate::validate::{FieldError, ValidationErrors};

/// One object read from a file, with the line its document starts on.
#[derive(Clone, Debug)]
pub struct Document {
    pub object: DynObject,
    pub file: Option<String>,
    pub line: usize,
}

/// Splits YAML text on `---` lines; returns (first line number, text) per document.
fn split_yaml(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // Anything after the marker on the same line belongs to the next document.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Finds the line (1-based, within `text`) of a dotted field path such as
/// `spec.source.registry` or `spec.env[1].name`, or of its deepest ancestor found.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = 0usize; // first line index to search from
    let mut parent_indent: isize = -1;
    let mut found = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().skip(pos) {
            let indent = (l.len() - l.trim_start().len()) as isize;
            let body = l.trim_start().trim_start_matches("- ");
            if indent <= parent_indent && !l.trim().is_empty() && i > pos && found.is_some() {
                break;
            }
            if body.starts_with(&format!("{key}:")) || body.starts_with(&format!("\"{key}\"")) {
                hit = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = hit else { break };
        found = Some(i + 1);
        pos = i;
        parent_indent = indent;
        if let Some(n) = index {
            // The n-th "- " item below the key.
            let mut seen = 0;
            let mut item = None;
            for (j, l) in lines.iter().enumerate().skip(i + 1) {
                let t = l.trim_start();
                if t.starts_with("- ") || t == "-" {
                    if seen == n {
                        item = Some((j, (l.len() - t.len()) as isize));
                        break;
                    }
                    seen += 1;
                }
            }
            let Some((j, ind)) = item else { break };
            found = Some(j + 1);
            pos = j;
            parent_indent = ind;
        }
    }
    found
}

/// The message of a serde error without the location and path the YAML crate adds to it (they
/// are reported separately).
pub fn clean_message(msg: &str) -> String {
    let mut m = msg;
    if let Some(i) = m.rfind(" at line ") {
        m = &m[..i];
    }
    // `spec.source: unknown field …` → `unknown field …` (the path is reported separately).
    if let Some((head, tail)) = m.split_once(": ") {
        if !head.contains(' ') {
            m = tail;
        }
    }
    m.to_string()
}

fn check_yaml_typed<S: Spec>(text: &str) -> Result<(), FieldError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Object<S>>(de)
        .map(|_| ())
        .map_err(|e| {
            let loc = e.inner().location();
            FieldError::new(e.path().to_string(), clean_message(&e.inner().to_string())).at(
                None,
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
            )
        })
}

fn check_json_typed<S: Spec>(text: &str) -> Result<(), FieldError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Object<S>>(&mut de)
        .map(|_| ())
        .map_err(|e| {
            let (line, col) = (e.inner().line(), e.inner().column());
            FieldError::new(e.path().to_string(), clean_message(&e.inner().to_string())).at(
                None,
                Some(line),
                Some(col),
            )
        })
}

/// Checks one document's text as its kind, so that shape errors carry a line number.
fn check_typed(kind: &str, text: &str, json: bool) -> Result<(), FieldError> {
    macro_rules! by_kind {
        ($($spec:ty),*) => {
            $(if kind == <$spec as Spec>::KIND {
                return if json { check_json_typed::<$spec>(text) } else { check_yaml_typed::<$spec>(text) };
            })*
        };
    }
    by_kind!(
        crate::NodeSpec,
        crate::ItemSpec,
        crate::LayerSpec,
        crate::InstanceSpec,
        crate::NetworkSpec,
        crate::BootSlotSpec,
        crate::RootfsSlotSpec
    );
    Ok(())
}

fn parse_value<T: DeserializeOwned>(text: &str, json: bool) -> Result<T, FieldError> {
    if json {
        serde_json::from_str(text).map_err(|e| {
            FieldError::new("", format!("invalid JSON: {e}")).at(
                None,
                Some(e.line()),
                Some(e.column()),
            )
        })
    } else {
        serde_norway::from_str(text).map_err(|e| {
            let loc = e.location();
            FieldError::new("", format!("invalid YAML: {e}")).at(
                None,
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
            )
        })
    }
}

/// Reads every object of a YAML or JSON text. All documents are checked; every problem is
/// returned, each with the file, line and field it concerns.
pub fn parse(text: &str, file: Option<&str>) -> Result<Vec<Document>, ValidationErrors> {
    let json = text.trim_start().starts_with(['{', '[']);
    let docs = if json {
        vec![(1, text.to_string())]
    } else {
        split_yaml(text)
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let shift = |e: FieldError, start: usize| {
        let line = e.line.map(|l| l + start - 1);
        FieldError { line, ..e }.at(file, None, None)
    };
    for (start, doc) in docs {
        let value: serde_json::Value = match parse_value(&doc, json) {
            Ok(v) => v,
            Err(e) => {
                errors.push(shift(e, start));
                continue;
            }
        };
        // A JSON array or a List holds several objects; they are checked without re-reading.
        let items = match &value {
            serde_json::Value::Array(items) => Some(items.clone()),
            serde_json::Value::Object(m)
                if m.get("kind").and_then(|k| k.as_str()) == Some("List") =>
            {
                m.get("items").and_then(|i| i.as_array()).cloned()
            }
            _ => None,
        };
        let single = items.is_none();
        for value in items.unwrap_or_else(|| vec![value]) {
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            let at_path = |path: &str| {
                if single {
                    locate(&doc, path).map(|l| l + start - 1)
                } else {
                    Some(start)
                }
            };
            if !KINDS.iter().any(|k| k.kind == kind) {
                let e = registry::validate(&DynObject {
                    api_version: String::new(),
                    kind: kind.clone(),
                    metadata: Default::default(),
                    spec: Default::default(),
                    status: Default::default(),
                });
                // An unknown kind never validates: the registry says which kinds there are.
                if let Err(e) = e {
                    errors.extend(e.0.into_iter().map(|e| e.at(file, at_path("kind"), None)));
                }
                continue;
            }
            if single {
                if let Err(e) = check_typed(&kind, &doc, json) {
                    errors.push(shift(e, start));
                    continue;
                }
            }
            let object: DynObject = match crate::meta::from_value_at(&value, "") {
                Ok(o) => o,
                Err(e) => {
                    errors.extend(e.0.into_iter().map(|e| {
                        let p = e.path.trim_start_matches('.').to_string();
                        let line = at_path(&p);
                        FieldError { path: p, ..e }.at(file, line, None)
                    }));
                    continue;
                }
            };
            match registry::validate(&object) {
                Ok(()) => out.push(Document {
                    object,
                    file: file.map(str::to_string),
                    line: start,
                }),
                Err(e) => errors.extend(e.0.into_iter().map(|e| {
                    let line = at_path(&e.path);
                    e.at(file, line, None)
                })),
            }
        }
    }
    ValidationErrors::check(errors).map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: aos.edge/v1alpha1
kind: Network
metadata:
  name: net1
spec:
  subnet: 172.18.0.0/16
---
# the second one
apiVersion: aos.edge/v1alpha1
kind: Item
metadata:
  name: hello-1.0.0
spec:
  itemId: hello
  version: 1.0.0
  source:
    registry: 127.0.0.1:5000/hello:1.0.0
";

    #[test]
    fn multi_document_yaml_gives_every_object_with_its_start_line() {
        let docs = parse(TWO, Some("x.yaml")).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].object.key(), "Network/net1");
        assert_eq!(docs[1].object.key(), "Item/hello-1.0.0");
        assert_eq!(docs[1].line, 8);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_file_and_line() {
        let text = TWO.replace("  version: 1.0.0", "  verison: 1.0.0");
        let err = parse(&text, Some("x.yaml")).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.file.as_deref(), Some("x.yaml"));
        assert_eq!(e.line, Some(15), "{err}");
        assert_eq!(e.path, "spec.verison");
        assert!(e.message.starts_with("unknown field `verison`"), "{err}");
        assert!(e.message.contains("verison"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_path_and_line() {
        let text = TWO.replace("subnet: 172.18.0.0/16", "vlanId: lots");
        let err = parse(&text, Some("x.yaml")).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "spec.vlanId");
        assert_eq!(e.line, Some(6), "{err}");
    }

    #[test]
    fn a_rule_violation_is_located_by_its_field_path() {
        let text = TWO.replace("registry: 127.0.0.1:5000/hello:1.0.0", "http: ftp://x");
        let err = parse(&text, Some("x.yaml")).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "spec.source.http");
        assert_eq!(e.line, Some(17), "{err}");
        assert_eq!(
            e.to_string(),
            "x.yaml:17: spec.source.http: must be an http:// or https:// URL"
        );
    }

    #[test]
    fn broken_yaml_syntax_reports_the_line() {
        let text = TWO.replace("  name: net1", "  name: [net1");
        let err = parse(&text, None).unwrap_err();
        assert!(err.0[0].message.contains("invalid YAML"), "{err}");
        assert!(err.0[0].line.is_some_and(|l| (4..=7).contains(&l)), "{err}");
    }

    #[test]
    fn json_objects_and_lists_are_read() {
        let one = r#"{"apiVersion":"aos.edge/v1alpha1","kind":"Network","metadata":{"name":"n"},"spec":{}}"#;
        assert_eq!(parse(one, None).unwrap().len(), 1);
        let list = format!(r#"{{"kind":"List","items":[{one},{one}]}}"#);
        assert_eq!(parse(&list, None).unwrap().len(), 2);
        let bad = one.replace(r#""spec":{}"#, r#""spec":{"vlanId":"x"}"#);
        let err = parse(&bad, None).unwrap_err();
        assert_eq!(err.0[0].path, "spec.vlanId");
        assert_eq!(err.0[0].line, Some(1));
    }

    #[test]
    fn locate_walks_nested_keys_and_list_items() {
        let text = "spec:\n  env:\n  - name: A\n  - name: B\n  other: 1\n";
        assert_eq!(locate(text, "spec.env[1].name"), Some(4));
        assert_eq!(locate(text, "spec.other"), Some(5));
        assert_eq!(locate(text, "spec.missing"), Some(1));
    }
}
