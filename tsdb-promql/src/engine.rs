//! Parsing, planning (one fetch per selector) and evaluation of PromQL.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};
use tsdb_core::{LabelMatcher, MatchOp, TimeRange};

use crate::aggregate::FoldState;
use crate::error::{PromqlError, Resource, Result, SourceError};
use crate::functions;
use crate::functions::RangeFunction;
use crate::labels::{LabelSet, NAME};
use crate::source::{SelectLimits, SeriesSource, is_stale};
use crate::value::{Sample, Series, Value};

/// Limits and defaults of an [`Engine`].
///
/// Every query runs within a memory budget: the samples, series and label bytes it holds at
/// once, and the size of any label name or value a function makes. Going over one fails the
/// query with [`PromqlError::ResourceLimit`] naming the [`Resource`], how much was needed and
/// the limit; nothing is returned and nothing grows further. What is *held* is what this
/// engine keeps in memory: the points fetched for the selectors (for the whole query), the
/// result built so far (a range query's series), and the values of the step being evaluated
/// (an expression's inputs while its output is built, as Prometheus counts them).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 minutes).
    pub lookback_delta_ms: i64,
    /// Step of subqueries that give none (Prometheus: the global evaluation interval, 1 minute).
    pub default_subquery_step_ms: i64,
    /// Most steps of a range query (Prometheus refuses more than 11,000). Default 11,000.
    pub max_steps: usize,
    /// Most samples held in memory at once, as Prometheus's `--query.max-samples`: points
    /// fetched from the source, points of range vectors, samples of instant vectors and of
    /// the result. Default 50,000,000 (Prometheus's default); over it the query fails with
    /// [`Resource::Samples`] ("query processing would load too many samples into memory in
    /// query execution").
    pub max_samples: usize,
    /// Most series held at once: fetched from the source (all selectors together), in any
    /// one intermediate vector or range vector, and in the result. Default 10,000,000;
    /// [`Resource::Series`] when over.
    pub max_series: usize,
    /// Most bytes of label names and values held at once, counted per sample (each sample
    /// of an instant vector carries its own label set) and per series of fetched data,
    /// range vectors and the result. Default 2 GiB; [`Resource::LabelBytes`] when over.
    pub max_label_bytes: usize,
    /// Longest label value a function (`label_replace`, `label_join`) may make, in bytes.
    /// Default [`tsdb_core::Labels::MAX_VALUE_BYTES`] (16 KiB), the longest value a series
    /// can be stored with; [`Resource::LabelValueBytes`] when over. The value is measured
    /// before it is built.
    pub max_label_value_bytes: usize,
    /// Longest label name a query may create (`label_replace`, `label_join`,
    /// `count_values`), in bytes. Default [`tsdb_core::Labels::MAX_NAME_BYTES`] (1 KiB);
    /// [`Resource::LabelNameBytes`] when over.
    pub max_label_name_bytes: usize,
    /// Most samples processed in all (fetched, then every value each expression produces at
    /// every step, plus one per expression evaluated), a bound on the work of a query since
    /// the engine has no timeout. Default 10,000,000,000; [`PromqlError::LimitExceeded`]
    /// `"samples processed"` when over.
    pub max_processed_samples: u64,
    /// Most evaluation steps in all subqueries of one query. Default 1,000,000.
    pub max_subquery_steps: usize,
    /// Longest accepted query text, in bytes. Default 16 KiB.
    pub max_query_len: usize,
    /// Deepest accepted nesting of expressions. Default 200.
    pub max_depth: usize,
    /// Most operators (outside label matchers) in one query. Default 1,000.
    pub max_operators: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_steps: 11_000,
            max_samples: 50_000_000,
            max_series: 10_000_000,
            max_label_bytes: 2 * 1024 * 1024 * 1024,
            max_label_value_bytes: tsdb_core::Labels::MAX_VALUE_BYTES,
            max_label_name_bytes: tsdb_core::Labels::MAX_NAME_BYTES,
            max_processed_samples: 10_000_000_000,
            max_subquery_steps: 1_000_000,
            max_query_len: 16 * 1024,
            max_depth: 200,
            max_operators: 1000,
        }
    }
}

impl EngineOptions {
    /// Sets [`EngineOptions::max_samples`].
    pub fn with_max_samples(mut self, n: usize) -> Self {
        self.max_samples = n;
        self
    }

    /// Sets [`EngineOptions::max_series`].
    pub fn with_max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Sets [`EngineOptions::max_label_bytes`].
    pub fn with_max_label_bytes(mut self, bytes: usize) -> Self {
        self.max_label_bytes = bytes;
        self
    }

    /// Sets [`EngineOptions::max_label_value_bytes`].
    pub fn with_max_label_value_bytes(mut self, bytes: usize) -> Self {
        self.max_label_value_bytes = bytes;
        self
    }

    /// Sets [`EngineOptions::max_label_name_bytes`].
    pub fn with_max_label_name_bytes(mut self, bytes: usize) -> Self {
        self.max_label_name_bytes = bytes;
        self
    }

    /// Sets [`EngineOptions::max_processed_samples`].
    pub fn with_max_processed_samples(mut self, n: u64) -> Self {
        self.max_processed_samples = n;
        self
    }

    /// Sets [`EngineOptions::max_subquery_steps`].
    pub fn with_max_subquery_steps(mut self, n: usize) -> Self {
        self.max_subquery_steps = n;
        self
    }

    /// Sets [`EngineOptions::max_steps`].
    pub fn with_max_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// Sets [`EngineOptions::max_query_len`].
    pub fn with_max_query_len(mut self, bytes: usize) -> Self {
        self.max_query_len = bytes;
        self
    }

    /// Sets [`EngineOptions::max_depth`].
    pub fn with_max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }

    /// Sets [`EngineOptions::max_operators`].
    pub fn with_max_operators(mut self, n: usize) -> Self {
        self.max_operators = n;
        self
    }

    /// Sets [`EngineOptions::lookback_delta_ms`].
    pub fn with_lookback_delta_ms(mut self, ms: i64) -> Self {
        self.lookback_delta_ms = ms;
        self
    }

    /// Sets [`EngineOptions::default_subquery_step_ms`].
    pub fn with_default_subquery_step_ms(mut self, ms: i64) -> Self {
        self.default_subquery_step_ms = ms;
        self
    }
}

/// Evaluates PromQL over a [`SeriesSource`].
///
/// Each selector of a query is fetched once for the whole time span the query needs, then
/// the expression is evaluated step by step in memory.
#[derive(Debug)]
pub struct Engine<S> {
    source: S,
    opts: EngineOptions,
    /// Recently parsed query texts (dashboards ask the same queries again and again, and
    /// parsing costs more than evaluating a small one).
    parsed: std::sync::Mutex<HashMap<String, std::sync::Arc<Query>>>,
}

/// Query texts kept parsed; the cache starts again when full.
const PARSED_QUERIES: usize = 4096;

/// A parsed query that passed the size and depth limits.
#[derive(Debug, Clone)]
pub struct Query {
    expr: Expr,
}

impl Query {
    /// The syntax tree, as `promql-parser` builds it.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

/// Parses `text` with the limits of `opts`; errors name the position when it is known.
pub fn parse(text: &str, opts: &EngineOptions) -> Result<Query> {
    if text.len() > opts.max_query_len {
        return Err(PromqlError::TooComplex {
            what: "query length in bytes",
            actual: text.len(),
            limit: opts.max_query_len,
        });
    }
    let operators = operator_count(text);
    if operators > opts.max_operators {
        // The parser's type checks walk operator chains again at each operator: its time grows
        // with the square of a chain's length, so long chains are refused before parsing.
        return Err(PromqlError::TooComplex {
            what: "number of operators",
            actual: operators,
            limit: opts.max_operators,
        });
    }
    let nesting = lexical_nesting(text);
    if nesting > opts.max_depth {
        return Err(PromqlError::TooComplex {
            what: "bracket nesting depth",
            actual: nesting,
            limit: opts.max_depth,
        });
    }
    if let Some((position, message)) = bad_numeric_duration(text) {
        return Err(PromqlError::Parse {
            position: Some(position),
            message,
        });
    }
    register_functions_missing_from_parser();
    // The parser is a third-party crate: should it still panic on some input, the query
    // fails with a parse error instead of taking the caller down.
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(text)).map_err(|_| {
        PromqlError::Parse {
            position: None,
            message: "the parser failed on this query".to_owned(),
        }
    })?;
    let expr = parsed.map_err(|m| parse_error(text, m))?;
    let depth = expr_depth(&expr);
    if depth > opts.max_depth {
        return Err(PromqlError::TooComplex {
            what: "expression depth",
            actual: depth,
            limit: opts.max_depth,
        });
    }
    Ok(Query { expr })
}

/// Teaches `promql-parser` the functions of Prometheus 2.42 that it no longer knows (once per
/// process): `holt_winters(range-vector, scalar, scalar)`, renamed
/// `double_exponential_smoothing` in later Prometheus versions, which the parser now knows
/// under the new name only.
fn register_functions_missing_from_parser() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{Function, register_extra_functions};
        use promql_parser::parser::value::ValueType;
        // An error means the parser knows the name itself again: its own definition is used.
        let _ = register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// Finds a duration written as a bare number (`m offset 1e30`, `m[5m:NaN]`) that no
/// `Duration` can hold: `promql-parser` 0.11 panics on those, so they are refused first.
/// Returns the byte offset and the message.
fn bad_numeric_duration(text: &str) -> Option<(usize, String)> {
    #[derive(PartialEq, Clone, Copy)]
    enum Prev {
        Other,
        Offset,
        OffsetSign,
        Bracket,
    }
    let bytes = text.as_bytes();
    let mut prev = Prev::Other;
    let mut in_bracket = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                // Skip the string literal.
                let q = c;
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    if bytes[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                prev = Prev::Other;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' => {
                in_bracket = true;
                prev = Prev::Bracket;
                i += 1;
            }
            b']' => {
                in_bracket = false;
                prev = Prev::Other;
                i += 1;
            }
            b':' if in_bracket => {
                prev = Prev::Bracket;
                i += 1;
            }
            b'+' | b'-' if prev == Prev::Offset => {
                prev = Prev::OffsetSign;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                let start = i;
                while i < bytes.len() {
                    let d = bytes[i];
                    let exp_sign = (d == b'+' || d == b'-')
                        && matches!(bytes[i - 1], b'e' | b'E')
                        && bytes[start].is_ascii_digit();
                    if d.is_ascii_alphanumeric()
                        || d == b'_'
                        || d == b'.'
                        || (!in_bracket && d == b':')
                        || exp_sign
                    {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let word = &text[start..i];
                if matches!(prev, Prev::Offset | Prev::OffsetSign | Prev::Bracket)
                    && (word.as_bytes()[0].is_ascii_digit()
                        || word.starts_with('.')
                        || word.eq_ignore_ascii_case("inf")
                        || word.eq_ignore_ascii_case("nan"))
                    && let Some(v) = number_value(word)
                    && !(v.is_finite() && (0.0..1e15).contains(&v))
                {
                    return Some((start, format!("duration {word:?} is out of range")));
                }
                prev = if word.eq_ignore_ascii_case("offset") {
                    Prev::Offset
                } else {
                    Prev::Other
                };
            }
            _ => {
                prev = Prev::Other;
                i += 1;
            }
        }
    }
    None
}

/// The value of a number token as PromQL reads it (decimal, `0x` hex, leading-zero octal,
/// `Inf`, `NaN`); `None` when it is not a number.
fn number_value(word: &str) -> Option<f64> {
    let w = word.to_ascii_lowercase();
    match w.as_str() {
        "inf" => return Some(f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(hex) = w.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if w.len() > 1 && w.starts_with('0') && w.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u64::from_str_radix(&w[1..], 8).ok().map(|v| v as f64);
    }
    w.parse::<f64>().ok()
}

/// Deepest nesting of `(`, `[` and `{` outside string literals.
fn lexical_nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Builds a parse error: the parser reports a message only, so the position is found from
/// what the message quotes or from unbalanced brackets, and left out when neither tells.
fn parse_error(text: &str, message: String) -> PromqlError {
    let mut position = None;
    // Messages such as "unexpected character: 'x'" quote the offending character.
    if let Some(rest) = message.split("unexpected character").nth(1)
        && let Some(c) = rest
            .chars()
            .find(|c| *c != ':' && *c != ' ' && *c != '\'' && *c != '"')
    {
        position = text.find(c);
    }
    if position.is_none() {
        position = unbalanced(text);
    }
    if position.is_none()
        && message == "invalid promql query"
        && let Some((p, m)) = locate_grammar_error(text)
    {
        return PromqlError::Parse {
            position: Some(p),
            message: m,
        };
    }
    let message = if message == "invalid promql query" {
        match position {
            Some(p) if p < text.len() => format!(
                "unexpected {:?}; expected a matching bracket or a complete expression",
                &text[p..text
                    .len()
                    .min(p + text[p..].chars().next().map_or(1, char::len_utf8))]
            ),
            _ => "unexpected token; expected a complete PromQL expression".to_owned(),
        }
    } else {
        message
    };
    PromqlError::Parse { position, message }
}

/// Operators outside label matchers (`{...}`), `and`/`or`/`unless`/`atan2` included.
fn operator_count(text: &str) -> usize {
    let mut braces = 0i32;
    let mut n = 0;
    for (kind, a, b) in tokens(text) {
        let w = &text[a..b];
        match kind {
            Tok::Open if w == "{" => braces += 1,
            Tok::Close if w == "}" => braces -= 1,
            Tok::Op if braces <= 0 => n += 1,
            Tok::Keyword
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                n += 1
            }
            _ => {}
        }
    }
    n
}

/// A rough token of the query text, enough to point at the usual grammar mistakes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Tok {
    /// Metric or label name, function name.
    Name,
    /// A keyword that needs something after it (`by`, `offset`, `and`, ...).
    Keyword,
    /// A number or duration.
    Number,
    /// A string literal.
    Str,
    /// A binary or matching operator.
    Op,
    /// `(`, `[` or `{`.
    Open,
    /// `)`, `]` or `}`.
    Close,
    /// `,`, `:` or `@`.
    Punct,
}

fn tokens(text: &str) -> Vec<(Tok, usize, usize)> {
    const KEYWORDS: [&str; 13] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "@",
    ];
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                Tok::Str
            }
            b'(' | b'[' | b'{' => {
                i += 1;
                Tok::Open
            }
            b')' | b']' | b'}' => {
                i += 1;
                Tok::Close
            }
            b',' | b':' => {
                i += 1;
                Tok::Punct
            }
            b'@' => {
                i += 1;
                Tok::Keyword
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                Tok::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let w = text[start..i].to_ascii_lowercase();
                if KEYWORDS.contains(&w.as_str()) {
                    Tok::Keyword
                } else if w == "inf" || w == "nan" {
                    Tok::Number
                } else {
                    Tok::Name
                }
            }
            _ => {
                i += 1;
                // A character outside ASCII: step over all of it.
                while i < b.len() && !text.is_char_boundary(i) {
                    i += 1;
                }
                while i < b.len() && matches!(b[i], b'=' | b'~') {
                    i += 1;
                }
                Tok::Op
            }
        };
        out.push((kind, start, i.min(b.len())));
    }
    out
}

/// Points at the usual grammar mistakes the parser reports without a position: a query that
/// stops where an expression is due, two operands without an operator between them, and a
/// label matcher without its string.
fn locate_grammar_error(text: &str) -> Option<(usize, String)> {
    let toks = tokens(text);
    let word = |t: &(Tok, usize, usize)| text[t.1..t.2].to_owned();
    let mut depth_brace = 0i32;
    for w in toks.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.0 == Tok::Open && &text[a.1..a.2] == "{" {
            depth_brace += 1;
        }
        if a.0 == Tok::Close && &text[a.1..a.2] == "}" {
            depth_brace -= 1;
        }
        let operand = |t: Tok| matches!(t, Tok::Name | Tok::Number | Tok::Str);
        if depth_brace > 0 && a.0 == Tok::Op && b.0 != Tok::Str {
            return Some((
                b.1,
                format!(
                    "unexpected {:?} in label matching; expected a string",
                    word(b)
                ),
            ));
        }
        if depth_brace == 0
            && (operand(a.0) || (a.0 == Tok::Close && &text[a.1..a.2] != "]"))
            && operand(b.0)
            && !(a.0 == Tok::Close && b.0 == Tok::Number)
        {
            return Some((
                b.1,
                format!(
                    "unexpected {:?}; expected an operator or the end of the query",
                    word(b)
                ),
            ));
        }
    }
    match toks.last() {
        Some(last)
            if matches!(last.0, Tok::Op | Tok::Keyword | Tok::Punct) || (last.0 == Tok::Open) =>
        {
            Some((
                text.len(),
                format!(
                    "unexpected end of input after {:?}; expected more of the expression",
                    word(last)
                ),
            ))
        }
        _ => None,
    }
}

/// Byte offset of the first bracket that is closed without being opened or never closed.
fn unbalanced(text: &str) -> Option<usize> {
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => stack.push((c, i)),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((o, _)) if o == open => {}
                    _ => return Some(i),
                }
            }
            _ => {}
        }
    }
    stack.first().map(|(_, i)| *i)
}

/// Depth of the tree, computed without recursion.
fn expr_depth(expr: &Expr) -> usize {
    let mut max = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        for child in children(e) {
            stack.push((child, d + 1));
        }
    }
    max
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut v = vec![a.expr.as_ref()];
            if let Some(p) = &a.param {
                v.push(p.as_ref());
            }
            v
        }
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(s) => vec![s.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => dur_ms(d).saturating_neg(),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => dur_ms(&e.duration()).saturating_neg(),
    }
}

/// Converts a `promql-parser` matcher into a [`LabelMatcher`] (regexes anchored).
pub fn convert_matcher(m: &promql_parser::label::Matcher) -> Result<LabelMatcher> {
    let op = match &m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::RegexMatch,
        PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
    };
    LabelMatcher::new(m.name.clone(), op, m.value.clone()).map_err(|e| PromqlError::Parse {
        position: None,
        message: e.to_string(),
    })
}

/// The matchers of a selector, its metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<LabelMatcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(PromqlError::Unsupported(
            "`or` inside label matchers (not in Prometheus 2.42)".into(),
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(LabelMatcher::metric(name.clone()));
    }
    for m in &vs.matchers.matchers {
        out.push(convert_matcher(m)?);
    }
    Ok(out)
}

/// Series of one selector, fetched once per query.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) labels: LabelSet,
    pub(crate) ts: Vec<i64>,
    pub(crate) vs: Vec<f64>,
}

/// One selector to fetch: its node address, matchers and time span.
struct Need {
    key: usize,
    matchers: Vec<LabelMatcher>,
    lo: i64,
    hi: i64,
}

impl<S: SeriesSource> Engine<S> {
    /// An engine reading from `source`.
    pub fn new(source: S, opts: EngineOptions) -> Self {
        Engine {
            source,
            opts,
            parsed: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// `query` parsed (and checked against the size limits), from the cache when it was seen.
    fn parsed(&self, query: &str) -> Result<std::sync::Arc<Query>> {
        let lock = |c: &std::sync::Mutex<HashMap<String, std::sync::Arc<Query>>>| {
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(query)
                .cloned()
        };
        if let Some(q) = lock(&self.parsed) {
            return Ok(q);
        }
        let q = std::sync::Arc::new(parse(query, &self.opts)?);
        let mut cache = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= PARSED_QUERIES {
            cache.clear();
        }
        cache.insert(query.to_owned(), q.clone());
        Ok(q)
    }

    /// Evaluates `query` at `time_ms` (ms since the epoch).
    pub async fn instant_query(&self, query: &str, time_ms: i64) -> Result<Value> {
        let q = self.parsed(query)?;
        let ev = self.prepare(&q, time_ms, time_ms, 0).await?;
        let v = ev.eval(&q.expr, time_ms)?;
        Ok(match v {
            Val::Scalar(v) => Value::Scalar {
                timestamp: time_ms,
                value: v,
            },
            Val::Str(s) => Value::String {
                timestamp: time_ms,
                value: s,
            },
            Val::Vector(v) => Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        metric: s.labels,
                        timestamp: time_ms,
                        value: s.v,
                    })
                    .collect(),
            ),
            Val::Matrix(m) => Value::Matrix(
                m.into_iter()
                    .map(|s| Series {
                        metric: s.labels,
                        points: s.points,
                    })
                    .collect(),
            ),
        })
    }

    /// Evaluates `query` at `start`, `start + step`, ... up to `end` (ms); the result is one
    /// series per label set, sorted by labels.
    pub async fn range_query(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>> {
        if step <= 0 {
            return Err(PromqlError::exec(
                "zero or negative query resolution step widths are not accepted",
            ));
        }
        if end < start {
            return Err(PromqlError::exec(
                "end timestamp must not be before start time",
            ));
        }
        let steps = ((end - start) / step) as u64 + 1;
        if steps > self.opts.max_steps as u64 {
            return Err(PromqlError::LimitExceeded {
                what: "range query steps",
                requested: usize::try_from(steps).unwrap_or(usize::MAX),
                limit: self.opts.max_steps,
            });
        }
        let q = self.parsed(query)?;
        match q.expr.value_type() {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(PromqlError::exec(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    match other {
                        promql_parser::parser::value::ValueType::Matrix => "range vector",
                        _ => "string",
                    }
                )));
            }
        }
        let ev = self.prepare(&q, start, end, step).await?;
        let mut out: BTreeMap<LabelSet, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start;
        loop {
            // The step's intermediate values are dropped once it is evaluated; the result
            // built so far stays held.
            let step_mark = ev.mark();
            let v = ev.eval(&q.expr, t)?;
            ev.release_to(step_mark);
            let mut new_label_bytes = 0;
            let samples = match v {
                Val::Scalar(v) => {
                    out.entry(LabelSet::default()).or_default().push((t, v));
                    1
                }
                Val::Vector(v) => {
                    let n = v.len();
                    for s in v {
                        let label_bytes = s.labels.bytes();
                        let pts = out.entry(s.labels).or_insert_with(|| {
                            new_label_bytes += label_bytes;
                            Vec::new()
                        });
                        if pts.last().is_some_and(|p| p.0 == t) {
                            return Err(PromqlError::exec(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        pts.push((t, s.v));
                    }
                    n
                }
                _ => return Err(PromqlError::exec("range query of a non-vector")),
            };
            ev.check_series(out.len())?;
            ev.hold(samples, new_label_bytes)?;
            match t.checked_add(step) {
                Some(n) if n <= end => t = n,
                _ => break,
            }
        }
        Ok(out
            .into_iter()
            .map(|(metric, points)| Series { metric, points })
            .collect())
    }

    async fn prepare(&self, q: &Query, start: i64, end: i64, step: i64) -> Result<Evaluator<'_>> {
        let opts = &self.opts;
        let (mut loaded, mut loaded_series, mut label_bytes) = (0usize, 0usize, 0usize);
        // First what the source evaluates itself; its selectors are then not fetched.
        let mut steps = Vec::new();
        let mut t = start;
        loop {
            steps.push(t);
            match t.checked_add(step) {
                Some(n) if step > 0 && n <= end => t = n,
                _ => break,
            }
        }
        let mut candidates = Vec::new();
        rollup_candidates(&q.expr, &steps, start, end, opts, &mut candidates)?;
        let mut rolled: HashMap<usize, Rolled> = HashMap::new();
        let mut satisfied = std::collections::HashSet::new();
        for c in candidates {
            let limits = SelectLimits::new(
                opts.max_samples.saturating_sub(loaded),
                opts.max_series.saturating_sub(loaded_series),
            );
            let Some(series) = self
                .source
                .select_rollup(&c.request, limits)
                .await
                .map_err(|e| limit_error(e, loaded, loaded_series, opts))?
            else {
                continue;
            };
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                loaded = loaded.saturating_add(s.points.len());
                loaded_series += 1;
                let labels = LabelSet::from(&s.labels);
                label_bytes = label_bytes.saturating_add(labels.bytes());
                if loaded > opts.max_samples {
                    return Err(PromqlError::resource(
                        Resource::Samples,
                        loaded,
                        opts.max_samples,
                    ));
                }
                if loaded_series > opts.max_series {
                    return Err(PromqlError::resource(
                        Resource::Series,
                        loaded_series,
                        opts.max_series,
                    ));
                }
                if label_bytes > opts.max_label_bytes {
                    return Err(PromqlError::resource(
                        Resource::LabelBytes,
                        label_bytes,
                        opts.max_label_bytes,
                    ));
                }
                let mut values = vec![None; c.request.times.len()];
                for &(i, v, ts) in &s.points {
                    if let Some(slot) = values.get_mut(i as usize) {
                        *slot = Some((v, ts));
                    }
                }
                out.push(RolledOut {
                    labels: if c.keep_name {
                        labels
                    } else {
                        labels.without_name()
                    },
                    values,
                });
            }
            // The engine's own order of series: by their labels.
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            let all_unique = out.windows(2).all(|w| w[0].labels != w[1].labels);
            satisfied.insert(c.selector);
            rolled.insert(
                c.node,
                Rolled {
                    times: c.request.times,
                    series: out,
                    all_unique,
                },
            );
        }
        let mut needs = Vec::new();
        plan(&q.expr, start, end, start, end, opts, &mut needs)?;
        needs.retain(|n| !satisfied.contains(&n.key));
        let mut data = HashMap::new();
        for need in needs {
            let range = TimeRange {
                start: need.lo,
                end: need.hi.max(need.lo),
            };
            // The source gets what is left of the budget, so that it can refuse a selection
            // before materialising it.
            let limits = SelectLimits::new(
                opts.max_samples.saturating_sub(loaded),
                opts.max_series.saturating_sub(loaded_series),
            );
            let series = self
                .source
                .select_bounded(&need.matchers, range, limits)
                .await
                .map_err(|e| limit_error(e, loaded, loaded_series, opts))?;
            let mut fetched = Vec::with_capacity(series.len());
            for s in series {
                // Checked again: a source need not honour the limits.
                loaded = loaded.saturating_add(s.timestamps.len());
                if loaded > opts.max_samples {
                    return Err(PromqlError::resource(
                        Resource::Samples,
                        loaded,
                        opts.max_samples,
                    ));
                }
                loaded_series += 1;
                if loaded_series > opts.max_series {
                    return Err(PromqlError::resource(
                        Resource::Series,
                        loaded_series,
                        opts.max_series,
                    ));
                }
                label_bytes = label_bytes
                    .saturating_add(s.labels.iter().map(|l| l.name.len() + l.value.len()).sum());
                if label_bytes > opts.max_label_bytes {
                    return Err(PromqlError::resource(
                        Resource::LabelBytes,
                        label_bytes,
                        opts.max_label_bytes,
                    ));
                }
                if s.timestamps.len() != s.values.len() {
                    return Err(PromqlError::Source(SourceError::message(format_args!(
                        "series {} has {} timestamps but {} values",
                        s.labels,
                        s.timestamps.len(),
                        s.values.len()
                    ))));
                }
                fetched.push(Fetched {
                    labels: LabelSet::from(&s.labels),
                    ts: s.timestamps,
                    vs: s.values,
                });
            }
            fetched.sort_by(|a, b| a.labels.cmp(&b.labels));
            data.entry(need.key).or_insert(fetched);
        }
        Ok(Evaluator {
            opts: &self.opts,
            data,
            rolled,
            groups: Default::default(),
            rolled_groups: Default::default(),
            start,
            end,
            held: Cell::new(Held {
                samples: loaded,
                label_bytes,
            }),
            processed: Cell::new(loaded as u64),
            sub_steps: Cell::new(0),
        })
    }
}

/// Collects every selector with the widest span it can be evaluated over, for evaluation
/// times in `[lo, hi]`.
fn plan(
    e: &Expr,
    lo: i64,
    hi: i64,
    qstart: i64,
    qend: i64,
    opts: &EngineOptions,
    out: &mut Vec<Need>,
) -> Result<()> {
    let at_range = |at: &Option<AtModifier>, lo: i64, hi: i64| match at {
        None => (lo, hi),
        Some(AtModifier::Start) => (qstart, qstart),
        Some(AtModifier::End) => (qend, qend),
        Some(AtModifier::At(t)) => {
            let t = system_time_ms(t);
            (t, t)
        }
    };
    match e {
        Expr::VectorSelector(vs) => {
            let (a, b) = at_range(&vs.at, lo, hi);
            let off = offset_ms(&vs.offset);
            out.push(Need {
                key: vs as *const VectorSelector as usize,
                matchers: selector_matchers(vs)?,
                lo: a.saturating_sub(off).saturating_sub(opts.lookback_delta_ms),
                hi: b.saturating_sub(off),
            });
        }
        Expr::MatrixSelector(ms) => {
            let (a, b) = at_range(&ms.vs.at, lo, hi);
            let off = offset_ms(&ms.vs.offset);
            out.push(Need {
                key: &ms.vs as *const VectorSelector as usize,
                matchers: selector_matchers(&ms.vs)?,
                lo: a.saturating_sub(off).saturating_sub(dur_ms(&ms.range)),
                hi: b.saturating_sub(off),
            });
        }
        Expr::Subquery(sq) => {
            let (a, b) = at_range(&sq.at, lo, hi);
            let off = offset_ms(&sq.offset);
            plan(
                &sq.expr,
                a.saturating_sub(off).saturating_sub(dur_ms(&sq.range)),
                b.saturating_sub(off),
                qstart,
                qend,
                opts,
                out,
            )?;
        }
        other => {
            for c in children(other) {
                plan(c, lo, hi, qstart, qend, opts, out)?;
            }
        }
    }
    Ok(())
}

/// A sample during evaluation: `ts` is the time of the underlying point (for `timestamp()`).
#[derive(Clone, Debug)]
pub(crate) struct Smp {
    pub(crate) labels: LabelSet,
    pub(crate) v: f64,
    pub(crate) ts: i64,
}

/// A series of a range vector during evaluation.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    pub(crate) labels: LabelSet,
    pub(crate) points: Vec<(i64, f64)>,
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Smp>),
    Matrix(Vec<Rng>),
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

/// What a query holds in memory at one moment, for the budget of [`EngineOptions`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    samples: usize,
    label_bytes: usize,
}

/// The samples and label bytes a value holds, and its number of series.
fn footprint(v: &Val) -> (usize, usize, usize) {
    match v {
        Val::Scalar(_) => (1, 0, 0),
        Val::Str(_) => (0, 0, 0),
        Val::Vector(v) => (v.len(), v.iter().map(|s| s.labels.bytes()).sum(), v.len()),
        Val::Matrix(m) => (
            m.iter().map(|s| s.points.len()).sum(),
            m.iter().map(|s| s.labels.bytes()).sum(),
            m.len(),
        ),
    }
}

pub(crate) struct Evaluator<'a> {
    opts: &'a EngineOptions,
    data: HashMap<usize, Vec<Fetched>>,
    /// Nodes the source evaluated itself, by node address.
    rolled: HashMap<usize, Rolled>,
    /// The groups of label sets seen by aggregations, kept from step to step.
    groups: std::cell::RefCell<crate::aggregate::GroupCache>,
    /// The groups of rolled nodes' series, by (node, aggregation).
    rolled_groups: std::cell::RefCell<HashMap<(usize, usize), crate::aggregate::RolledGroups>>,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Held now: fetched data, the result so far, live intermediate values.
    held: Cell<Held>,
    /// Processed so far, never released (the work bound).
    processed: Cell<u64>,
    sub_steps: Cell<usize>,
}

impl Evaluator<'_> {
    /// What is held now, to go back to with [`Evaluator::release_to`].
    pub(crate) fn mark(&self) -> Held {
        self.held.get()
    }

    /// Forgets what was held since `mark` (those values were dropped).
    pub(crate) fn release_to(&self, mark: Held) {
        self.held.set(mark);
    }

    /// Counts `samples` and `label_bytes` more as held (and the samples as processed),
    /// failing when a budget is over.
    pub(crate) fn hold(&self, samples: usize, label_bytes: usize) -> Result<()> {
        let now = self.held.get();
        let held = Held {
            samples: now.samples.saturating_add(samples),
            label_bytes: now.label_bytes.saturating_add(label_bytes),
        };
        self.held.set(held);
        if held.samples > self.opts.max_samples {
            return Err(PromqlError::resource(
                Resource::Samples,
                held.samples,
                self.opts.max_samples,
            ));
        }
        if held.label_bytes > self.opts.max_label_bytes {
            return Err(PromqlError::resource(
                Resource::LabelBytes,
                held.label_bytes,
                self.opts.max_label_bytes,
            ));
        }
        self.work(samples as u64)
    }

    /// Fails when `samples` more would not fit in the budget (nothing is counted).
    pub(crate) fn check_room(&self, samples: usize) -> Result<()> {
        let total = self.held.get().samples.saturating_add(samples);
        if total > self.opts.max_samples {
            return Err(PromqlError::resource(
                Resource::Samples,
                total,
                self.opts.max_samples,
            ));
        }
        Ok(())
    }

    /// Fails when one value holds more series than allowed.
    pub(crate) fn check_series(&self, series: usize) -> Result<()> {
        if series > self.opts.max_series {
            return Err(PromqlError::resource(
                Resource::Series,
                series,
                self.opts.max_series,
            ));
        }
        Ok(())
    }

    /// Counts `n` more samples processed.
    fn work(&self, n: u64) -> Result<()> {
        let total = self.processed.get().saturating_add(n);
        self.processed.set(total);
        if total > self.opts.max_processed_samples {
            return Err(PromqlError::LimitExceeded {
                what: "samples processed",
                requested: usize::try_from(total).unwrap_or(usize::MAX),
                limit: usize::try_from(self.opts.max_processed_samples).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    /// Fails when a label value of `len` bytes made by a function is too long; `context`
    /// names where (only built on failure).
    pub(crate) fn check_label_value(
        &self,
        len: usize,
        context: impl FnOnce() -> String,
    ) -> Result<()> {
        if len > self.opts.max_label_value_bytes {
            return Err(PromqlError::ResourceLimit {
                resource: Resource::LabelValueBytes,
                requested: len,
                limit: self.opts.max_label_value_bytes,
                context: context(),
            });
        }
        Ok(())
    }

    /// Fails when a label name a query creates is too long.
    pub(crate) fn check_label_name(&self, name: &str, context: &str) -> Result<()> {
        if name.len() > self.opts.max_label_name_bytes {
            return Err(PromqlError::ResourceLimit {
                resource: Resource::LabelNameBytes,
                requested: name.len(),
                limit: self.opts.max_label_name_bytes,
                context: context.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn at_time(&self, at: &Option<AtModifier>, t: i64) -> i64 {
        match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        }
    }

    /// Evaluates `e` at `t`; its value is counted as held until the caller releases it.
    pub(crate) fn eval(&self, e: &Expr, t: i64) -> Result<Val> {
        // Every node evaluated counts as one sample processed, so work without data is
        // bounded too.
        self.work(1)?;
        if let Expr::Paren(p) = e {
            return self.eval(&p.expr, t);
        }
        let mark = self.mark();
        let v = self.eval_node(e, t)?;
        let (samples, label_bytes, series) = footprint(&v);
        self.check_series(series)?;
        // The output is counted while the inputs are still held, then the inputs are let go.
        self.hold(samples, label_bytes)?;
        self.release_to(Held {
            samples: mark.samples.saturating_add(samples),
            label_bytes: mark.label_bytes.saturating_add(label_bytes),
        });
        Ok(v)
    }

    fn eval_node(&self, e: &Expr, t: i64) -> Result<Val> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => {
                    let out: Vec<Smp> = v
                        .into_iter()
                        .map(|s| Smp {
                            labels: s.labels.without_name(),
                            v: -s.v,
                            ts: s.ts,
                        })
                        .collect();
                    // Series that differed only by their name now collide.
                    check_unique(&out)?;
                    Ok(Val::Vector(out))
                }
                other => Err(PromqlError::exec(format!(
                    "unary minus of a {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => self.vector_selector(vs, t).map(Val::Vector),
            Expr::MatrixSelector(ms) => {
                let te = self
                    .at_time(&ms.vs.at, t)
                    .saturating_sub(offset_ms(&ms.vs.offset));
                self.range_of(&ms.vs, te.saturating_sub(dur_ms(&ms.range)), te)
                    .map(Val::Matrix)
            }
            Expr::Subquery(sq) => self.subquery(sq, t).map(Val::Matrix),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => {
                let v = self.binary(b, t)?;
                if let Val::Vector(s) = &v {
                    check_unique(s)?;
                }
                Ok(v)
            }
            Expr::Call(c) => match self.rolled.get(&(c as *const Call as usize)) {
                Some(rolled) => {
                    let te = match pushdown_matrix(c) {
                        Some((_, ms)) => self
                            .at_time(&ms.vs.at, t)
                            .saturating_sub(offset_ms(&ms.vs.offset)),
                        None => t,
                    };
                    let out = rolled.at(te, false);
                    if !rolled.all_unique {
                        check_unique(&out)?;
                    }
                    Ok(Val::Vector(out))
                }
                None => self.call(c, t),
            },
            Expr::Extension(_) => Err(PromqlError::Unsupported("extension expressions".into())),
        }
    }

    fn series_of(&self, vs: &VectorSelector) -> Result<&[Fetched]> {
        self.data
            .get(&(vs as *const VectorSelector as usize))
            .map(Vec::as_slice)
            .ok_or_else(|| PromqlError::exec("selector was not planned"))
    }

    pub(crate) fn vector_selector(&self, vs: &VectorSelector, t: i64) -> Result<Vec<Smp>> {
        let te = self
            .at_time(&vs.at, t)
            .saturating_sub(offset_ms(&vs.offset));
        if let Some(rolled) = self.rolled.get(&(vs as *const VectorSelector as usize)) {
            return Ok(rolled.at(te, true));
        }
        let series = self.series_of(vs)?;
        let mut out = Vec::new();
        for s in series {
            let idx = s.ts.partition_point(|&x| x <= te);
            if idx == 0 {
                continue;
            }
            let (pt, pv) = (s.ts[idx - 1], s.vs[idx - 1]);
            if pt < te.saturating_sub(self.opts.lookback_delta_ms) || is_stale(pv) {
                continue;
            }
            out.push(Smp {
                labels: s.labels.clone(),
                v: pv,
                ts: pt,
            });
        }
        Ok(out)
    }

    /// Points of each series of `vs` in `[lo, hi]`, staleness markers left out.
    fn range_of(&self, vs: &VectorSelector, lo: i64, hi: i64) -> Result<Vec<Rng>> {
        let series = self.series_of(vs)?;
        let mut out = Vec::new();
        let mut copied = 0usize;
        for s in series {
            let a = s.ts.partition_point(|&x| x < lo);
            let b = s.ts.partition_point(|&x| x <= hi);
            if a >= b {
                continue;
            }
            let points: Vec<(i64, f64)> = s.ts[a..b]
                .iter()
                .zip(&s.vs[a..b])
                .filter(|(_, v)| !is_stale(**v))
                .map(|(t, v)| (*t, *v))
                .collect();
            if points.is_empty() {
                continue;
            }
            copied += points.len();
            self.check_room(copied)?;
            out.push(Rng {
                labels: s.labels.clone(),
                points,
            });
        }
        Ok(out)
    }

    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<Vec<Rng>> {
        let te = self
            .at_time(&sq.at, t)
            .saturating_sub(offset_ms(&sq.offset));
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms)
            .max(1);
        let lo = te.saturating_sub(range);
        // Steps are aligned to multiples of the step, from the first at or after `lo`.
        let mut s = lo.div_euclid(step).saturating_mul(step);
        if s < lo {
            s = s.saturating_add(step);
        }
        let n = if s > te {
            0
        } else {
            ((te - s) / step) as u64 + 1
        };
        let total = (self.sub_steps.get() as u64).saturating_add(n);
        if total > self.opts.max_subquery_steps as u64 {
            return Err(PromqlError::LimitExceeded {
                what: "subquery evaluation steps",
                requested: usize::try_from(total).unwrap_or(usize::MAX),
                limit: self.opts.max_subquery_steps,
            });
        }
        self.sub_steps.set(total as usize);
        let start_mark = self.mark();
        let mut out: BTreeMap<LabelSet, Vec<(i64, f64)>> = BTreeMap::new();
        while s <= te {
            // Each inner step's values are dropped once its samples are copied into `out`,
            // which stays held until the subquery's value is.
            let step_mark = self.mark();
            let v = self.eval(&sq.expr, s)?;
            self.release_to(step_mark);
            let mut new_label_bytes = 0;
            let samples = match v {
                Val::Vector(v) => {
                    let n = v.len();
                    for smp in v {
                        let label_bytes = smp.labels.bytes();
                        out.entry(smp.labels)
                            .or_insert_with(|| {
                                new_label_bytes += label_bytes;
                                Vec::new()
                            })
                            .push((s, smp.v));
                    }
                    n
                }
                Val::Scalar(v) => {
                    out.entry(LabelSet::default()).or_default().push((s, v));
                    1
                }
                other => {
                    return Err(PromqlError::exec(format!("subquery of a {}", other.kind())));
                }
            };
            self.check_series(out.len())?;
            self.hold(samples, new_label_bytes)?;
            match s.checked_add(step) {
                Some(n) => s = n,
                None => break,
            }
        }
        // The caller counts the value returned, which takes over what `out` held.
        self.release_to(start_mark);
        Ok(out
            .into_iter()
            .map(|(labels, points)| Rng { labels, points })
            .collect())
    }

    pub(crate) fn eval_scalar(&self, e: &Expr, t: i64, what: &str) -> Result<f64> {
        match self.eval(e, t)? {
            Val::Scalar(v) => Ok(v),
            other => Err(PromqlError::exec(format!(
                "expected a scalar for {what}, got {}",
                other.kind()
            ))),
        }
    }

    pub(crate) fn eval_vector(&self, e: &Expr, t: i64) -> Result<Vec<Smp>> {
        match self.eval(e, t)? {
            Val::Vector(v) => Ok(v),
            other => Err(PromqlError::exec(format!(
                "expected an instant vector, got {}",
                other.kind()
            ))),
        }
    }

    pub(crate) fn eval_matrix(&self, e: &Expr, t: i64) -> Result<Vec<Rng>> {
        match self.eval(e, t)? {
            Val::Matrix(v) => Ok(v),
            other => Err(PromqlError::exec(format!(
                "expected a range vector, got {}",
                other.kind()
            ))),
        }
    }

    fn call(&self, c: &Call, t: i64) -> Result<Val> {
        let v = functions::call(self, c, t)?;
        if let Val::Vector(s) = &v {
            check_unique(s)?;
        }
        Ok(v)
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Val> {
        let op = a.op.id();
        let param = match &a.param {
            Some(p) if op == token::T_COUNT_VALUES => match self.eval(p, t)? {
                Val::Str(s) => Some(Val::Str(s)),
                other => {
                    return Err(PromqlError::exec(format!(
                        "count_values needs a string parameter, got {}",
                        other.kind()
                    )));
                }
            },
            Some(p) => Some(Val::Scalar(self.eval_scalar(
                p,
                t,
                "the aggregation parameter",
            )?)),
            None => None,
        };
        if let Some(Val::Str(name)) = &param {
            self.check_label_name(name, "count_values() label")?;
        }
        if param.is_none()
            && crate::aggregate::is_plain_fold(op)
            && let Some((key, rolled, te)) = self.rolled_node(&a.expr, t)
        {
            return Ok(Val::Vector(self.aggregate_rolled(op, a, key, rolled, te)));
        }
        let input = self.eval_vector(&a.expr, t)?;
        let mut groups = self.groups.borrow_mut();
        crate::aggregate::aggregate(op, param, input, a.modifier.as_ref(), &mut groups)
            .map(Val::Vector)
    }

    /// The node the source evaluated that `e` is (in parentheses or not), with its window end
    /// at `t`; only when its vector at a step can hold no duplicate label sets (so that the
    /// aggregation sees what evaluating the node would give).
    fn rolled_node(&self, mut e: &Expr, t: i64) -> Option<(usize, &Rolled, i64)> {
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        match e {
            Expr::Call(c) => {
                let key = c as *const Call as usize;
                let rolled = self.rolled.get(&key).filter(|r| r.all_unique)?;
                let (_, ms) = pushdown_matrix(c)?;
                let te = self
                    .at_time(&ms.vs.at, t)
                    .saturating_sub(offset_ms(&ms.vs.offset));
                Some((key, rolled, te))
            }
            Expr::VectorSelector(vs) => {
                let key = vs as *const VectorSelector as usize;
                let rolled = self.rolled.get(&key)?;
                let te = self
                    .at_time(&vs.at, t)
                    .saturating_sub(offset_ms(&vs.offset));
                Some((key, rolled, te))
            }
            _ => None,
        }
    }

    /// `op` (one without a parameter) over a node the source evaluated, at window end `te`:
    /// the same groups, order and arithmetic as over the node's vector, without building it.
    fn aggregate_rolled(
        &self,
        op: u16,
        a: &AggregateExpr,
        key: usize,
        rolled: &Rolled,
        te: i64,
    ) -> Vec<Smp> {
        let Ok(i) = rolled.times.binary_search(&te) else {
            return Vec::new();
        };
        let modifier = a.modifier.as_ref();
        let mut cache = self.rolled_groups.borrow_mut();
        let groups = cache
            .entry((key, a as *const AggregateExpr as usize))
            .or_insert_with(|| {
                crate::aggregate::RolledGroups::new(
                    rolled.series.iter().map(|s| &s.labels),
                    modifier,
                )
            });
        if FoldState::supports(op)
            && groups.labels.len().saturating_mul(rolled.times.len()) <= ALL_STEPS_STATES
        {
            let steps = groups.steps.get_or_insert_with(|| {
                all_steps(op, rolled, &groups.of_series, groups.labels.len())
            });
            return steps[i]
                .iter()
                .map(|&(g, v)| Smp {
                    labels: groups.labels[g].clone(),
                    v,
                    ts: 0,
                })
                .collect();
        }
        // Groups in order of first appearance among the series with a value, as over the
        // vector; each group's values in series order.
        let mut order: Vec<usize> = Vec::new();
        let mut members: Vec<Vec<f64>> = vec![Vec::new(); groups.labels.len()];
        for (s, &g) in rolled.series.iter().zip(&groups.of_series) {
            if let Some((v, _)) = s.values[i] {
                if members[g].is_empty() {
                    order.push(g);
                }
                members[g].push(v);
            }
        }
        order
            .into_iter()
            .map(|g| Smp {
                labels: groups.labels[g].clone(),
                v: crate::aggregate::fold(op, members[g].iter().copied()),
                ts: 0,
            })
            .collect()
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Val> {
        let op = b.op.id();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let return_bool = b.return_bool();
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let (v, keep) = scalar_op(op, l, r)?;
                if is_comparison(op) && !return_bool {
                    return Err(PromqlError::exec(
                        "comparisons between scalars must use BOOL modifier",
                    ));
                }
                Ok(Val::Scalar(if is_comparison(op) {
                    f64::from(u8::from(keep))
                } else {
                    v
                }))
            }
            (Val::Vector(l), Val::Scalar(r)) => {
                vector_scalar(op, l, r, false, return_bool).map(Val::Vector)
            }
            (Val::Scalar(l), Val::Vector(r)) => {
                vector_scalar(op, r, l, true, return_bool).map(Val::Vector)
            }
            (Val::Vector(l), Val::Vector(r)) => {
                let card = b
                    .modifier
                    .as_ref()
                    .map(|m| m.card.clone())
                    .unwrap_or(VectorMatchCardinality::OneToOne);
                let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
                if let Some(m) = &b.modifier
                    && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
                {
                    return Err(PromqlError::Unsupported(
                        "fill modifiers (not in Prometheus 2.42)".into(),
                    ));
                }
                match op {
                    token::T_LAND | token::T_LOR | token::T_LUNLESS => {
                        Ok(Val::Vector(set_op(op, l, r, matching.as_ref())))
                    }
                    _ => vector_vector(op, l, r, &card, matching.as_ref(), return_bool)
                        .map(Val::Vector),
                }
            }
            (l, r) => Err(PromqlError::exec(format!(
                "binary operator between {} and {}",
                l.kind(),
                r.kind()
            ))),
        }
    }
}

/// Errors when two samples share a label set, as Prometheus does.
pub(crate) fn check_unique(v: &[Smp]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(PromqlError::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

fn is_comparison(op: u16) -> bool {
    TokenType::new(op).is_comparison_operator()
}

/// The arithmetic operators drop the metric name; filtering comparisons keep it, and so does
/// `atan2` (Prometheus 2.42 leaves it out of the operators that drop the name).
fn drops_name(op: u16) -> bool {
    matches!(
        op,
        token::T_ADD | token::T_SUB | token::T_MUL | token::T_DIV | token::T_MOD | token::T_POW
    )
}

/// `(value, keep)` of `l op r`; comparisons return `l` and whether it holds.
fn scalar_op(op: u16, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        other => {
            return Err(PromqlError::exec(format!(
                "operator {} is not allowed between numbers",
                TokenType::new(other)
            )));
        }
    })
}

fn vector_scalar(
    op: u16,
    v: Vec<Smp>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Smp>> {
    let mut out = Vec::with_capacity(v.len());
    for mut smp in v {
        let (l, r) = if scalar_left { (s, smp.v) } else { (smp.v, s) };
        let (mut value, mut keep) = scalar_op(op, l, r)?;
        if is_comparison(op) && scalar_left {
            value = smp.v;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        if drops_name(op) || return_bool {
            smp.labels.remove(NAME);
        }
        smp.v = value;
        out.push(smp);
    }
    Ok(out)
}

/// The matching signature of a label set under `on(...)`/`ignoring(...)`.
fn signature(labels: &LabelSet, matching: Option<&LabelModifier>) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(names)) => names
            .labels
            .iter()
            .map(|n| (n.clone(), labels.get(n).unwrap_or_default().to_owned()))
            .collect(),
        Some(LabelModifier::Exclude(names)) => labels
            .iter()
            .filter(|(k, _)| *k != NAME && !names.labels.iter().any(|n| n == k))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        None => labels
            .iter()
            .filter(|(k, _)| *k != NAME)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

fn set_op(op: u16, l: Vec<Smp>, r: Vec<Smp>, matching: Option<&LabelModifier>) -> Vec<Smp> {
    match op {
        token::T_LAND => {
            let rs: HashSet<_> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| rs.contains(&signature(&s.labels, matching)))
                .collect()
        }
        token::T_LUNLESS => {
            let rs: HashSet<_> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| !rs.contains(&signature(&s.labels, matching)))
                .collect()
        }
        _ => {
            let ls: HashSet<_> = l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !ls.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

fn vector_vector(
    op: u16,
    lhs: Vec<Smp>,
    rhs: Vec<Smp>,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Smp>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let side = if one_to_many { "left" } else { "right" };
    let mut one_sigs: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        let sig = signature(&s.labels, matching);
        if one_sigs.insert(sig, i).is_some() {
            return Err(PromqlError::exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}];many-to-many matching not allowed: matching labels must be unique on one side",
                LabelSet::from_pairs(signature(&s.labels, matching)),
                s.labels
            )));
        }
    }
    let include: &[String] = match card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<Vec<(String, String)>, HashSet<LabelSet>> = HashMap::new();
    let mut out = Vec::new();
    for ms in many {
        let sig = signature(&ms.labels, matching);
        let Some(&oi) = one_sigs.get(&sig) else {
            continue;
        };
        let os = &one[oi];
        let (vl, vr) = if one_to_many {
            (os.v, ms.v)
        } else {
            (ms.v, os.v)
        };
        let (mut value, mut keep) = scalar_op(op, vl, vr)?;
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        let mut labels = ms.labels.clone();
        if drops_name(op) || return_bool {
            labels.remove(NAME);
        }
        if one_to_one {
            match matching {
                Some(LabelModifier::Include(names)) => {
                    labels.retain(|k| names.labels.iter().any(|n| n == k));
                }
                Some(LabelModifier::Exclude(names)) => {
                    labels.retain(|k| !names.labels.iter().any(|n| n == k));
                }
                None => {}
            }
        }
        for name in include {
            match os.labels.get(name) {
                Some(v) => labels.set(name, v),
                None => labels.remove(name),
            }
        }
        let entry = matched.entry(sig);
        match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if one_to_one {
                    return Err(PromqlError::exec(format!(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); series {}",
                        ms.labels
                    )));
                }
                if !o.get_mut().insert(labels.clone()) {
                    return Err(PromqlError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(HashSet::from([labels.clone()]));
            }
        }
        out.push(Smp {
            labels,
            v: value,
            ts: ms.ts,
        });
    }
    Ok(out)
}

macro_rules! forward_source {
    ($($doc:literal $wrapper:ty),*) => {$(
        #[doc = $doc]
        #[async_trait::async_trait]
        impl<T: SeriesSource + ?Sized> SeriesSource for $wrapper {
            async fn select(
                &self,
                matchers: &[LabelMatcher],
                range: TimeRange,
            ) -> tsdb_core::Result<Vec<SeriesData>> {
                (**self).select(matchers, range).await
            }

            async fn select_bounded(
                &self,
                matchers: &[LabelMatcher],
                range: TimeRange,
                limits: SelectLimits,
            ) -> tsdb_core::Result<Vec<SeriesData>> {
                (**self).select_bounded(matchers, range, limits).await
            }

            async fn select_rollup(
                &self,
                request: &crate::source::RollupRequest,
                limits: SelectLimits,
            ) -> tsdb_core::Result<Option<Vec<crate::source::RolledSeries>>> {
                (**self).select_rollup(request, limits).await
            }
        }
    )*};
}

forward_source!("Shares one source between engines and tasks." Arc<T>, "A borrowed source: an engine for one query." &T);

use crate::source::SeriesData;

/// A node the source evaluated itself: its values at each evaluation time.
/// Most fold states [`all_steps`] holds at once (groups x steps); beyond, steps are
/// aggregated one at a time.
const ALL_STEPS_STATES: usize = 1 << 20;

/// A plain fold (`op`, one [`FoldState::supports`]) of a rolled node's series into groups at
/// every step at once, reading each series' values in order (rather than every series at each
/// step): per step, `(group, value)` for the groups with a value, in order of first
/// appearance among the series, each group's values folded in series order, as aggregating
/// the node's vector at that step does.
fn all_steps(
    op: u16,
    rolled: &Rolled,
    of_series: &[usize],
    groups: usize,
) -> Vec<Vec<(usize, f64)>> {
    let n = rolled.times.len();
    let mut states = vec![FoldState::new(op); groups * n];
    let mut first = vec![usize::MAX; groups * n];
    for (si, (s, &g)) in rolled.series.iter().zip(of_series).enumerate() {
        let row = g * n;
        for (ti, slot) in s.values.iter().enumerate() {
            if let Some((v, _)) = *slot {
                let state = &mut states[row + ti];
                if state.count() == 0 {
                    first[row + ti] = si;
                }
                state.push(op, v);
            }
        }
    }
    (0..n)
        .map(|ti| {
            let mut present: Vec<(usize, usize)> = (0..groups)
                .filter(|&g| states[g * n + ti].count() > 0)
                .map(|g| (first[g * n + ti], g))
                .collect();
            present.sort_unstable();
            present
                .into_iter()
                .map(|(_, g)| (g, states[g * n + ti].finish(op)))
                .collect()
        })
        .collect()
}

#[derive(Debug)]
struct Rolled {
    /// Evaluation times (window ends), ascending.
    times: Vec<i64>,
    series: Vec<RolledOut>,
    /// No two series have the same output labels, so no step can hold a duplicate.
    all_unique: bool,
}

#[derive(Debug)]
struct RolledOut {
    /// The output labels (the name dropped where the function drops it).
    labels: LabelSet,
    /// Value and sample timestamp at each time, if any.
    values: Vec<Option<(f64, i64)>>,
}

impl Rolled {
    /// The node's vector at window end `te`; `sample_ts` keeps the samples' own timestamps
    /// (an instant selector, for `timestamp()`), else 0 as range functions give.
    fn at(&self, te: i64, sample_ts: bool) -> Vec<Smp> {
        let Ok(i) = self.times.binary_search(&te) else {
            return Vec::new();
        };
        self.series
            .iter()
            .filter_map(|s| {
                s.values[i].map(|(v, ts)| Smp {
                    labels: s.labels.clone(),
                    v,
                    ts: if sample_ts { ts } else { 0 },
                })
            })
            .collect()
    }
}

/// A node whose values the source may compute itself.
struct Candidate {
    /// The node evaluated (a call, or an instant selector).
    node: usize,
    /// The selector it reads, so that it is not fetched as well.
    selector: usize,
    request: crate::source::RollupRequest,
    keep_name: bool,
}

/// The range function of `c` and its matrix selector, when every other argument is a
/// literal: what a source can evaluate.
fn pushdown_matrix(c: &Call) -> Option<(RangeFunction, &MatrixSelector)> {
    fn unparen(mut e: &Expr) -> &Expr {
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        e
    }
    let args: Vec<&Expr> = c.args.args.iter().map(|a| unparen(a)).collect();
    let (function, matrix) = match (c.func.name, args.as_slice()) {
        ("quantile_over_time", [Expr::NumberLiteral(q), m]) => {
            (RangeFunction::QuantileOverTime(q.val), *m)
        }
        (name, [m]) => (RangeFunction::simple(name)?, *m),
        _ => return None,
    };
    match matrix {
        Expr::MatrixSelector(ms) => Some((function, ms)),
        _ => None,
    }
}

/// Window ends of a selector with `at` and `offset` for the query's evaluation `steps`.
fn window_ends(
    steps: &[i64],
    at: &Option<AtModifier>,
    offset: &Option<Offset>,
    qstart: i64,
    qend: i64,
) -> Vec<i64> {
    let off = offset_ms(offset);
    let mut ends: Vec<i64> = match at {
        None => steps.iter().map(|t| t.saturating_sub(off)).collect(),
        Some(AtModifier::Start) => vec![qstart.saturating_sub(off)],
        Some(AtModifier::End) => vec![qend.saturating_sub(off)],
        Some(AtModifier::At(t)) => vec![system_time_ms(t).saturating_sub(off)],
    };
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// Collects the nodes a source may evaluate at the query's own steps: range functions over
/// a selector, and instant selectors (not inside subqueries, whose steps are their own).
fn rollup_candidates(
    e: &Expr,
    steps: &[i64],
    qstart: i64,
    qend: i64,
    opts: &EngineOptions,
    out: &mut Vec<Candidate>,
) -> Result<()> {
    use crate::source::{RollupKind, RollupRequest};
    match e {
        Expr::Call(c) => {
            if let Some((function, ms)) = pushdown_matrix(c) {
                out.push(Candidate {
                    node: c as *const Call as usize,
                    selector: &ms.vs as *const VectorSelector as usize,
                    request: RollupRequest {
                        matchers: selector_matchers(&ms.vs)?,
                        times: window_ends(steps, &ms.vs.at, &ms.vs.offset, qstart, qend),
                        kind: RollupKind::Range {
                            function,
                            range_ms: dur_ms(&ms.range),
                        },
                    },
                    keep_name: function.keeps_name(),
                });
                return Ok(());
            }
            for a in &c.args.args {
                rollup_candidates(a, steps, qstart, qend, opts, out)?;
            }
        }
        Expr::VectorSelector(vs) => out.push(Candidate {
            node: vs as *const VectorSelector as usize,
            selector: vs as *const VectorSelector as usize,
            request: RollupRequest {
                matchers: selector_matchers(vs)?,
                times: window_ends(steps, &vs.at, &vs.offset, qstart, qend),
                kind: RollupKind::Instant {
                    lookback_ms: opts.lookback_delta_ms,
                },
            },
            keep_name: true,
        }),
        // A range vector kept as such (holt_winters, absent_over_time, ...) needs the samples;
        // a subquery evaluates at its own steps.
        Expr::MatrixSelector(_) | Expr::Subquery(_) => {}
        other => {
            for c in children(other) {
                rollup_candidates(c, steps, qstart, qend, opts, out)?;
            }
        }
    }
    Ok(())
}

/// A source's limit error as the engine reports it.
fn limit_error(
    e: tsdb_core::Error,
    loaded: usize,
    loaded_series: usize,
    opts: &EngineOptions,
) -> PromqlError {
    match e {
        tsdb_core::Error::LimitExceeded {
            what, requested, ..
        } if what == SelectLimits::POINTS || what == SelectLimits::SERIES => {
            let requested = usize::try_from(requested).unwrap_or(usize::MAX);
            if what == SelectLimits::POINTS {
                PromqlError::resource(
                    Resource::Samples,
                    loaded.saturating_add(requested),
                    opts.max_samples,
                )
            } else {
                PromqlError::resource(
                    Resource::Series,
                    loaded_series.saturating_add(requested),
                    opts.max_series,
                )
            }
        }
        other => PromqlError::from(other),
    }
}
