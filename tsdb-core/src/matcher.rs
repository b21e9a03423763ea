//! Label matchers: `=`, `!=`, `=~`, `!~` with Prometheus semantics.

use std::fmt;

use regex::Regex;

use crate::error::{Error, Result};

/// How a [`LabelMatcher`] compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals the text.
    Equal,
    /// `!=`: the value differs from the text.
    NotEqual,
    /// `=~`: the whole value matches the regular expression.
    RegexMatch,
    /// `!~`: the whole value does not match the regular expression.
    RegexNoMatch,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        })
    }
}

/// Selects series by one label, as in PromQL's `{name="value"}`.
///
/// A missing label counts as the empty value, so `{env=""}` selects series without `env` and
/// `{env!=""}` those that have it. Regular expressions are anchored at both ends (`=~"a|b"`
/// matches `a` or `b`, not `abc`) and use the syntax of the `regex` crate, which matches RE2's
/// for the expressions people write in PromQL.
///
/// ```
/// use tsdb_core::{LabelMatcher, MatchOp};
/// let m = LabelMatcher::new("env", MatchOp::RegexMatch, "prod|staging")?;
/// assert!(m.matches(Some("prod")));
/// assert!(!m.matches(Some("production")));
/// assert!(!m.matches(None));
/// # Ok::<(), tsdb_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
    fast: Shape,
}

/// Regex shapes that plain string operations decide faster than the regex engine (indexes
/// run a matcher over every value of a label). `.` does not match `\n`, so the shapes with
/// `.*` defer to the regex for values that contain one.
#[derive(Clone, Debug)]
enum Shape {
    /// No shortcut: ask the regex.
    Regex,
    /// `lit|lit|...` (a single literal included): the value is one of them.
    Literals(Vec<String>),
    /// `lit.*`
    Prefix(String),
    /// `.*lit`
    Suffix(String),
    /// `.*lit.*` (and `.*`, with an empty `lit`)
    Contains(String),
}

/// Substring search without the setup cost of `str::contains`, which dominates on the short
/// strings label values usually are.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    match needle.split_first() {
        None => true,
        Some(_) if haystack.len() > 256 => {
            // Long values: let the standard two-way search amortize its setup.
            std::str::from_utf8(haystack)
                .ok()
                .zip(std::str::from_utf8(needle).ok())
                .is_some_and(|(h, n)| h.contains(n))
        }
        Some((first, rest)) => haystack
            .iter()
            .enumerate()
            .filter(|(_, b)| *b == first)
            .any(|(i, _)| haystack.get(i + 1..i + 1 + rest.len()) == Some(rest)),
    }
}

impl Shape {
    fn of(pattern: &str) -> Shape {
        let literal = |p: &str| !p.contains(|c| "\\.+*?()[]{}^$|".contains(c));
        if pattern.contains('|') {
            let parts: Vec<&str> = pattern.split('|').collect();
            if parts.iter().all(|p| literal(p)) {
                return Shape::Literals(parts.into_iter().map(str::to_owned).collect());
            }
            return Shape::Regex;
        }
        if pattern == ".*" {
            return Shape::Contains(String::new());
        }
        let (head, rest) = match pattern.strip_prefix(".*") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let (tail, middle) = match rest.strip_suffix(".*") {
            Some(middle) => (true, middle),
            None => (false, rest),
        };
        if !literal(middle) {
            return Shape::Regex;
        }
        let middle = middle.to_owned();
        match (head, tail) {
            (false, false) => Shape::Literals(vec![middle]),
            (false, true) => Shape::Prefix(middle),
            (true, false) => Shape::Suffix(middle),
            (true, true) => Shape::Contains(middle),
        }
    }

    /// Whether the anchored regex of this shape matches `value`; `None` to ask the regex.
    fn matches(&self, value: &str) -> Option<bool> {
        match self {
            Shape::Regex => None,
            Shape::Literals(all) => Some(all.iter().any(|l| l == value)),
            _ if value.as_bytes().contains(&b'\n') => None,
            Shape::Prefix(l) => Some(value.starts_with(l.as_str())),
            Shape::Suffix(l) => Some(value.ends_with(l.as_str())),
            Shape::Contains(l) => Some(contains(value.as_bytes(), l.as_bytes())),
        }
    }
}

impl LabelMatcher {
    /// A matcher of label `name`; [`Error::InvalidMatcher`] when a regex does not compile.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let fast = match op {
            MatchOp::Equal | MatchOp::NotEqual => Shape::Regex,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Shape::of(&value),
        };
        let regex = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| Error::InvalidMatcher {
                    label: name.clone(),
                    reason: e.to_string(),
                })?,
            ),
        };
        Ok(LabelMatcher {
            name,
            op,
            value,
            regex,
            fast,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        LabelMatcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
            fast: Shape::Regex,
        }
    }

    /// `name!="value"`.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        LabelMatcher {
            name: name.into(),
            op: MatchOp::NotEqual,
            value: value.into(),
            regex: None,
            fast: Shape::Regex,
        }
    }

    /// `__name__="metric"`: selects series of one metric.
    pub fn metric(metric: impl Into<String>) -> Self {
        Self::equal(crate::labels::METRIC_NAME_LABEL, metric)
    }

    /// The label name this matcher looks at.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The comparison.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The text or regular expression compared against, as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a series whose label has `value` (`None` when it lacks the label) is selected.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::RegexMatch, Some(re)) => self
                .fast
                .matches(value)
                .unwrap_or_else(|| re.is_match(value)),
            (MatchOp::RegexNoMatch, Some(re)) => !self
                .fast
                .matches(value)
                .unwrap_or_else(|| re.is_match(value)),
            // `new` always compiles a regex for the regex operators.
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }

    /// Whether a series *without* this label is selected (the matcher accepts `""`).
    pub fn matches_empty(&self) -> bool {
        self.matches(None)
    }

    /// For `=~` and `!~` whose regular expression is an alternation of plain literals
    /// (`a|b|c`, a single literal included): those literals, so an index can look them up
    /// instead of scanning every value of the label. `None` otherwise.
    ///
    /// ```
    /// use tsdb_core::{LabelMatcher, MatchOp};
    /// let m = LabelMatcher::new("env", MatchOp::RegexMatch, "prod|staging")?;
    /// assert_eq!(m.regex_literals(), Some(&["prod".to_owned(), "staging".to_owned()][..]));
    /// assert_eq!(LabelMatcher::new("env", MatchOp::RegexMatch, "prod.*")?.regex_literals(), None);
    /// # Ok::<(), tsdb_core::Error>(())
    /// ```
    pub fn regex_literals(&self) -> Option<&[String]> {
        match &self.fast {
            Shape::Literals(all) => Some(all),
            _ => None,
        }
    }

    /// For `=~` and `!~`: a literal that every value the regular expression matches starts
    /// with, so an index can scan only that part of a sorted value dictionary. `""` when there
    /// is none or it is not known (alternations, flags, escapes), and for `=` and `!=`.
    ///
    /// ```
    /// use tsdb_core::{LabelMatcher, MatchOp};
    /// let m = LabelMatcher::new("instance", MatchOp::RegexMatch, "host-1.*")?;
    /// assert_eq!(m.regex_literal_prefix(), "host-1");
    /// assert_eq!(LabelMatcher::new("x", MatchOp::RegexMatch, "ab?")?.regex_literal_prefix(), "a");
    /// # Ok::<(), tsdb_core::Error>(())
    /// ```
    pub fn regex_literal_prefix(&self) -> &str {
        if self.regex.is_none() || self.value.contains('|') || self.value.starts_with("(?") {
            return "";
        }
        let mut end = 0;
        let mut chars = self.value.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            // A metacharacter ends the literal, and so does a character that a quantifier
            // makes optional or repeats.
            if "\\.+*?()[]{}^$".contains(c) || matches!(chars.peek(), Some((_, '*' | '?' | '{'))) {
                break;
            }
            end = i + c.len_utf8();
        }
        &self.value[..end]
    }
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for LabelMatcher {}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_follow_prometheus_semantics() {
        let eq = LabelMatcher::equal("env", "prod");
        assert!(eq.matches(Some("prod")) && !eq.matches(Some("dev")) && !eq.matches(None));
        let ne = LabelMatcher::not_equal("env", "prod");
        assert!(!ne.matches(Some("prod")) && ne.matches(Some("dev")) && ne.matches(None));
        let re = LabelMatcher::new("env", MatchOp::RegexMatch, "pr.*").expect("compiles");
        assert!(re.matches(Some("prod")) && !re.matches(Some("xprod")) && !re.matches(None));
        let nre = LabelMatcher::new("env", MatchOp::RegexNoMatch, "pr.*").expect("compiles");
        assert!(!nre.matches(Some("prod")) && nre.matches(Some("dev")) && nre.matches(None));
    }

    #[test]
    fn empty_value_matches_missing_label() {
        assert!(LabelMatcher::equal("env", "").matches(None));
        assert!(!LabelMatcher::not_equal("env", "").matches(None));
        let opt = LabelMatcher::new("env", MatchOp::RegexMatch, "prod|").expect("compiles");
        assert!(opt.matches(None) && opt.matches(Some("prod")));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let m = LabelMatcher::new("x", MatchOp::RegexMatch, "a|b").expect("compiles");
        assert!(!m.matches(Some("ab")) && !m.matches(Some("xa")) && m.matches(Some("b")));
    }

    #[test]
    fn regex_literal_prefix_is_conservative() {
        let p = |op, v: &str| {
            LabelMatcher::new("x", op, v)
                .expect("compiles")
                .regex_literal_prefix()
                .to_owned()
        };
        use MatchOp::*;
        for (v, want) in [
            ("host-1.*", "host-1"),
            ("abc", "abc"),
            ("ab?", "a"),
            ("ab*c", "a"),
            ("ab{2}", "a"),
            ("ab+", "ab"),
            ("a|b", ""),
            ("(?i)abc", ""),
            (".*x", ""),
            (r"a\.b", "a"),
            ("é[x]", "é"),
            ("", ""),
        ] {
            assert_eq!(p(RegexMatch, v), want, "{v}");
            assert_eq!(p(RegexNoMatch, v), want, "{v}");
            let m = LabelMatcher::new("x", RegexMatch, v).expect("compiles");
            for probe in [
                "host-1", "host-10", "abc", "a", "abbc", "ab", "b", "a.b", "éx", "",
            ] {
                if m.matches(Some(probe)) {
                    assert!(
                        probe.starts_with(want),
                        "{probe:?} matches {v:?} without prefix {want:?}"
                    );
                }
            }
        }
        assert_eq!(p(Equal, "abc"), "");
        assert_eq!(p(NotEqual, "abc"), "");
    }

    proptest::proptest! {
        /// The string shortcuts answer exactly as the regex would, newlines included.
        #[test]
        fn shortcuts_agree_with_the_regex(
            pattern in proptest::string::string_regex("(\\.\\*)?[ab\\n-]{0,3}(\\.\\*)?(\\|[ab]{0,2}){0,2}").expect("strategy"),
            value in "[ab\\n-]{0,6}|[ab-]{250,270}",
        ) {
            let m = LabelMatcher::new("x", MatchOp::RegexMatch, &pattern).expect("compiles");
            let re = Regex::new(&format!("^(?:{pattern})$")).expect("compiles");
            proptest::prop_assert_eq!(m.matches(Some(&value)), re.is_match(&value), "{:?} on {:?} ({:?})", pattern, value, m.fast);
            let n = LabelMatcher::new("x", MatchOp::RegexNoMatch, &pattern).expect("compiles");
            proptest::prop_assert_eq!(n.matches(Some(&value)), !re.is_match(&value));
        }
    }

    #[test]
    fn shapes_are_recognized() {
        let shape = |p: &str| format!("{:?}", Shape::of(p));
        assert_eq!(shape("a|b|"), r#"Literals(["a", "b", ""])"#);
        assert_eq!(shape("abc"), r#"Literals(["abc"])"#);
        assert_eq!(shape("host-1.*"), r#"Prefix("host-1")"#);
        assert_eq!(shape(".*-99"), r#"Suffix("-99")"#);
        assert_eq!(shape(".*-99.*"), r#"Contains("-99")"#);
        assert_eq!(shape(".*"), r#"Contains("")"#);
        for regex in [
            "a.b", ".+", "a|b.*", "(?i)a", "a\\.b", "[ab]", ".*?", "a.*?",
        ] {
            assert_eq!(shape(regex), "Regex", "{regex}");
        }
    }

    #[test]
    fn bad_regex_is_a_typed_error() {
        let err = LabelMatcher::new("env", MatchOp::RegexMatch, "(").expect_err("must fail");
        assert!(matches!(err, Error::InvalidMatcher { ref label, .. } if label == "env"));
    }
}
