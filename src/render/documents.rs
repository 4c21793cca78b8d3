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

    /// True when both hold the same objects, in any order. helm sorts a
    /// rendering by kind before it stores it (so a stored manifest lists
    /// an added Service before the Deployment it was added after), and
    /// applies objects one by one: the order of the documents is not part
    /// of what a revision is.
    pub fn same_objects(&self, other: &Checked) -> bool {
        if self.documents.len() != other.documents.len() {
            return false;
        }
        let mut unmatched: Vec<&Value> = other.documents.iter().collect();
        self.documents.iter().all(
            |document| match unmatched.iter().position(|o| *o == document) {
                Some(index) => {
                    unmatched.swap_remove(index);
                    true
                }
                None => false,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_objects_in_another_order_are_the_same() {
        let service = json!({"kind": "Service", "metadata": {"name": "a-mcp"}});
        let deployment = json!({"kind": "Deployment", "metadata": {"name": "a"}});
        let applied = Checked {
            documents: vec![deployment.clone(), service.clone()],
        };
        let stored = Checked {
            documents: vec![service.clone(), deployment.clone()],
        };
        assert!(applied.same_objects(&stored));
        // A changed object, a missing one, or one twice is not the same.
        let changed = Checked {
            documents: vec![
                service.clone(),
                json!({"kind": "Deployment", "metadata": {"name": "b"}}),
            ],
        };
        assert!(!applied.same_objects(&changed));
        let fewer = Checked {
            documents: vec![service.clone()],
        };
        assert!(!applied.same_objects(&fewer));
        let twice = Checked {
            documents: vec![service.clone(), service],
        };
        assert!(!applied.same_objects(&twice));
    }
}
