//! A rendering as the operator hands it to helm: the documents that passed
//! the confinement check, one JSON object each, to which the operator's
//! additions (a sidecar, a kept value) are then applied.

use serde_json::Value;

/// A rendering that passed, as the JSON documents helm is to apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    pub documents: Vec<Value>,
}

impl Checked {
    /// One JSON object per YAML document; a comment when there is none
    /// (helm refuses an empty post-renderer output).
    pub fn to_yaml_stream(&self) -> String {
        if self.documents.is_empty() {
            return "# no objects\n".to_owned();
        }
        let mut out = String::new();
        for document in &self.documents {
            out.push_str("---\n");
            out.push_str(&document.to_string());
            out.push('\n');
        }
        out
    }
}
