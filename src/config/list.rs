//! The one parser for comma-separated settings (`API_KEYS`,
//! `ALLOWED_CHART_SOURCES`, …): items trimmed, empty items dropped, so
//! `"a, b,,"` is `[a, b]` wherever it is read.

use std::str::FromStr;

/// A comma-separated list of plain words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(Vec<String>);

impl List {
    pub fn items(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, item: &str) -> bool {
        self.0.iter().any(|i| i == item)
    }
}

impl FromStr for List {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

impl<'a> IntoIterator for &'a List {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<String> for List {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Seconds, as clap parses `HELM_TIMEOUT=300` and its kin.
pub fn seconds(value: &str) -> Result<std::time::Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(std::time::Duration::from_secs)
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_drops_empty_items() {
        let list: List = " a, b,,c ,".parse().unwrap();
        assert_eq!(list.items(), ["a", "b", "c"]);
        assert!(List::from_str("").unwrap().is_empty());
        assert!(list.contains("b") && !list.contains(" b"));
    }

    #[test]
    fn seconds_are_whole_numbers() {
        assert_eq!(seconds("300"), Ok(std::time::Duration::from_secs(300)));
        assert!(seconds("5m").is_err());
    }
}
